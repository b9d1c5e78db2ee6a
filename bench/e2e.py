"""End to end, as a user runs it: ``train.py`` base training, then ``--eval-only`` on the new
classes, on a synthetic EuroSAT-shaped root with random ViT-B/16 weights, per precision.

    python bench/e2e.py [--runs amp:graph,amp:eager,bf16:graph] [--per-class 1000] [--json]

The root has 10 classes of 64x64 JPEGs (EuroSAT's size); ``--per-class 1000`` gives 3,000 test
images (the split is 50/20/30). Training follows the B2N config (16 shots, batch 4, 10 epochs,
EuroSAT's REP_DIM 2048). Each run is a fresh ``train.py`` process, so the times include what a
user waits for. Phases, from record.json and the process's wall time:
  startup   interpreter, imports, config, until the run begins (record.json process_start_s)
  exit      after the run's record is written: loader workers, CUDA context, interpreter exit
  data      dataset listing, few-shot sampling, loaders, test-image cache (built by the
            first run of a split, read by later ones)
  model     backbone and model construction (random weights here: no file to read)
  train     the epochs (with the last-epoch checkpoint)
  test      the evaluation pass
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

PHASES = ("startup_s", "data_s", "model_s", "train_s", "test_s", "exit_s")


def run(argv: list[str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "train.py"), *argv], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    out = Path(argv[argv.index("--output-dir") + 1])
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"train.py failed ({proc.returncode}) for {out}")
    rec = json.loads((out / "record.json").read_text())
    t = rec["timings"]
    outside = wall - t["wall_s"]  # before the run began and after it finished
    startup = t.get("process_start_s") or outside
    phases = {"startup_s": startup, "data_s": t.get("data_s", 0.0), "model_s": t.get("model_s", 0.0),
              "train_s": t.get("train_s", 0.0), "test_s": t.get("eval_s", 0.0), "exit_s": outside - startup}
    return {"wall_s": round(wall, 2), **{k: round(v, 2) for k, v in phases.items()},
            "accuracy": rec["metrics"]["accuracy"], "precision": rec["precision"],
            "train_step": rec.get("train_step"), "device": rec["env"]["device"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="amp:graph,amp:eager,bf16:graph",
                    help="comma list of PREC:graph|eager (TRAIN.CUDA_GRAPH True|False)")
    ap.add_argument("--per-class", type=int, default=1000, help="images per class over all splits")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--backbone", default="random:ViT-B-16")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    from mmrl.datatools.synthetic import write_synthetic_dataset
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_synthetic_dataset("eurosat", tmp, n_classes=10, n_per_class=args.per_class, image_size=(64, 64))
        write_s = time.perf_counter() - t0
        say(f"e2e: synthetic EuroSAT root, {10 * args.per_class} images written in {write_s:.1f} s")
        common_argv = ["--root", tmp, "--seed", "1", "--trainer", "MMRL",
                       "--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml"),
                       "--config-file", str(REPO / "configs/trainers/MMRL/vit_b16.yaml")]
        opts = ["DATASET.NUM_SHOTS", "16", "TASK", "B2N", "MODEL.BACKBONE.NAME", args.backbone,
                "OPTIM.MAX_EPOCH", str(args.epochs), "DATALOADER.NUM_WORKERS", str(args.workers),
                "DATASET.FEWSHOT_DIR", f"{tmp}/fewshot", "TEST.CACHE_DIR", f"{tmp}/testcache"]
        for spec in args.runs.split(","):
            prec, mode = spec.split(":")
            train_dir, test_dir = f"{tmp}/out/{prec}_{mode}/train_base", f"{tmp}/out/{prec}_{mode}/test_new"
            flags = ["TRAINER.MMRL.PREC", prec, "TRAIN.CUDA_GRAPH", str(mode == "graph")]
            train = run([*common_argv, "--output-dir", train_dir, *opts, *flags, "DATASET.SUBSAMPLE_CLASSES", "base"])
            test = run([*common_argv, "--output-dir", test_dir, "--eval-only", "--model-dir", train_dir, *opts,
                        *flags, "DATASET.SUBSAMPLE_CLASSES", "new"])
            results.append({"prec": prec, "cuda_graph": mode == "graph", "train_base": train, "test_new": test})
            for what, r in (("train base", train), ("test new", test)):
                say(f"  {spec:12s} {what:10s} wall {r['wall_s']:7.1f} s = " + ", ".join(
                    f"{k[:-2]} {r[k]:.1f}" for k in PHASES) + f"  (acc {r['accuracy']:.1f}%, "
                    f"{r['precision']['used']}/{r['precision']['test_used']}, {r['train_step']})")
    out = {"bench": "e2e", "images_per_class": args.per_class, "epochs": args.epochs, "workers": args.workers,
           "backbone": args.backbone, "machine": common.machine(), "write_s": round(write_s, 1), "runs": results}
    if args.json:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
