"""The `mmrl` command: train, eval, eval-many, explain, data, weights, sweep, status, table, plot."""
from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn

from mmrl.datatools import cli as data_cli
from mmrl.errors import ConfigError, MMRLError
from mmrl.results import cli as results_cli
from mmrl.sweep import cli as sweep_cli


def _cmd_train(args: argparse.Namespace) -> int:
    from mmrl.engine.run import main as run_main
    return run_main(args.rest)


def _cmd_eval(args: argparse.Namespace) -> int:
    from mmrl.engine.run import main as run_main
    rest = list(args.rest)
    return run_main(rest if "--eval-only" in rest else ["--eval-only", *rest])


def _cmd_eval_many(args: argparse.Namespace) -> int:
    """Eval-only runs that share a test pass: a JSON file holding a list of train.py argv lists."""
    from pathlib import Path

    from mmrl.engine.run import main_many
    try:
        argvs = json.loads(Path(args.jobs).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"eval-many jobs file {args.jobs} cannot be read as JSON ({type(e).__name__}: {e})") \
            from None
    if not isinstance(argvs, list) or not all(isinstance(a, list) and all(isinstance(x, str) for x in a)
                                              for a in argvs):
        raise ConfigError(f"eval-many jobs file {args.jobs}: expected a JSON list of train.py argument lists "
                          f"(lists of strings)")
    codes = main_many([list(a) for a in argvs])
    return max(codes, default=0)


def _cmd_explain(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from mmrl.config import resolve_config
    from mmrl.engine.args import parse_run_args
    resolved = resolve_config(parse_run_args(args.rest))
    rows = resolved.explain_rows()
    if args.changed:
        rows = [r for r in rows if r[2] != "default"]
    if args.json:
        print(json.dumps([{"key": k, "value": v, "layer": layer} for k, v, layer in rows], default=str, indent=1))
    else:
        print(tabulate([(k, repr(v), layer) for k, v, layer in rows], headers=["key", "value", "layer"]))
    return 0


def _cmd_data_show(args: argparse.Namespace) -> int:
    import random

    from mmrl.datasets import build_dataset
    if args.seed >= 0:
        random.seed(args.seed)  # the run's Python RNG state when its dataset is built
    logging.getLogger("mmrl").setLevel(logging.WARNING)
    ds = build_dataset(args.dataset, args.root, num_shots=args.shots, seed=args.seed, subsample=args.subsample,
                       fewshot_dir=args.fewshot_dir)
    splits = {"train": ds.train_x, "val": ds.val or [], "test": ds.test}
    wanted = [args.split] if args.split else list(splits)
    if args.json:
        out = {s: [{"impath": ds.relpath(it), "label": it.label, "classname": it.classname} for it in splits[s]]
               for s in wanted}
        print(json.dumps({"dataset": ds.name, "classnames": ds.classnames, **out}, indent=1))
        return 0
    print(f"# {ds.name}: {ds.num_classes} classes, train {len(ds.train_x)}, val {len(ds.val or [])}, "
          f"test {len(ds.test)} (shots {args.shots}, seed {args.seed}, subsample {args.subsample})")
    for s in wanted:
        for it in splits[s]:
            print(f"{s}\t{ds.relpath(it)}\t{it.label}\t{it.classname}")
    return 0


def _cmd_weights(args: argparse.Namespace) -> int:
    from mmrl.clip.backbone import clip_cache_dir, load_backbone, openai_url
    if args.action == "where":
        url, fname, sha = openai_url(args.name)
        print(f"{clip_cache_dir(args.cache_dir) / fname}\n{url}\nsha256 {sha}")
        return 0
    _, info = load_backbone(args.name, args.weights, args.cache_dir)
    print(f"{info.name}: {info.source} {info.path or ''} sha256 {info.sha256 or '-'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmrl", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="one run, with train.py's flags", add_help=False)
    t.add_argument("rest", nargs=argparse.REMAINDER)
    t.set_defaults(func=_cmd_train)
    e = sub.add_parser("eval", help="one evaluation (train.py --eval-only)", add_help=False)
    e.add_argument("rest", nargs=argparse.REMAINDER)
    e.set_defaults(func=_cmd_eval)
    m = sub.add_parser("eval-many", help="several --eval-only runs with one shared test pass")
    m.add_argument("jobs", help="JSON file: a list of train.py argument lists")
    m.set_defaults(func=_cmd_eval_many)
    x = sub.add_parser("explain", help="print every resolved config key, its value and the layer that set it")
    x.add_argument("--changed", action="store_true", help="only keys not at their default")
    x.add_argument("--json", action="store_true", help="one JSON list of {key, value, layer}")
    x.add_argument("rest", nargs=argparse.REMAINDER, help="the same arguments as train.py (mmrl train --help)")
    x.set_defaults(func=_cmd_explain)

    d = sub.add_parser("data", help="datasets: show, verify, prepare")
    dsub = d.add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("show", help="the train/val/test items a run would use")
    s.add_argument("dataset", help="config stem (eurosat) or NAME (EuroSAT)")
    s.add_argument("--root", default="", help="dataset root (default: $DATA)")
    s.add_argument("--shots", type=int, default=-1)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--subsample", choices=["all", "base", "new"], default="all")
    s.add_argument("--split", choices=["train", "val", "test"])
    s.add_argument("--fewshot-dir", default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=_cmd_data_show)
    data_cli.register_verify(dsub)
    data_cli.register_prepare(dsub)

    w = sub.add_parser("weights", help="CLIP weights: fetch and verify, or print where they go")
    w.add_argument("action", choices=["fetch", "where"])
    w.add_argument("name", nargs="?", default="ViT-B/16")
    w.add_argument("--weights", default="", help="an explicit weights file to check")
    w.add_argument("--cache-dir", default="")
    w.set_defaults(func=_cmd_weights)

    sweep_cli.register_sweep(sub)
    sweep_cli.register_status(sub)
    results_cli.register_table(sub)
    results_cli.register_plot(sub)
    return p


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head`


def quiet_on_broken_pipe(fn: Callable[[], int]) -> int:
    """Run a command whose output may go to a reader that stops early (`mmrl table | head`):
    exit quietly instead of printing a BrokenPipeError traceback."""
    try:
        code = fn()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the interpreter flushes stdout again at exit; point it at /dev/null so that is silent too
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _instrumented() -> bool:
    monitoring = getattr(sys, "monitoring", None)  # Python 3.12+: cProfile and debuggers register here
    tools = [monitoring.get_tool(i) for i in range(6)] if monitoring else []
    return sys.gettrace() is not None or sys.getprofile() is not None or any(tools)


def exit_process(code: int | None) -> NoReturn:
    """End a command-line process once its command has returned. The atexit handlers run as at a
    normal exit (logging flushes and closes its files, multiprocessing stops loader workers); the
    interpreter's teardown of every module and tensor after them is skipped: about a second per
    process with a ViT-B/16 loaded (bench/startup.py), and every result is on disk by then."""
    code = 0 if code is None else code
    sys.stdout.flush()
    sys.stderr.flush()
    if _instrumented() or any(t.is_alive() and not t.daemon for t in threading.enumerate()
                              if t is not threading.main_thread()):
        # a profiler or debugger that reports after the script (python -m cProfile), or a thread
        # still working: the interpreter ends as usual
        raise SystemExit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    return quiet_on_broken_pipe(lambda: _main(argv))


def _dispatch(argv: list[str]) -> int:
    parser = build_parser()  # lists the registered methods: imports the plug-ins
    if argv[:2] in (["explain", "-h"], ["explain", "--help"]):
        parser.parse_args(argv)  # explain's own flags; `mmrl train --help` lists train.py's
    if argv and argv[0] in ("train", "eval", "explain"):
        # train.py's own flags follow: argparse must not interpret them here
        own = [a for a in argv[1:3] if a in ("--changed", "--json")] if argv[0] == "explain" else []
        rest = argv[1 + len(own):]
        args = argparse.Namespace(rest=rest, changed="--changed" in own, json="--json" in own,
                                  func={"train": _cmd_train, "eval": _cmd_eval, "explain": _cmd_explain}[argv[0]])
    else:
        args = parser.parse_args(argv)
    if getattr(args, "command", None) == "data" and getattr(args, "root", None) == "":
        args.root = os.environ.get("DATA", "")
    return int(args.func(args) or 0)


def _main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _dispatch(argv)
    except MMRLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError) as e:
        # a path given on the command line that cannot be used: name it, no traceback
        print(f"error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 2
