"""MMRL (docs/method.md): the method's config block, model, checkpoints and protocol defaults."""
from __future__ import annotations

import logging

import torch
from yacs.config import CfgNode as CN

from mmrl.models.frozen_match import check_frozen_match
from mmrl.errors import CheckpointError, ConfigError
from mmrl.models.init_order import ClipDims, reference_initial_state
from mmrl.models.mmrl import ArchSpec, Behaviour, MultiModalRepresentationLearner, select_test_logits
from mmrl.models.prompts import Prompts
from mmrl.trainers.base import PRECISIONS, BuildContext, EvalCheckpoint, Method, note_config_not_used
from mmrl.trainers.registry import register
from mmrl.utils.rng import isolated_rng

log = logging.getLogger("mmrl.engine")


def trainable_state(sd: dict[str, torch.Tensor], wanted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Pick our trainable keys out of a (possibly full-model) state dict, checking shapes."""
    sd = {k.removeprefix("module."): v for k, v in sd.items() if "prompt_embeddings" not in k}
    missing = [k for k in wanted if k not in sd]
    if missing:
        raise CheckpointError(f"checkpoint lacks trainable tensors {missing[:4]}{' ...' if len(missing) > 4 else ''}; "
                              f"it was made for another trainer or architecture.")
    out = {}
    for k, ref in wanted.items():
        v = sd[k]
        if tuple(v.shape) != tuple(ref.shape):
            hint = ""
            if "compound_rep_tokens" in k or "r2vproj" in k or "r2tproj" in k:
                hint = (" The representation dimension differs: REP_DIM must be the value the checkpoint was "
                        "trained with (e.g. 512 for the ImageNet CD model, while EuroSAT's B2N override is 2048).")
            raise CheckpointError(f"shape mismatch for {k}: checkpoint {tuple(v.shape)} vs model {tuple(ref.shape)}.{hint}")
        out[k] = v.float()
    return out


def check_authors_frozen(sd: dict[str, torch.Tensor], clip, backbone: str, source: str) -> None:
    """An authors' file also holds the frozen image encoder it was trained with (and that their
    evaluation loads): it must be the backbone's, which scores the learned tensors here."""
    frozen = {k.removeprefix("module.").removeprefix("image_encoder."): v for k, v in sd.items()
              if k.removeprefix("module.").startswith("image_encoder.")}
    check_frozen_match(frozen, clip.visual.state_dict(), source=source, backbone_name=backbone,
                       prefix="image_encoder.")


def authors_arch(sd: dict[str, torch.Tensor], fallback: dict) -> dict:
    """Infer the architecture of an authors' checkpoint from its tensor shapes."""
    arch = dict(fallback)
    tok = sd.get("representation_learner.compound_rep_tokens")
    if tok is not None:
        arch["n_rep_tokens"], arch["rep_dim"] = int(tok.shape[0]), int(tok.shape[1])
    if any(k.startswith("representation_learner.srra_") for k in sd):
        arch["trainer"] = "MMRLpp"
        b = sd.get("image_encoder.B")
        if b is not None:
            arch["proj_lora_dim"] = int(b.shape[0])
        a0 = sd.get("representation_learner.srra_r2vproj.srra.0.A")
        if a0 is not None:
            arch["res_lora_dim"] = int(a0.shape[1])
    elif any(k.startswith("representation_learner.compound_rep_tokens_r2vproj") for k in sd):
        arch["trainer"] = "MMRL"
    return arch


class MMRL(Method):
    name = "MMRL"
    display = "MMRL"
    published_key = "MMRL"
    color = "tab:blue"
    model_folder = "MultiModalRepresentationLearner"
    has_overrides = True
    in_sweep_by_default = True
    block_in_every_hash = True
    block_extra: dict = {}
    required_keys = ("REP_LAYERS",)

    def config_block(self) -> CN:
        node = CN()
        node.ALPHA = 0.7
        node.REG_WEIGHT = 1.0
        node.REP_LAYERS = []
        node.REP_DIM = 512
        node.N_REP_TOKENS = 5
        node.PREC = "fp16"
        for k, v in self.block_extra.items():
            setattr(node, k, v)
        return node

    def enumerated_keys(self) -> dict[str, tuple]:
        return {"PREC": PRECISIONS}

    def validate(self, trainer_node: CN) -> None:
        blk = trainer_node[self.block_key]
        where = f"TRAINER.{self.block_key}"
        layers = list(blk.REP_LAYERS)
        if layers and (layers != sorted(set(layers)) or min(layers) < 1):
            raise ConfigError(f"{where}.REP_LAYERS must be sorted, unique, 1-based layer numbers; got {layers}")
        if blk.N_REP_TOKENS < 1 or blk.REP_DIM < 1:
            raise ConfigError(f"{where}.N_REP_TOKENS and REP_DIM must be positive")
        if not 0.0 <= blk.ALPHA <= 1.0:
            raise ConfigError(f"{where}.ALPHA must lie in [0, 1]; got {blk.ALPHA}")

    def sweep_pins(self, protocol: str, role: str, stem: str) -> list[str]:
        # The authors' cross-dataset scripts pin lambda 0.2 and (at test time) REP_DIM 512 on the
        # command line, so per-dataset overrides cannot change the ImageNet checkpoint's shapes.
        if protocol not in ("cd", "dg"):
            return []
        pins = [f"TRAINER.{self.name}.REG_WEIGHT", "0.2"]
        return pins + ([f"TRAINER.{self.name}.REP_DIM", "512"] if role == "eval" else [])

    def head(self, cfg) -> str:
        return select_test_logits(cfg.TASK, cfg.DATASET.SUBSAMPLE_CLASSES, cfg.DATASET.NAME)

    # -- model --------------------------------------------------------------------------------
    def _model(self, ctx: BuildContext, spec: ArchSpec, *, reference_init: bool) -> MultiModalRepresentationLearner:
        """The model of architecture ``spec``. ``reference_init``: the initial trainables are the
        reference's build-time draws, in its order (docs/protocol.md#the-random-streams-of-a-run)."""
        clip = ctx.backbone(spec.backbone)
        prompts = Prompts.build(ctx.classnames, ctx.template)
        log.info("Building custom CLIP")
        with isolated_rng():  # its own initialisers draw in another order than the reference's
            model = MultiModalRepresentationLearner(spec, clip, prompts, Behaviour.from_cfg(ctx.cfg))
        if reference_init:
            model.load_state_dict(reference_initial_state(spec, ClipDims.of(clip)))
        model = model.to(ctx.device)
        log.info("Turning off gradients in both the image and the text encoder")
        names = sorted(n for n, p in model.named_parameters() if p.requires_grad)
        log.info("Parameters to be updated: {%s}", ", ".join(repr(n) for n in names))
        return model

    def build(self, ctx: BuildContext, *, for_training: bool) -> MultiModalRepresentationLearner:
        return self._model(ctx, ArchSpec.from_cfg(ctx.cfg), reference_init=for_training)

    def build_for_eval(self, ctx: BuildContext, ck: EvalCheckpoint) -> MultiModalRepresentationLearner:
        current = ArchSpec.from_cfg(ctx.cfg)
        arch = ck.arch if "backbone" in ck.arch else authors_arch(ck.state_dict, current.to_dict())
        spec = ArchSpec.from_dict(arch)
        if spec.trainer != current.trainer:
            raise CheckpointError(f"{ck.path} holds a {spec.trainer} model but --trainer is {current.trainer}")
        note_config_not_used(ck, spec.to_dict(), current.to_dict())
        model = self._model(ctx, spec, reference_init=False)
        if "backbone" not in ck.arch:
            check_authors_frozen(ck.state_dict, model.clip, spec.backbone, ck.path)
        model.load_state_dict(trainable_state(ck.state_dict, dict(model.state_dict())), strict=True)
        return model


register(MMRL())
