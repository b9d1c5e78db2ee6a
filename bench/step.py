"""Train-step time and peak memory: the fast path against the authors' way, in one run.

    python bench/step.py --case eurosat|imagenet [--device cpu|cuda] [--trainer MMRL|MMRLpp] [--json]

ViT-B/16-sized CLIP with random weights (no download), batch 4 on CPU / 32 on CUDA, fp32.
A step is forward_train + backward + AdamW step. Paths (--paths):
  fast       MultiModalRepresentationLearner (mmrl/models/mmrl.py)
  reference  ReferenceMMRL (two CLIP copies, 77 tokens, every layer every step) with the
             zero-shot text features computed once per run, as the authors' trainer does
             (--reference-recompute-u: recompute them every step, ReferenceMMRL.forward_train as is)
  proposed   fast + the shortcuts prototyped in bench/proposed.py
Each path runs in its own fresh subprocess (so its peak memory is its own): warm-up steps,
then timed steps (median). CPU memory = peak RSS during the timed steps minus the RSS of the
bare interpreter (weights + optimizer + activations); CUDA = torch.cuda.max_memory_allocated.
The fused logits of the first step (same seeds, so same parameters and batch) are compared.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

import common  # noqa: E402

# (warm-up, timed) steps per path on CPU, chosen to keep a case within a few minutes
CPU_STEPS = {("eurosat", "fast"): (1, 3), ("eurosat", "proposed"): (1, 3), ("eurosat", "reference"): (1, 3),
             ("imagenet", "fast"): (1, 2), ("imagenet", "proposed"): (1, 2), ("imagenet", "reference"): (0, 1)}
CUDA_STEPS = (3, 10)


def build(path: str, args, device: torch.device):
    """(model with forward_train, trainable parameters) for one path, weights on ``device``."""
    from mmrl.models.mmrl import ArchSpec, Behaviour, MultiModalRepresentationLearner
    from mmrl.models.prompts import Prompts
    from mmrl.models.reference import ReferenceMMRL

    clip = common.load_random_backbone(args.backbone).to(device)
    names, template = common.case_classes(args.case)
    prompts = Prompts.build(names, template)
    spec = ArchSpec(trainer=args.trainer, rep_dim=2048 if args.case == "eurosat" and args.trainer == "MMRL" else 512)
    cls = MultiModalRepresentationLearner
    if path == "proposed":
        from proposed import ProposedMMRL
        cls = ProposedMMRL
    torch.manual_seed(1)
    fast = cls(spec, clip, prompts, Behaviour(alpha=0.7, beta=0.9, reg_weight=1.0)).to(device)
    if path != "reference":
        return fast, [p for p in fast.parameters() if p.requires_grad]

    class AuthorsReference(ReferenceMMRL):
        """u computed once per run (the released trainer's text_features_clip)."""

        def __init__(self, fast, u):
            super().__init__(fast)
            self.u = u

        def zero_shot(self, images):
            with torch.no_grad():
                g = self.clip_zs.encode_image(images, normalize=True)
            return g, self.u

    if args.reference_recompute_u:
        ref = ReferenceMMRL(fast)
    else:
        u = fast.zero_shot_text_features()  # setup, not timed; equal to clip_zs.encode_text up to rounding
        ref = AuthorsReference(fast, u)
    object.__setattr__(fast, "clip", None)  # the reference holds its own two copies
    del clip
    return ref, [p for p in ref.parameters() if p.requires_grad]


def child(args) -> None:
    """One path in this (fresh) process; writes its result JSON and first-step logits."""
    base_mb = common.rss_mb()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 for the logit comparison
    torch.backends.cudnn.allow_tf32 = False
    t0 = time.perf_counter()
    model, params = build(args.child, args, device)
    gc.collect()
    build_s = time.perf_counter() - t0
    opt = torch.optim.AdamW(params, lr=1e-3)
    g = torch.Generator().manual_seed(7)
    n_cls = common.CASES[args.case][1]
    images = torch.randn(args.batch, 3, 224, 224, generator=g).to(device)
    labels = torch.randint(0, n_cls, (args.batch,), generator=g).to(device)
    first = {}

    def step():
        out = model.forward_train(images, labels)
        loss, fused = out[0], out[1]
        if not first:
            first["fused"] = fused.detach().float().cpu()
            first["loss"] = float(loss.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    warm, timed = args.warmup, args.steps
    warm_s = []
    for _ in range(warm):
        with common.Clock(device) as c:
            step()
        warm_s.append(c.wall)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = common.rss_mb()
        reset_ok = common.reset_peak_rss()
    walls, cpus = [], []
    for _ in range(timed):
        with common.Clock(device) as c:
            step()
        walls.append(c.wall)
        cpus.append(c.cpu)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        mem = {"peak_mem_mb": peak, "act_mem_mb": peak - before, "mem_kind": "cuda max_memory_allocated"}
    else:
        peak = common.peak_rss_mb()
        mem = {"peak_mem_mb": peak - base_mb, "act_mem_mb": peak - before,
               "mem_kind": "peak RSS during timed steps minus bare-interpreter RSS"
               + ("" if reset_ok else " (peak not resettable: includes construction)")}
    res = {"path": args.child, "step_s": common.median(walls), "steps_s": walls, "steps_cpu_s": cpus,
           "warmup_s": warm_s, "build_s": build_s, "loss0": first["loss"], **mem}
    torch.save(first["fused"], args.out + ".pt")
    Path(args.out).write_text(json.dumps(res))


def run_path(path: str, args) -> dict:
    warm, steps = (CUDA_STEPS if args.device == "cuda" else CPU_STEPS[(args.case, path)])
    warm = args.warmup if args.warmup is not None else warm
    steps = args.steps if args.steps is not None else steps
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "res.json")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", path, "--out", out, "--case", args.case,
               "--device", args.device, "--trainer", args.trainer, "--batch", str(args.batch),
               "--warmup", str(warm), "--steps", str(steps), "--backbone", args.backbone]
        if args.reference_recompute_u:
            cmd.append("--reference-recompute-u")
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        subprocess.run(cmd, check=True)
        res = json.loads(Path(out).read_text())
        res["fused"] = torch.load(out + ".pt")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(common.CASES), default="eurosat")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--trainer", choices=["MMRL", "MMRLpp"], default="MMRL")
    ap.add_argument("--paths", default="fast,reference", help="comma list of fast, reference, proposed")
    ap.add_argument("--batch", type=int, default=None, help="default 4 on CPU, 32 on CUDA")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default 1 on CPU: see bench/README.md; torch's choice on CUDA)")
    ap.add_argument("--backbone", default="random:ViT-B-16")
    ap.add_argument("--reference-recompute-u", action="store_true",
                    help="reference recomputes the zero-shot text features every step")
    ap.add_argument("--json", action="store_true", help="print one JSON line (human lines go to stderr)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads is None:
        args.threads = 0 if args.device == "cuda" else 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch is None:
        args.batch = 32 if args.device == "cuda" else 4
    if args.child:
        child(args)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device")
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    load0 = common.load_average()
    t0 = time.perf_counter()
    say(f"step bench: case={args.case} trainer={args.trainer} device={args.device} batch={args.batch} "
        f"threads={torch.get_num_threads()} backbone={args.backbone} load={load0}")
    results = {}
    for p in paths:
        results[p] = r = run_path(p, args)
        say(f"  {p:9s} step {r['step_s']:8.3f} s (median of {len(r['steps_s'])}; cpu {common.median(r['steps_cpu_s']):.1f} s)"
            f"  peak mem {r['peak_mem_mb']:8.0f} MB (activations {r['act_mem_mb']:.0f} MB)  build {r['build_s']:.1f} s")
    out = {"bench": "step", "case": args.case, "trainer": args.trainer, "device": args.device, "batch": args.batch,
           "backbone": args.backbone, "classes": common.CASES[args.case][1],
           "reference_u": "per step" if args.reference_recompute_u else "once per run",
           "machine": common.machine(), "load_avg_start": load0, "load_avg_end": common.load_average()}
    for p, r in results.items():
        out[f"{p}_step_s"] = round(r["step_s"], 4)
        out[f"{p}_best_step_s"] = round(min(r["steps_s"]), 4)
        out[f"{p}_steps_s"] = [round(x, 4) for x in r["steps_s"]]
        out[f"{p}_cpu_s"] = round(common.median(r["steps_cpu_s"]), 3)
        out[f"peak_mem_{p}_mb"] = round(r["peak_mem_mb"], 1)
        out[f"act_mem_{p}_mb"] = round(r["act_mem_mb"], 1)
    if "reference" in results:
        ref = results["reference"]
        for p in paths:
            if p == "reference":
                continue
            r = results[p]
            suffix = "" if p == "fast" else f"_{p}"
            out[f"ratio{suffix}"] = round(ref["step_s"] / r["step_s"], 3)
            out[f"ratio_best{suffix}"] = round(min(ref["steps_s"]) / min(r["steps_s"]), 3)
            out[f"mem_ratio{suffix}"] = round(r["peak_mem_mb"] / ref["peak_mem_mb"], 3)
            out[f"max_abs_logit_diff{suffix}"] = float((r["fused"] - ref["fused"]).abs().max())
            say(f"  {p} vs reference: {out[f'ratio{suffix}']:.2f}x faster (best vs best {out[f'ratio_best{suffix}']:.2f}x), "
                f"memory {out[f'mem_ratio{suffix}']:.2f}x, "
                f"max |logit diff| {out[f'max_abs_logit_diff{suffix}']:.2e}")
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    say(f"  total {out['wall_s']:.0f} s, load average at end {out['load_avg_end']}")
    if args.json:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
