"""Evaluation throughput: one checkpoint, and three seeds' checkpoints of one cell evaluated
together (one data pass, layers below J once) against three separate passes.

    python bench/eval.py [--backbone random:ViT-B-16|tiny-test] [--device cpu|cuda] [--loader plain|cache] [--json]

Synthetic EuroSAT-layout JPEGs (64x64 like the real ones) go through the real dataset
loader, the real test transform (bicubic resize to 224, center crop, CLIP normalisation) and
the real DataLoader (``--loader cache``: the uint8 test cache of mmrl/data/testcache.py).
"Separate" is what three ``mmrl eval`` runs do (Trainer.test: the evaluation pass with one
model, its own data pass); "together" is that pass with the three models. Rounds alternate the
order; reported times are the best round of each (the least disturbed on a shared machine).
Also prints the data-loading throughput of the plain loader and of the test cache.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

import common  # noqa: E402


def make_cfg(args, cache_dir: str):
    from mmrl.config import get_default_config
    cfg = get_default_config()
    cfg.INPUT.SIZE = (224, 224)
    cfg.INPUT.INTERPOLATION = "bicubic"
    cfg.INPUT.PIXEL_MEAN = [0.48145466, 0.4578275, 0.40821073]
    cfg.INPUT.PIXEL_STD = [0.26862954, 0.26130258, 0.27577711]
    cfg.INPUT.TRANSFORMS = ["random_resized_crop", "random_flip", "normalize"]
    cfg.DATALOADER.TEST.BATCH_SIZE = args.batch
    cfg.DATALOADER.NUM_WORKERS = args.workers
    cfg.USE_CUDA = args.device == "cuda"
    cfg.TEST.CACHE_DIR = cache_dir
    return cfg


def make_models(args, clip, data, device):
    from mmrl.models.mmrl import ArchSpec, Behaviour, MultiModalRepresentationLearner
    from mmrl.models.prompts import Prompts
    cls = MultiModalRepresentationLearner
    prompts = Prompts.build(data.classnames, data.template)
    models = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        m = cls(ArchSpec(trainer=args.trainer, rep_dim=2048 if args.trainer == "MMRL" else 512),
                                            clip, prompts, Behaviour()).to(device)
        with torch.no_grad():  # trained checkpoints differ from the init: move each seed off it
            for p in m.parameters():
                p.add_(0.02 * torch.randn_like(p))
        models.append(m.eval())
    return models


def separate_pass(model, loader, head, device, precision):
    """What one evaluation run does (Trainer.test): the evaluation pass with its model alone."""
    from mmrl.engine.multi_eval import evaluate_together
    return torch.from_numpy(evaluate_together([model], loader, head, device, precision)[0]["pred"])


def timed(device, fn):
    with common.Clock(device) as c:
        out = fn()
    return out, c.wall, c.cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="random:ViT-B-16", help="random:ViT-B-16 (default) or tiny-test")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--trainer", choices=["MMRL", "MMRLpp"], default="MMRL")
    ap.add_argument("--images", type=int, default=None, help="test images (default 16 on CPU, 2000 on CUDA)")
    ap.add_argument("--batch", type=int, default=None, help="test batch (default 8 on CPU, 250 on CUDA)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default 1 on CPU, 4 on CUDA)")
    ap.add_argument("--loader", choices=["plain", "cache"], default="plain")
    ap.add_argument("--image-size", type=int, default=64, help="side of the synthetic JPEGs (EuroSAT: 64)")
    ap.add_argument("--data-images", type=int, default=200, help="images for the data-loading-only timing")
    ap.add_argument("--precision", choices=["fp32", "amp", "bf16"], default="fp32",
                    help="TEST.PREC (fp32, the default, evaluates as the authors' code does)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of (three separate passes, one together pass), order alternating; times are "
                         "the best round (least disturbed on a shared machine), per-round ratios are printed too")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default 1 on CPU: see bench/README.md, torch's choice on CUDA)")
    ap.add_argument("--json", action="store_true", help="print one JSON line (human lines go to stderr)")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device")
    args.images = args.images or (2000 if cuda else 16)
    args.batch = args.batch or (250 if cuda else 8)
    args.workers = args.workers if args.workers is not None else (4 if cuda else 1)
    if args.threads is None:
        args.threads = 0 if cuda else 1
    if args.threads:
        torch.set_num_threads(args.threads)
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    device = torch.device(args.device)
    precision = args.precision if cuda else "fp32"
    head = "fused"
    load0 = common.load_average()
    t_start = time.perf_counter()

    from mmrl.data.loaders import build_test_loader
    from mmrl.data.testcache import build_cached_test_loader
    from mmrl.data.transforms import build_test_transform
    from mmrl.datasets import build_dataset
    from mmrl.datatools.synthetic import write_synthetic_dataset
    from mmrl.engine.multi_eval import evaluate_together

    with tempfile.TemporaryDirectory() as tmp:
        want = max(args.images, args.data_images)
        per_class = max(8, -(-want // 3) + 2)  # 10 classes; the 50/20/30 split keeps ~30% for test
        write_synthetic_dataset("eurosat", tmp, n_classes=10, n_per_class=per_class,
                                image_size=(args.image_size, args.image_size))
        data = build_dataset("EuroSAT", tmp)
        items = data.test[: args.images]
        data_items = data.test[: args.data_images]
        cfg = make_cfg(args, str(Path(tmp) / "testcache"))
        import logging
        logging.getLogger("mmrl").setLevel(logging.WARNING)
        tf = build_test_transform(cfg)
        # data loading alone: decode + resize every pass vs reading the uint8 cache (built first, untimed)
        plain_all = build_test_loader(cfg, data_items, tf)
        cached_all = build_cached_test_loader(cfg, data_items, tf, name="EuroSAT-all", dataset_dir=data.dataset_dir)
        _, plain_s, _ = timed(device, lambda: [b["img"].sum() for b in plain_all])
        _, cache_s, _ = timed(device, lambda: [b["img"].sum() for b in cached_all])
        n_data = len(data_items)

        if args.loader == "cache":
            loader = build_cached_test_loader(cfg, items, tf, name="EuroSAT", dataset_dir=data.dataset_dir)
        else:
            loader = build_test_loader(cfg, items, tf)

        clip = common.load_random_backbone(args.backbone).to(device)
        models = make_models(args, clip, data, device)
        with torch.no_grad():  # per-model text features (once per run either way) and kernels
            warm = next(iter(loader))["img"][:2].to(device)
            for m in models:
                m.forward_eval(warm)

        sep_runs, tog_runs, one_runs = [], [], []
        preds_sep, preds_tog = [], []

        def run_separate():
            times = []
            preds_sep[:] = []
            for m in models:
                p, wall, _ = timed(device, lambda m=m: separate_pass(m, loader, head, device, precision))
                preds_sep.append(p)
                times.append(wall)
            one_runs.extend(times)
            sep_runs.append(sum(times))

        def run_together():
            res, wall, _ = timed(device, lambda: evaluate_together(models, loader, head, device, precision))
            preds_tog[:] = [torch.from_numpy(r["pred"]) for r in res]
            tog_runs.append(wall)

        for r in range(args.rounds):
            for fn in ((run_separate, run_together) if r % 2 == 0 else (run_together, run_separate)):
                fn()

    n = len(items)
    one_s, sep_s, tog_s = min(one_runs), min(sep_runs), min(tog_runs)
    same = all(torch.equal(a, b) for a, b in zip(preds_sep, preds_tog))
    out = {"bench": "eval", "backbone": args.backbone, "device": args.device, "trainer": args.trainer,
           "precision": precision, "images": n, "batch": args.batch, "workers": args.workers, "loader": args.loader,
           "rounds": args.rounds, "machine": common.machine(), "load_avg_start": load0,
           "one_images_per_s": round(n / one_s, 3),
           "three_separate_images_per_s": round(3 * n / sep_s, 3),
           "three_together_images_per_s": round(3 * n / tog_s, 3),
           "three_separate_s": round(sep_s, 3), "three_together_s": round(tog_s, 3),
           "ratio": round(sep_s / tog_s, 3),
           "ratio_median_of_rounds": round(common.median([s / t for s, t in zip(sep_runs, tog_runs)]), 3),
           "round_ratios": [round(s / t, 3) for s, t in zip(sep_runs, tog_runs)], "same_predictions": same,
           "data_images": n_data, "image_size": args.image_size,
           "data_plain_images_per_s": round(n_data / plain_s, 1), "data_cache_images_per_s": round(n_data / cache_s, 1),
           "load_avg_end": common.load_average()}
    say(f"eval bench: backbone={args.backbone} device={args.device} images={n} batch={args.batch} "
        f"loader={args.loader} workers={args.workers} load={load0}")
    say(f"  one checkpoint        {out['one_images_per_s']:8.2f} images/s")
    say(f"  three, separate       {out['three_separate_images_per_s']:8.2f} images/s ({sep_s:.1f} s)")
    say(f"  three, together       {out['three_together_images_per_s']:8.2f} images/s ({tog_s:.1f} s)")
    say(f"  together vs separate: {out['ratio']:.2f}x best vs best (per round {out['round_ratios']})   "
        f"same predictions: {same}")
    say(f"  data only ({n_data} images of {args.image_size}px): plain loader {out['data_plain_images_per_s']:.0f} images/s, "
        f"test cache {out['data_cache_images_per_s']:.0f} images/s")
    out["wall_s"] = round(time.perf_counter() - t_start, 1)
    say(f"  total {out['wall_s']:.0f} s, load average at end {out['load_avg_end']}")
    if args.json:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
