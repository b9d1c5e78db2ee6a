"""Where a run's start-up and exit go: each part measured in fresh processes, as a run pays it.

    python bench/startup.py [--device cuda] [--repeats 3] [--json]

  interpreter      python -c pass
  import torch / torchvision / open_clip / mmrl run path
                   cumulative imports in one process, each step's increment reported;
                   (import sklearn.metrics): what a run no longer imports, for comparison
  cuda init        the first CUDA call (context creation), --device cuda only
  weights          an OpenAI-format ViT-B/16 file (random values, fp16 as OpenAI's): SHA256,
                   read, and the model built from it, by the harness and by open_clip's own
                   build (random initial values drawn, fp16 round trip, then the file reloaded)
  exit             a process holding ViT-B/16 (on the device) from its last statement until
                   its parent sees it end: a normal interpreter exit vs mmrl.cli.exit_process
Medians over --repeats processes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

IMPORTS = textwrap.dedent("""
    import json, sys, time
    t = [time.perf_counter()]
    import torch; t.append(time.perf_counter())
    import torchvision; t.append(time.perf_counter())
    import open_clip; t.append(time.perf_counter())
    import mmrl.engine.run, mmrl.engine.trainer, mmrl.engine.evaluator, mmrl.trainers.registry
    t.append(time.perf_counter())
    sklearn_loaded = "sklearn" in sys.modules
    try:  # what the evaluator imported for its macro-F1 before it computed it itself
        t0 = time.perf_counter(); import sklearn.metrics; sklearn = time.perf_counter() - t0
    except ImportError:
        sklearn = None
    cuda = None
    if sys.argv[1] == "cuda":
        torch.zeros(1, device="cuda"); torch.cuda.synchronize(); cuda = time.perf_counter() - t[-1]
    steps = ["torch", "torchvision", "open_clip", "mmrl run path"]
    print(json.dumps({"imports": {s: t[i + 1] - t[i] for i, s in enumerate(steps)}, "cuda_init": cuda,
                      "sklearn_loaded": sklearn_loaded, "sklearn": sklearn}))
""")

WEIGHTS = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import torch
    from mmrl.clip import backbone
    from mmrl.utils.download import sha256_file
    path = Path(sys.argv[1])
    t0 = time.perf_counter(); sha256_file(path)
    t1 = time.perf_counter(); sd = backbone._read_openai_state_dict(path)
    t2 = time.perf_counter(); backbone._build_from_openai_sd(sd, path)
    t3 = time.perf_counter()
    from open_clip.model import build_model_from_openai_state_dict
    plain = build_model_from_openai_state_dict(dict(sd), quick_gelu=True, cast_dtype=None).float()
    plain.load_state_dict(sd)
    t4 = time.perf_counter()
    print(json.dumps({"sha256": t1 - t0, "read": t2 - t1, "build": t3 - t2, "build_open_clip": t4 - t3}))
""")

EXIT = textwrap.dedent("""
    import sys, time
    import torch
    from mmrl.cli import exit_process
    sys.path.insert(0, sys.argv[3])
    import common
    model = common.load_random_backbone().to(sys.argv[1])
    if sys.argv[1] == "cuda":
        torch.cuda.synchronize()
    print(time.time(), flush=True)
    if sys.argv[2] == "exit_process":
        exit_process(0)
""")


def child(code: str, *args: str) -> tuple[str, float]:
    """(stdout, wall time until the process has ended) of ``python -c code args``."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"startup bench: a child process failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout, wall


def exit_seconds(device: str, how: str) -> float:
    proc = subprocess.Popen([sys.executable, "-c", EXIT, device, how, str(HERE)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=ENV)
    last = float(proc.stdout.readline())
    proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"startup bench: the exit child failed ({proc.returncode})")
    return time.time() - last


def openai_format_file(folder: str) -> Path:
    import torch
    path = Path(folder) / "ViT-B-16.pt"
    model = common.load_random_backbone()
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    say = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else (lambda *a: print(*a, flush=True))
    med = common.median
    rows: dict[str, float] = {}
    rows["interpreter"] = med([child("pass")[1] for _ in range(args.repeats)])
    imports = [json.loads(child(IMPORTS, args.device)[0]) for _ in range(args.repeats)]
    for step in imports[0]["imports"]:
        rows[f"import {step}"] = med([r["imports"][step] for r in imports])
    if imports[0]["sklearn"] is not None:
        rows["(import sklearn.metrics)"] = med([r["sklearn"] for r in imports])
    if args.device == "cuda":
        rows["cuda init"] = med([r["cuda_init"] for r in imports])
    with tempfile.TemporaryDirectory() as tmp:
        path = openai_format_file(tmp)
        weights = [json.loads(child(WEIGHTS, str(path))[0]) for _ in range(args.repeats)]
    for k in weights[0]:
        rows[f"weights {k}"] = med([w[k] for w in weights])
    for how in ("normal", "exit_process"):
        rows[f"exit {how}"] = med([exit_seconds(args.device, how) for _ in range(args.repeats)])
    say(f"start-up and exit parts, {args.device}, median of {args.repeats} processes:")
    for k, v in rows.items():
        say(f"  {k:28s} {v:6.2f} s")
    out = {"bench": "startup", "device": args.device, "repeats": args.repeats, "machine": common.machine(),
           "sklearn_loaded_by_run_path": any(r["sklearn_loaded"] for r in imports),
           "seconds": {k: round(v, 3) for k, v in rows.items()}}
    if args.json:
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
