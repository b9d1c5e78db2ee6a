"""`mmrl data verify` and `mmrl data prepare`: argument parsing and printing only.

mmrl/cli.py calls :func:`register_verify` / :func:`register_prepare` with the `data`
subparsers; each handler returns the exit status. The work is in verify.py / prepare.py.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from mmrl.errors import DatasetError

EXIT_OK, EXIT_PROBLEMS = 0, 1


def _root(args: argparse.Namespace) -> str:
    # mmrl/cli.py fills an empty --root from $DATA; do the same when called directly.
    root = args.root or os.environ.get("DATA", "")
    if not root:
        raise DatasetError("no data root: pass --root DIR or set DATA to the folder holding the dataset folders")
    return root


# ---------------------------------------------------------------------------------------------
# verify

def _cmd_verify(args: argparse.Namespace) -> int:
    from mmrl.datatools.verify import verify_all
    expected = None
    if args.expect:
        expected = {}
        for kv in args.expect:
            key, _, value = kv.partition("=")
            if key not in ("classes", "train", "val", "test") or not value.isdigit():
                raise DatasetError(f"--expect {kv!r}: use classes=N, train=N, val=N or test=N")
            expected[key] = int(value)
    reports = verify_all(_root(args), args.datasets or None, deep=args.deep, images=not args.no_images,
                         check_sizes=not args.no_sizes, expected=expected, workers=args.workers,
                         progress=not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps([r.to_dict() for r in reports], indent=1))
    else:
        for r in reports:
            _print_report(r)
        bad = [r.stem for r in reports if not r.ok]
        print(f"{len(reports) - len(bad)} of {len(reports)} dataset(s) OK" + (f"; problems: {', '.join(bad)}" if bad else ""))
    return EXIT_OK if all(r.ok for r in reports) else EXIT_PROBLEMS


def _fmt_counts(counts: dict) -> str:
    parts = []
    if counts.get("classes") is not None:
        parts.append(f"{counts['classes']} classes")
    for key in ("train", "val", "test"):
        if counts.get(key) is not None:
            parts.append(f"{key} {counts[key]:,}")
    return ", ".join(parts)


def _print_report(r) -> None:
    head = f"{r.name} ({r.dataset_dir})"
    counts = _fmt_counts(r.counts)
    checked = f"; {r.images_checked:,} images checked" if r.images_checked else ""
    if r.ok:
        print(f"OK    {head}: {counts}{checked}")
    else:
        print(f"FAIL  {head}: {len(r.problems)} problem(s)" + (f" [{counts}]" if counts else ""))
        for p in r.problems:
            print(f"  - {p.what}")
            if p.fix:
                print(f"    fix: {p.fix}")
    for n in r.notes:
        print(f"  note: {n}")


def register_verify(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "verify", help="check dataset folders: layout, class count, split sizes, missing/unreadable images",
        description="Check each dataset against the published layout and split sizes. Without DATASET, every "
                    "dataset folder found under the root is checked. Exit status 1 if anything is wrong.")
    p.add_argument("datasets", nargs="*", metavar="DATASET", help="stem (eurosat) or NAME (EuroSAT)")
    p.add_argument("--root", default="", help="data root holding the dataset folders (default: $DATA)")
    p.add_argument("--deep", action="store_true", help="decode every image fully (slow) instead of a header check")
    p.add_argument("--no-images", action="store_true", help="do not open images at all (layout and sizes only)")
    p.add_argument("--no-sizes", action="store_true",
                   help="do not compare class count and split sizes with the published ones (e.g. synthetic data)")
    p.add_argument("--expect", action="append", metavar="KEY=N",
                   help="expected classes/train/val/test instead of the published value (repeatable)")
    p.add_argument("--workers", type=int, default=None, help="processes for image checks (default: all CPUs)")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.set_defaults(func=_cmd_verify)
    return p


# ---------------------------------------------------------------------------------------------
# prepare

def _cmd_prepare(args: argparse.Namespace) -> int:
    from mmrl.datatools.prepare import prepare_dataset
    _log_to_stderr()
    root = _root(args)
    status = EXIT_OK
    for name in args.datasets:
        r = prepare_dataset(name, root, mirror=args.mirror, download_dir=args.download_dir,
                            keep_archives=args.keep_archives, progress=not args.no_progress,
                            videos=args.videos, val_labels=args.val_labels)
        for a in r.actions:
            print(f"  {a}")
        for n in r.notes:
            print(f"  note: {n}")
        if r.status == "already":
            print(f"{r.name}: already prepared in {r.dataset_dir}; nothing to do")
        elif r.status == "complete":
            print(f"{r.name}: prepared in {r.dataset_dir}. Check it with `mmrl data verify {r.stem} --root {root}`")
        else:
            print(r.manual)
            status = EXIT_PROBLEMS
    return status


def _log_to_stderr() -> None:
    """Progress lines of the library (logger "mmrl.prepare" etc.) while the command runs."""
    logger = logging.getLogger("mmrl")
    if not logger.handlers and not logging.getLogger().handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(h)
        logger.setLevel(logging.INFO)


def register_prepare(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prepare", help="download and lay out datasets in the CoOp layout",
        description="Download a dataset's files (resumable; checksums where known), extract them safely and "
                    "arrange the layout the loaders expect, plus the published split JSON. Files that need a "
                    "login or whose host is gone are listed with the target layout to build by hand. Running it "
                    "again on a finished dataset does nothing.")
    p.add_argument("datasets", nargs="+", metavar="DATASET", help="stem (eurosat) or NAME (EuroSAT)")
    p.add_argument("--root", default="", help="data root holding the dataset folders (default: $DATA)")
    p.add_argument("--from", dest="mirror", default=None, metavar="DIR_OR_URL",
                   help="folder or base URL holding the source files under their own names, tried before the "
                        "official sources (default: $MMRL_DATA_MIRROR)")
    p.add_argument("--download-dir", default=None,
                   help="where downloads go while in progress (default: <root>/.mmrl-downloads)")
    p.add_argument("--keep-archives", action="store_true", help="keep downloaded archives after extraction")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--videos", default=None, metavar="DIR_OR_ARCHIVE",
                   help="ucf101: take the middle frame of each original video instead of the mid-frames zip "
                        "(needs PyAV or OpenCV)")
    p.add_argument("--val-labels", default=None, metavar="FILE",
                   help="imagenet: '<image> <wnid>' lines or LOC_val_solution.csv instead of the devkit")
    p.set_defaults(func=_cmd_prepare)
    return p
