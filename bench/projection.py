"""Project the whole MMRL base-to-novel protocol (11 datasets x 3 seeds) onto one GPU from
measured per-step and per-image costs (the JSON lines bench/gpu.sh writes).

    python bench/projection.py RESULTS.jsonl [--path graph|fast] [--seeds 3] [--json]

Per dataset (sizes: classes and test images of the real splits, mmrl.sweep.catalog; epochs and
batches: the config each job of `mmrl sweep --protocol b2n --trainer MMRL` resolves to):
- train: 3 runs of epochs x floor(16 x base classes / batch) steps, at the step time of
  ``--path`` (graph: replayed from a CUDA graph, as training runs on a GPU; fast: the same step
  eager) measured for that class count and batch (linear between measured counts), plus a
  per-epoch overhead (loader start, checkpoint, logging) measured end to end;
- test: each training run scores the base test images itself (3 single-model passes; the
  decoded-image cache makes only the first decode), the new test images are scored by one
  shared 3-seed pass (`eval-many`); an image costs the larger of its model time (measured
  throughput) and its decode time (measured on realistic 400-pixel JPEGs with 16 workers),
  since loader workers decode while the GPU computes (without a measurement on large JPEGs,
  decoding is left out and the output says so);
- start-up: interpreter, imports, data listing, model build and exit per process (measured end
  to end): one per training run, one per shared evaluation.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

DATASETS = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
            "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101")


def load(path: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            out.setdefault(rec["bench"], []).append(rec)
    return out


def step_curves(steps: list[dict], path: str) -> dict[int, list[tuple[int, float]]]:
    """Per batch size, (classes, step seconds of ``path``) from every MMRL amp step benchmark."""
    pts: dict[int, dict[int, float]] = {}
    for rec in steps:
        if rec["trainer"] != "MMRL" or rec["prec"] != "amp":
            continue
        for row in rec["rows"]:
            if f"{path}_step_s" in row:
                by_n = pts.setdefault(rec["batch"], {})
                by_n[row["classes"]] = min(by_n.get(row["classes"], math.inf), row[f"{path}_step_s"])
    return {b: sorted(p.items()) for b, p in pts.items()}


def interpolate(curve: list[tuple[int, float]], n: int) -> float:
    if n <= curve[0][0] or len(curve) == 1:
        return curve[0][1]
    for (a, ta), (b, tb) in zip(curve, curve[1:]):
        if n <= b:
            return ta + (tb - ta) * (n - a) / (b - a)
    (a, ta), (b, tb) = curve[-2], curve[-1]
    return tb + (tb - ta) * (n - b) / (b - a)


def job_settings(stem: str) -> tuple[int, int]:
    """(MAX_EPOCH, TRAIN_X.BATCH_SIZE) of the B2N training job for ``stem``, as the sweep resolves it."""
    from mmrl.config import resolve_config
    from mmrl.engine.args import parse_run_args
    from mmrl.sweep.plan import expand
    job = next(j for j in expand("b2n", trainers=["MMRL"], datasets=[stem], seeds=[1]) if j.role == "train")
    cfg = resolve_config(parse_run_args(list(job.argv))).cfg
    return cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--path", choices=["graph", "fast"], default="graph")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from mmrl.sweep.catalog import sizes
    res = load(args.results)
    curves = step_curves(res.get("step", []), args.path)
    if 4 not in curves:
        raise SystemExit(f"no {args.path} MMRL amp step times at batch 4 in the results")
    evals = {r["image_size"]: r for r in res.get("eval", [])}
    compute = min(evals)  # the small-image run is bound by the model, not by decoding
    one_s = 1.0 / evals[compute]["one_images_per_s"]
    three_s = 3.0 / evals[compute]["three_together_images_per_s"]
    decode_measured = max(evals) >= 224
    decode_s = 1.0 / evals[max(evals)]["data_plain_images_per_s"] if decode_measured else 0.0
    runs = [r for r in res["e2e"][0]["runs"] if r["prec"] == "amp"]
    e2e = next((r for r in runs if r["cuda_graph"] == (args.path == "graph")), runs[0])
    tr, te = e2e["train_base"], e2e["test_new"]
    e2e_epochs = res["e2e"][0]["epochs"]
    e2e_steps = e2e_epochs * (16 * 5 // 4)
    e2e_step = interpolate(step_curves(res["step"], "graph" if e2e["cuda_graph"] else "fast")[4], 5)
    epoch_overhead = max(0.0, (tr["train_s"] - e2e_steps * e2e_step) / e2e_epochs)
    # a process's exit is part of what the sweep waits for (results before e2e split it: in startup_s)
    start_train = tr["startup_s"] + tr.get("exit_s", 0.0) + tr["model_s"] + tr["data_s"]
    start_eval = te["startup_s"] + te.get("exit_s", 0.0) + te["data_s"] + args.seeds * te["model_s"]
    rows, total = [], 0.0
    for stem in DATASETS:
        classes, test = sizes(stem)
        base = math.ceil(classes / 2)
        epochs, batch = job_settings(stem)
        steps = args.seeds * epochs * ((16 * base) // batch)
        if batch not in curves:
            raise SystemExit(f"{stem} trains with batch {batch}: no graphed step times at that batch in the results")
        step_s = interpolate(curves[batch], base)
        train_s = steps * step_s + args.seeds * epochs * epoch_overhead
        base_test = round(test * base / classes)
        new_test = test - base_test
        eval_s = (base_test * (args.seeds * one_s + decode_s) + new_test * max(three_s, decode_s))
        start_s = args.seeds * start_train + start_eval
        seconds = train_s + eval_s + start_s
        total += seconds
        rows.append({"dataset": stem, "base_classes": base, "epochs": epochs, "batch": batch, "steps": steps,
                     "step_ms": round(step_s * 1e3, 2), "train_s": round(train_s), "test_images": test,
                     "eval_s": round(eval_s), "startup_s": round(start_s), "total_s": round(seconds)})
    summary = {"path": args.path, "decode_measured": decode_measured, "gpu_hours": round(total / 3600, 3), "total_s": round(total), "epoch_overhead_s": round(epoch_overhead, 3),
               "one_model_ms_per_image": round(one_s * 1e3, 3), "three_models_ms_per_image": round(three_s * 1e3, 3),
               "decode_ms_per_image": round(decode_s * 1e3, 3), "startup_train_s": round(start_train, 1),
               "startup_eval_s": round(start_eval, 1)}
    cols = ["dataset", "base_classes", "epochs", "batch", "steps", "step_ms", "train_s", "test_images", "eval_s",
            "startup_s", "total_s"]
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols), file=sys.stderr if args.json else sys.stdout)
    for r in rows:
        print("| " + " | ".join(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in cols) + " |",
              file=sys.stderr if args.json else sys.stdout)
    print(f"| **all** | | | | {sum(r['steps'] for r in rows):,} | | {sum(r['train_s'] for r in rows):,} | "
          f"{sum(r['test_images'] for r in rows):,} | {sum(r['eval_s'] for r in rows):,} | "
          f"{sum(r['startup_s'] for r in rows):,} | **{round(total):,} s = {total / 3600:.2f} GPU-hours** |",
          file=sys.stderr if args.json else sys.stdout)
    print(json.dumps(summary), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"bench": "projection", "rows": rows, **summary}))


if __name__ == "__main__":
    main()
