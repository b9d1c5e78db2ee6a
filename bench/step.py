"""Train-step time and peak memory: the harness's step against the straightforward one.

    python bench/step.py [--trainer MMRL|MMRLpp|CoOp|CoCoOp|KgCoOp|IVLP|MaPLe|PromptSRC]
                         [--case eurosat|imagenet] [--device cpu|cuda] [--prec fp32|amp|bf16]
                         [--classes 5,50,500] [--paths fast,graph,reference] [--profile] [--json]

ViT-B/16-sized CLIP with random weights (no download). A step is what the trainer does per
batch: forward_train under the precision's autocast, scaled backward, optimizer and
grad-scaler step. Paths (--paths):
  fast       the harness's step (mmrl.engine.train_step.TrainStep, eager) over the method's
             fast model, with the harness's optimiser (on CUDA its fused kernel)
  graph      the same step replayed from a CUDA graph (CUDA only; what training uses there)
  reference  the method's straightforward computation (REFERENCES below: its own CLIP copies,
             77 text tokens, every layer every step) with a plain optimiser and GradScaler loop
MMRL and MMRL++: batch 4, AdamW at lr 1e-3 (fast: mmrl/models/mmrl.py; reference:
mmrl/models/reference.py). The baselines run as their official base-to-novel training job on
the case's dataset (the config `mmrl sweep --protocol b2n` resolves to, its pinned options
included): the model built by the method for training (its official initial tensors), the
config's SGD and schedule (mmrl.engine.schedule), and its batch, which is at most the
16-shot base set (KgCoOp's 128 is 80 EuroSAT images, one batch per epoch, as the loader
gives it).
Each path runs in its own fresh subprocess (so its peak memory is its own): warm-up steps,
then timed steps (median). ``--classes`` takes a list: the same process then measures each
class count in turn (names from the ImageNet list, the case's template). CPU memory = peak
RSS during the timed steps minus the bare interpreter's RSS; CUDA = max_memory_allocated.
``--profile`` (CUDA) also records a few steps with torch.profiler: kernels per step, the time
the GPU was busy per step against the wall time, and the ops that took the most GPU time.
The fused logits of the first step (same seeds: same parameters and batch) are compared.
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
CPU_STEPS = {("eurosat", "fast"): (1, 3), ("eurosat", "reference"): (1, 3),
             ("imagenet", "fast"): (1, 2), ("imagenet", "reference"): (0, 1)}
CUDA_STEPS = (3, 15)
PROFILED_STEPS = 6


# Every method that trains, with the straightforward computation its step is measured against
# (tests/test_bench_step.py fails when a registered method that trains is missing here).
REFERENCES = {
    "MMRL": "mmrl.models.reference:ReferenceMMRL",
    "MMRLpp": "mmrl.models.reference:ReferenceMMRL",
    "CoOp": "mmrl.models.coop_reference:ReferencePrompted",
    "CoCoOp": "mmrl.models.coop_reference:ReferencePrompted",
    "KgCoOp": "mmrl.models.coop_reference:ReferencePrompted",
    "IVLP": "mmrl.models.deep_prompts_reference:ReferenceDeepPrompts",
    "MaPLe": "mmrl.models.deep_prompts_reference:ReferenceDeepPrompts",
    "PromptSRC": "mmrl.models.deep_prompts_reference:ReferenceDeepPrompts",
}
MMRL_FAMILY = ("MMRL", "MMRLpp")  # built directly (batch 4, AdamW); the others from their B2N config
SHOTS = 16  # the protocol's shots per base class: the training set a batch is drawn from


def b2n_config(trainer: str, case: str):
    """(config, its trainer YAML's stem) of ``trainer``'s base-to-novel training job on the case's
    dataset, as the sweep resolves it."""
    from mmrl.config import resolve_config
    from mmrl.engine.args import parse_run_args
    from mmrl.sweep.plan import expand
    job = next(j for j in expand("b2n", trainers=[trainer], datasets=[case], seeds=[1]) if j.role == "train")
    args = parse_run_args(list(job.argv))
    return resolve_config(args).cfg, Path(args.config_file).stem


def reference_class(trainer: str):
    import importlib
    module, name = REFERENCES[trainer].split(":")
    return getattr(importlib.import_module(module), name)


def build_fast(args, device: torch.device, n_classes: int):
    """The method's model as the harness trains it, on the shared random backbone."""
    clip = common.shared_random_backbone(args.backbone, device)
    names, template = common.case_classes(args.case, n_classes)
    torch.manual_seed(1)
    if args.trainer in MMRL_FAMILY:
        from mmrl.models.mmrl import ArchSpec, Behaviour, MultiModalRepresentationLearner
        from mmrl.models.prompts import Prompts
        spec = ArchSpec(trainer=args.trainer,
                        rep_dim=2048 if args.case == "eurosat" and args.trainer == "MMRL" else 512)
        return MultiModalRepresentationLearner(spec, clip, Prompts.build(names, template),
                                               Behaviour(alpha=0.7, beta=0.9, reg_weight=1.0)).to(device)
    from mmrl.trainers.base import BuildContext
    from mmrl.trainers.registry import get
    ctx = BuildContext(cfg=args.cfg, classnames=names, template=template, device=device,
                       backbone=lambda _name: clip)  # the config names ViT-B/16: its random twin stands in
    return get(args.trainer).build(ctx, for_training=True)


def build(path: str, args, device: torch.device, n_classes: int):
    """The model (with forward_train) of one path, weights on ``device``."""
    if path != "reference":
        return build_fast(args, device, n_classes)
    fast = build_fast(args, device, n_classes)
    ref = reference_class(args.trainer)(fast)
    object.__setattr__(fast, "clip", None)  # the reference holds its own copies, nothing else
    common.drop_backbones()
    return ref


def make_optimizer(path: str, params, args, device: torch.device) -> torch.optim.Optimizer:
    """MMRL: AdamW (fused on CUDA for the harness). The baselines: the harness's optimiser and
    schedule from the config's OPTIM, or for the reference a plain SGD with the same values."""
    from mmrl.engine.schedule import ProtocolLR, build_protocol_optimizer
    from mmrl.engine.train_step import build_adamw
    if args.trainer in MMRL_FAMILY:
        return build_adamw(params, device, lr=1e-3) if path != "reference" else torch.optim.AdamW(params, lr=1e-3)
    optim = args.cfg.OPTIM
    if path != "reference":
        return build_protocol_optimizer(params, optim, device)[0]
    opt = torch.optim.SGD(params, lr=optim.LR, momentum=optim.MOMENTUM, dampening=optim.SGD_DAMPNING,
                          nesterov=optim.SGD_NESTEROV, weight_decay=optim.WEIGHT_DECAY)
    ProtocolLR(opt, optim.LR, optim.MAX_EPOCH, optim.WARMUP_EPOCH, optim.WARMUP_CONS_LR, optim.WARMUP_TYPE,
               optim.LR_SCHEDULER)  # the first epoch's learning rate, as the harness's
    return opt


def make_step(path: str, model, args, device: torch.device):
    """A callable (images, labels) -> (loss, fused) doing one whole training step."""
    from mmrl.engine.precision import autocast_context, resolve_precision
    from mmrl.engine.train_step import TrainStep
    prec = resolve_precision(args.prec, device)
    params = [p for p in model.parameters() if p.requires_grad]
    scaler = torch.amp.GradScaler("cuda", enabled=prec == "amp")
    opt = make_optimizer(path, params, args, device)
    if path != "reference":
        return TrainStep(model, opt, scaler, prec, device, graphs=path == "graph")

    def step(images, labels):
        with autocast_context(prec, device):
            loss, fused = model.forward_train(images, labels)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.detach(), fused.detach()
    return step


def profile_steps(step, images, labels, device) -> dict:
    """Kernels per step, GPU-busy vs wall seconds per step, and the ops with the most GPU time."""
    from torch.profiler import DeviceType, ProfilerActivity, profile
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(PROFILED_STEPS):
            step(images, labels)
        torch.cuda.synchronize()
    wall = (time.perf_counter() - t0) / PROFILED_STEPS
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    busy_us = sum(e.device_time for e in kernels) / PROFILED_STEPS  # microseconds
    table = prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=15, max_name_column_width=60)
    return {"kernels_per_step": round(len(kernels) / PROFILED_STEPS, 1), "gpu_busy_s_per_step": busy_us / 1e6,
            "wall_s_per_step_profiled": wall, "top_ops": table}


def measure(path: str, args, device: torch.device, n_classes: int, base_mb: float) -> dict:
    t0 = time.perf_counter()
    model = build(path, args, device, n_classes)
    step = make_step(path, model, args, device)
    gc.collect()
    build_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(7)
    images = torch.randn(args.batch, 3, 224, 224, generator=g).to(device)
    labels = torch.randint(0, n_classes, (args.batch,), generator=g).to(device)
    model.train()
    loss0, fused0 = step(images, labels)
    first = {"loss": float(loss0), "fused": fused0.float().cpu()}
    warm_s = []
    for _ in range(args.warmup):
        with common.Clock(device) as c:
            step(images, labels)
        warm_s.append(c.wall)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        before = common.rss_mb()
        reset_ok = common.reset_peak_rss()
    walls, cpus = [], []
    for _ in range(args.steps):
        with common.Clock(device) as c:
            step(images, labels)
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
    res = {"path": path, "classes": n_classes, "step_s": common.median(walls), "steps_s": walls,
           "steps_cpu_s": cpus, "warmup_s": warm_s, "build_s": build_s, "loss0": first["loss"], **mem}
    if args.profile and device.type == "cuda":
        res["profile"] = profile_steps(step, images, labels, device)
    if hasattr(step, "replays"):
        res["graph_replays"] = step.replays
    del model, step
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {**res, "fused": first["fused"]}


def child(args) -> None:
    """One path in this (fresh) process, for each class count; writes results and first-step logits."""
    base_mb = common.rss_mb()
    args.cfg = None if args.trainer in MMRL_FAMILY else b2n_config(args.trainer, args.case)[0]
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 for the logit comparison
    torch.backends.cudnn.allow_tf32 = False
    out = []
    for n in args.class_list:
        res = measure(args.child, args, device, n, base_mb)
        torch.save(res.pop("fused"), f"{args.out}.{n}.pt")
        out.append(res)
    Path(args.out).write_text(json.dumps(out))


def run_path(path: str, args) -> list[dict]:
    warm, steps = (CUDA_STEPS if args.device == "cuda" else CPU_STEPS[(args.case, "reference" if path == "reference"
                                                                        else "fast")])
    warm = args.warmup if args.warmup is not None else warm
    steps = args.steps if args.steps is not None else steps
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "res.json")
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", path, "--out", out, "--case", args.case,
               "--device", args.device, "--trainer", args.trainer, "--batch", str(args.batch), "--prec", args.prec,
               "--classes", ",".join(map(str, args.class_list)), "--warmup", str(warm), "--steps", str(steps),
               "--backbone", args.backbone]
        if args.profile:
            cmd.append("--profile")
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        subprocess.run(cmd, check=True)
        results = json.loads(Path(out).read_text())
        for r in results:
            r["fused"] = torch.load(f"{out}.{r['classes']}.pt")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(common.CASES), default="eurosat")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--trainer", choices=list(REFERENCES), default="MMRL")
    ap.add_argument("--prec", choices=["fp32", "amp", "bf16"], default=None,
                    help="default amp on CUDA (the protocol's), fp32 on CPU")
    ap.add_argument("--classes", default=None, help="comma list of class counts (default: the case's)")
    ap.add_argument("--paths", default="fast,reference", help="comma list of fast, graph (CUDA), reference")
    ap.add_argument("--batch", type=int, default=None,
                    help="MMRL: default 4 (the protocol's); the baselines: their B2N config's, at most the 16-shot "
                         "base set")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--profile", action="store_true", help="CUDA: profile a few steps per path and class count")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default 1 on CPU: see bench/README.md; torch's choice on CUDA)")
    ap.add_argument("--backbone", default="random:ViT-B-16")
    ap.add_argument("--json", action="store_true", help="print one JSON line (human lines go to stderr)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    cuda = args.device == "cuda"
    args.prec = args.prec or ("amp" if cuda else "fp32")
    args.class_list = [int(c) for c in args.classes.split(",")] if args.classes else [common.CASES[args.case][1]]
    if args.threads is None:
        args.threads = 0 if cuda else 1
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child(args)
        return
    setup = {}
    if args.trainer in MMRL_FAMILY:
        args.batch = args.batch or 4
    else:
        cfg, stem = b2n_config(args.trainer, args.case)
        optim = cfg.OPTIM
        args.batch = args.batch or min(cfg.DATALOADER.TRAIN_X.BATCH_SIZE, SHOTS * min(args.class_list))
        setup = {"config": stem, "config_batch": cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                 "optim": {"name": optim.NAME, "lr": optim.LR, "momentum": optim.MOMENTUM,
                           "weight_decay": optim.WEIGHT_DECAY}}
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device")
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if "graph" in paths and not cuda:
        sys.exit("--paths graph needs --device cuda")
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    load0 = common.load_average()
    t0 = time.perf_counter()
    say(f"step bench: case={args.case} trainer={args.trainer} device={args.device} prec={args.prec} "
        f"batch={args.batch} classes={args.class_list} threads={torch.get_num_threads()} backbone={args.backbone}"
        + (f" config={setup['config']} (batch {setup['config_batch']}) optim={setup['optim']}" if setup else ""))
    results = {}
    for p in paths:  # a line per path as soon as it is measured (a time limit keeps what was said)
        results[p] = run_path(p, args)
        say("  " + p + ": " + ", ".join(f"{r['classes']} classes {r['step_s'] * 1e3:.2f} ms" for r in results[p]))
    rows = []
    for i, n in enumerate(args.class_list):
        row = {"classes": n}
        for p in paths:
            r = results[p][i]
            row[f"{p}_step_s"] = round(r["step_s"], 5)
            row[f"{p}_best_step_s"] = round(min(r["steps_s"]), 5)
            row[f"{p}_cpu_s"] = round(common.median(r["steps_cpu_s"]), 5)
            row[f"peak_mem_{p}_mb"] = round(r["peak_mem_mb"], 1)
            row[f"build_{p}_s"] = round(r["build_s"], 2)
            if "profile" in r:
                prof = r["profile"]
                row[f"{p}_kernels_per_step"] = prof["kernels_per_step"]
                row[f"{p}_gpu_busy_s"] = round(prof["gpu_busy_s_per_step"], 5)
                say(f"--- {p}, {n} classes: profiled ops (self CUDA time) ---\n{prof['top_ops']}")
            say(f"  {n:5d} classes {p:9s} step {r['step_s'] * 1e3:9.2f} ms (median of {len(r['steps_s'])}; "
                f"host {common.median(r['steps_cpu_s']) * 1e3:.1f} ms)  peak mem {r['peak_mem_mb']:8.0f} MB"
                + (f"  kernels/step {row[f'{p}_kernels_per_step']:.0f}, GPU busy {row[f'{p}_gpu_busy_s'] * 1e3:.2f} ms"
                   if "profile" in r else ""))
        if "reference" in results:
            ref = results["reference"][i]
            for p in paths:
                if p == "reference":
                    continue
                r = results[p][i]
                row[f"ratio_{p}"] = round(ref["step_s"] / r["step_s"], 3)
                row[f"mem_ratio_{p}"] = round(r["peak_mem_mb"] / ref["peak_mem_mb"], 3)
                row[f"max_abs_logit_diff_{p}"] = float((r["fused"] - ref["fused"]).abs().max())
                row[f"loss0_diff_{p}"] = abs(r["loss0"] - ref["loss0"])
                say(f"  {n:5d} classes {p} vs reference: {row[f'ratio_{p}']:.2f}x faster, memory "
                    f"{row[f'mem_ratio_{p}']:.2f}x, max |logit diff| {row[f'max_abs_logit_diff_{p}']:.2e}, "
                    f"|loss diff| {row[f'loss0_diff_{p}']:.2e} ({args.prec})")
        rows.append(row)
    out = {"bench": "step", "case": args.case, "trainer": args.trainer, "device": args.device, "prec": args.prec,
           "batch": args.batch, "backbone": args.backbone, **setup, "rows": rows, "machine": common.machine(),
           "load_avg_start": load0, "load_avg_end": common.load_average(),
           "wall_s": round(time.perf_counter() - t0, 1)}
    say(f"  total {out['wall_s']:.0f} s")
    if args.json:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
