"""The default config: Dassl's key names (those the protocol and the authors' YAMLs use), our
keys, and each registered method's block TRAINER.<NAME>; the values some keys may take."""
from __future__ import annotations

from yacs.config import CfgNode as CN

from mmrl.trainers import registry

TASKS = ("B2N", "FS", "CD")
SUBSAMPLE_MODES = ("all", "base", "new")
TEST_PRECISIONS = ("fp32", "amp", "bf16")


def get_default_config(trainer: str = "") -> CN:
    """Dassl's defaults (the keys the protocol and the authors' YAMLs use) + our keys and the methods'
    blocks; a block several methods read has the defaults of ``trainer`` when it is one of them."""
    c = CN()
    c.VERSION = 1
    c.OUTPUT_DIR = "./output"
    c.RESUME = ""
    c.SEED = -1
    c.USE_CUDA = True
    c.VERBOSE = True
    c.TASK = ""

    c.INPUT = CN()
    c.INPUT.SIZE = (224, 224)
    c.INPUT.INTERPOLATION = "bilinear"
    c.INPUT.TRANSFORMS = ()
    c.INPUT.NO_TRANSFORM = False
    c.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
    c.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
    c.INPUT.CROP_PADDING = 4
    c.INPUT.RRCROP_SCALE = (0.08, 1.0)
    c.INPUT.CUTOUT_N = 1
    c.INPUT.CUTOUT_LEN = 16
    c.INPUT.GN_MEAN = 0.0
    c.INPUT.GN_STD = 0.15
    c.INPUT.RANDAUGMENT_N = 2
    c.INPUT.RANDAUGMENT_M = 10
    c.INPUT.COLORJITTER_B = 0.4
    c.INPUT.COLORJITTER_C = 0.4
    c.INPUT.COLORJITTER_S = 0.4
    c.INPUT.COLORJITTER_H = 0.1
    c.INPUT.RGS_P = 0.2
    c.INPUT.GB_P = 0.5
    c.INPUT.GB_K = 21

    c.DATASET = CN()
    c.DATASET.ROOT = ""
    c.DATASET.NAME = ""
    c.DATASET.SOURCE_DOMAINS = ()
    c.DATASET.TARGET_DOMAINS = ()
    c.DATASET.NUM_LABELED = -1
    c.DATASET.NUM_SHOTS = -1
    c.DATASET.VAL_PERCENT = 0.1
    c.DATASET.STL10_FOLD = -1
    c.DATASET.CIFAR_C_TYPE = ""
    c.DATASET.CIFAR_C_LEVEL = 1
    c.DATASET.ALL_AS_UNLABELED = False
    c.DATASET.SUBSAMPLE_CLASSES = "all"
    # Ours: where few-shot subsets (JSON) live; "" = ~/.cache/mmrl/fewshot (outside the data root).
    c.DATASET.FEWSHOT_DIR = ""
    # Ours: skip unreadable images instead of failing the run (off = the run fails, naming the file).
    c.DATASET.SKIP_CORRUPT = False

    c.DATALOADER = CN()
    c.DATALOADER.NUM_WORKERS = 4
    c.DATALOADER.K_TRANSFORMS = 1
    c.DATALOADER.RETURN_IMG0 = False
    c.DATALOADER.TRAIN_X = CN()
    c.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
    c.DATALOADER.TRAIN_X.BATCH_SIZE = 32
    c.DATALOADER.TRAIN_X.N_DOMAIN = 0
    c.DATALOADER.TRAIN_X.N_INS = 16
    c.DATALOADER.TRAIN_U = CN()
    c.DATALOADER.TRAIN_U.SAME_AS_X = True
    c.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
    c.DATALOADER.TRAIN_U.BATCH_SIZE = 32
    c.DATALOADER.TRAIN_U.N_DOMAIN = 0
    c.DATALOADER.TRAIN_U.N_INS = 16
    c.DATALOADER.TEST = CN()
    c.DATALOADER.TEST.SAMPLER = "SequentialSampler"
    c.DATALOADER.TEST.BATCH_SIZE = 32

    c.MODEL = CN()
    c.MODEL.INIT_WEIGHTS = ""
    c.MODEL.BACKBONE = CN()
    c.MODEL.BACKBONE.NAME = ""
    c.MODEL.BACKBONE.PRETRAINED = True
    # Ours: an explicit CLIP weights file (taken as given, its SHA256 recorded).
    c.MODEL.BACKBONE.WEIGHTS = ""
    # Ours: where OpenAI CLIP files are cached ("" = $MMRL_CLIP_CACHE or ~/.cache/clip).
    c.MODEL.BACKBONE.CACHE_DIR = ""
    c.MODEL.HEAD = CN()
    c.MODEL.HEAD.NAME = ""
    c.MODEL.HEAD.HIDDEN_LAYERS = ()
    c.MODEL.HEAD.ACTIVATION = "relu"
    c.MODEL.HEAD.BN = True
    c.MODEL.HEAD.DROPOUT = 0.0

    c.OPTIM = CN()
    c.OPTIM.NAME = "adam"
    c.OPTIM.LR = 0.0003
    c.OPTIM.WEIGHT_DECAY = 5e-4
    c.OPTIM.MOMENTUM = 0.9
    c.OPTIM.SGD_DAMPNING = 0
    c.OPTIM.SGD_NESTEROV = False
    c.OPTIM.RMSPROP_ALPHA = 0.99
    c.OPTIM.ADAM_BETA1 = 0.9
    c.OPTIM.ADAM_BETA2 = 0.999
    c.OPTIM.STAGED_LR = False
    c.OPTIM.NEW_LAYERS = ()
    c.OPTIM.BASE_LR_MULT = 0.1
    c.OPTIM.LR_SCHEDULER = "single_step"
    c.OPTIM.STEPSIZE = (-1,)
    c.OPTIM.GAMMA = 0.1
    c.OPTIM.MAX_EPOCH = 10
    c.OPTIM.WARMUP_EPOCH = -1
    c.OPTIM.WARMUP_TYPE = "linear"
    c.OPTIM.WARMUP_CONS_LR = 1e-5
    c.OPTIM.WARMUP_MIN_LR = 1e-5
    c.OPTIM.WARMUP_RECOUNT = True

    c.TRAIN = CN()
    c.TRAIN.CHECKPOINT_FREQ = 0
    c.TRAIN.PRINT_FREQ = 10
    c.TRAIN.COUNT_ITER = "train_x"
    # Ours: on CUDA, replay each training step from a CUDA graph (the same kernels: speed only).
    c.TRAIN.CUDA_GRAPH = True

    c.TEST = CN()
    c.TEST.EVALUATOR = "Classification"
    c.TEST.PER_CLASS_RESULT = False
    c.TEST.COMPUTE_CMAT = False
    c.TEST.NO_TEST = False
    c.TEST.SPLIT = "test"
    c.TEST.FINAL_MODEL = "last_step"
    # Ours: also store the scored logits in predictions.npz.
    c.TEST.SAVE_LOGITS = False
    # Ours: uint8 cache of decoded test images ("" = ~/.cache/mmrl/testcache, "none" = off).
    c.TEST.CACHE_DIR = ""
    # Ours: evaluation arithmetic. The authors evaluate the fp32 model without autocast, also
    # after amp training; "amp" / "bf16" evaluate under that autocast (CUDA; bf16 also on CPU).
    c.TEST.PREC = "fp32"

    c.TRAINER = CN()
    c.TRAINER.NAME = ""
    for m in registry.methods():
        for key, block in m.config_blocks().items():
            if key not in c.TRAINER:
                c.TRAINER[key] = block
    if trainer:
        for key, block in registry.get(trainer).config_blocks().items():
            c.TRAINER[key] = block
    return c

