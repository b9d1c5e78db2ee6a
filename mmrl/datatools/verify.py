"""Check a dataset folder against its spec: layout, classes, split sizes, images.

Fast by default: folders are listed with ``os.scandir`` (one listing per folder, not one
``stat`` per image) and images get a header check only (PIL parses the header; the last
bytes must hold the JPEG/PNG end marker, and only files failing that are decoded to
confirm). ``deep=True`` decodes every image.

The library returns :class:`VerifyReport` objects; the CLI (mmrl.datatools.cli) prints them.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field

from mmrl.data.resources import read_lines
from mmrl.datasets.registry import all_specs, get_spec
from mmrl.datasets.spec import DatasetSpec
from mmrl.datatools.image_check import check_images
from mmrl.errors import DatasetError

log = logging.getLogger("mmrl.data")

SIZE_KEYS = ("classes", "train", "val", "test")
MAX_EXAMPLES = 5


@dataclass
class Problem:
    what: str           # what is wrong, naming the path
    fix: str = ""       # what to do about it


@dataclass
class VerifyReport:
    name: str
    stem: str
    dataset_dir: str
    present: bool = True
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)     # fine for loading, worth knowing
    counts: dict[str, int | None] = field(default_factory=dict)
    images_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.present and not self.problems

    def add(self, what: str, fix: str = "") -> None:
        self.problems.append(Problem(what, fix))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def prepare_command(m: DatasetSpec, root: str) -> str:
    return f"mmrl data prepare {m.stem} --root {root or '$DATA'}"


# ---------------------------------------------------------------------------------------------
# Listing helpers (one scandir per folder)

class _DirCache:
    """Names of the files in each folder, listed once: membership tests without a stat per file."""

    def __init__(self) -> None:
        self._files: dict[str, frozenset[str] | None] = {}

    def files(self, folder: str) -> frozenset[str] | None:
        if folder not in self._files:
            try:
                with os.scandir(folder) as it:
                    self._files[folder] = frozenset(e.name for e in it if not e.is_dir())
            except (FileNotFoundError, NotADirectoryError):
                self._files[folder] = None
        return self._files[folder]

    def exists(self, path: str) -> bool:
        names = self.files(os.path.dirname(path))
        return names is not None and os.path.basename(path) in names


def _subdirs(path: str) -> list[str]:
    with os.scandir(path) as it:
        return sorted(e.name for e in it if not e.name.startswith(".") and e.is_dir())


def _files(path: str) -> list[str]:
    with os.scandir(path) as it:
        return [e.name for e in it if not e.name.startswith(".") and e.is_file()]


def _lines(path: str) -> list[str] | None:
    """Non-empty lines without their line ending; None if the file cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return [ln.rstrip("\r\n") for ln in f if ln.strip()]
    except OSError:
        return None


def _examples(items: list[str], n: int = MAX_EXAMPLES) -> str:
    shown = ", ".join(items[:n])
    return shown + (f", ... ({len(items)} in all)" if len(items) > n else "")


# ---------------------------------------------------------------------------------------------
# Per-kind checks. Each fills report.counts and returns the image paths to check.

def _check_split_json(m: DatasetSpec, ddir: str, report: VerifyReport, root: str,
                      cache: _DirCache) -> list[str]:
    path = os.path.join(ddir, m.split_file)
    redownload = f"delete {path} and run `{prepare_command(m, root)}` to fetch the published split"
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        return []  # already reported as a missing required file
    except (OSError, ValueError) as e:
        report.add(f"{path}: not readable JSON ({e})", redownload)
        return []
    if not isinstance(obj, dict) or any(k not in obj for k in ("train", "val", "test")):
        report.add(f"{path}: expected an object with keys train, val, test", redownload)
        return []
    prefix = os.path.join(ddir, m.prefix) if m.prefix else ddir
    names: dict[int, str] = {}
    clashes: list[str] = []
    missing: list[str] = []
    seen: set[str] = set()
    images: list[str] = []
    for key in ("train", "val", "test"):
        entries = obj[key]
        if not isinstance(entries, list):
            report.add(f"{path}: {key!r} is not a list", redownload)
            return []
        for i, e in enumerate(entries):
            if not (isinstance(e, list) and len(e) == 3 and isinstance(e[0], str)):
                report.add(f"{path}: {key}[{i}] is {e!r}, expected [path, label, classname]", redownload)
                return []
            rel, label, cname = e
            try:
                label = int(label)
            except (TypeError, ValueError):
                report.add(f"{path}: {key}[{i}] has label {e[1]!r}, expected an integer", redownload)
                return []
            if names.setdefault(label, str(cname)) != str(cname) and len(clashes) < MAX_EXAMPLES:
                clashes.append(f"{label}: {names[label]!r} vs {cname!r}")
            full = os.path.join(prefix, rel)
            if full in seen:
                continue
            seen.add(full)
            if cache.exists(full):
                images.append(full)
            else:
                missing.append(rel)
        report.counts[key] = len(entries)
    report.counts["classes"] = len(names)
    if clashes:
        report.add(f"{path}: a label maps to two class names ({'; '.join(clashes)})", redownload)
    if names and sorted(names) != list(range(len(names))):
        report.add(f"{path}: labels are not 0..{len(names) - 1} (found {len(names)} distinct labels, max "
                   f"{max(names)})", redownload)
    if missing:
        report.add(f"{len(missing)} image(s) listed in {path} are missing under {prefix}: {_examples(missing)}",
                   f"re-extract the images (delete {prefix} and run `{prepare_command(m, root)}`); a split JSON "
                   f"from another source may name different files")
    return images


def _check_variant_lists(m: DatasetSpec, ddir: str, report: VerifyReport, root: str, cache: _DirCache) -> list[str]:
    fix = f"re-extract the archive: `{prepare_command(m, root)}` (after deleting {ddir})"
    variants = _lines(os.path.join(ddir, "variants.txt"))
    if variants is None:
        return []
    variants = [v.strip() for v in variants]
    report.counts["classes"] = len(variants)
    known = set(variants)
    images, missing, unknown = [], [], []
    for key in ("train", "val", "test"):
        listing = os.path.join(ddir, f"images_variant_{key}.txt")
        lines = _lines(listing)
        if lines is None:
            continue
        report.counts[key] = len(lines)
        for ln in lines:
            parts = ln.split(" ")
            name = " ".join(parts[1:])
            if name not in known and len(unknown) < MAX_EXAMPLES:
                unknown.append(f"{os.path.basename(listing)}: {ln!r}")
            full = os.path.join(ddir, m.image_dir, parts[0] + ".jpg")
            (images if cache.exists(full) else missing).append(full)
    if unknown:
        report.add(f"{ddir}: split lines name variants not in variants.txt ({'; '.join(unknown)})", fix)
    if missing:
        rel = [os.path.relpath(p, ddir) for p in missing]
        report.add(f"{len(missing)} image(s) listed in {ddir}/images_variant_*.txt are missing: {_examples(rel)}", fix)
    return images


def _read_classnames(path: str, report: VerifyReport, fix: str) -> list[str] | None:
    """First tokens (wnids) of classnames.txt, in file order."""
    lines = _lines(path)
    if lines is None:
        return None
    bad = [ln for ln in lines if len(ln.split(" ")) < 2]
    if bad:
        report.add(f"{path}: lines must be '<wnid> <class name>'; bad: {_examples([repr(b) for b in bad])}", fix)
    return [ln.split(" ")[0] for ln in lines]


def _count_class_folders(folder: str, dirs: list[str]) -> tuple[int, list[str], list[str]]:
    """(total images, image paths, empty class folders)."""
    paths, empty = [], []
    for d in dirs:
        names = _files(os.path.join(folder, d))
        if not names:
            empty.append(d)
        paths.extend(os.path.join(folder, d, n) for n in names)
    return len(paths), paths, empty


def _check_numbered_folders(folder: str, dirs: list[str], wnids: list[str] | None, classnames_path: str,
                            report: VerifyReport, fix: str) -> None:
    """ImageNetV2: folders 0..N-1; label k takes line k of classnames.txt."""
    bad = [d for d in dirs if not d.isdigit()]
    labels = sorted(int(d) for d in dirs if d.isdigit())
    if bad:
        report.add(f"{folder}: class folders must be named 0..999; unexpected: {_examples(bad)}", fix)
    if labels and labels != list(range(len(labels))):
        report.add(f"{folder}: class folders are not 0..{len(labels) - 1} without gaps", fix)
    if wnids is not None and len(wnids) < len(labels):
        report.add(f"{classnames_path}: {len(wnids)} lines but {len(labels)} class folders (label k uses line k)",
                   "use imagenet/classnames.txt (1000 lines, sorted by wnid)")


def _check_wnid_folders(m: DatasetSpec, folder: str, dirs: list[str], wnids: list[str] | None,
                        classnames_path: str, report: VerifyReport, fix: str, strict: bool) -> None:
    """ImageNet, -Sketch, -A, -R: folders are wnids (all of the expected list when strict, else a subset)."""
    expected = set(read_lines(m.class_list)) if m.class_list else None
    present = set(dirs)
    if expected is not None:
        extra = sorted(present - expected)
        miss = sorted(expected - present) if strict else []
        if miss or extra:
            detail = "; ".join(t for t in (f"missing {_examples(miss)}" if miss else "",
                                           f"unexpected {_examples(extra)}" if extra else "") if t)
            report.add(f"{folder}: class folders differ from the {len(expected)} expected {m.name} wnids "
                       f"({detail})", fix)
    if wnids is not None:
        unnamed = sorted(present - set(wnids))
        if unnamed:
            report.add(f"{classnames_path}: no class name for folder(s) {_examples(unnamed)}",
                       "use CoOp's imagenet/classnames.txt (1000 wnids)")


def _check_folders(m: DatasetSpec, ddir: str, report: VerifyReport, root: str, strict: bool) -> list[str]:
    """ImageNet and its four variants: one folder per class, no split JSON."""
    fix = f"`{prepare_command(m, root)}` (or see the expected layout it prints)"
    classnames_path = os.path.join(ddir, "classnames.txt")
    wnids = _read_classnames(classnames_path, report,
                             f"copy imagenet/classnames.txt here or run `{prepare_command(m, root)}`")
    img_root = os.path.join(ddir, m.image_dir)
    if not os.path.isdir(img_root):
        return []
    # (split, subfolder): ImageNet's train/ -> train and val/ -> test; a variant's folders -> test
    parts = m.verify_parts
    images: list[str] = []
    first: tuple[str, list[str]] | None = None
    for key, sub in parts:
        folder = os.path.join(img_root, sub) if sub else img_root
        if not os.path.isdir(folder):
            continue
        dirs = _subdirs(folder)
        n, paths, empty = _count_class_folders(folder, dirs)
        report.counts[key] = n
        images.extend(paths)
        if empty:
            report.add(f"{folder}: {len(empty)} empty class folder(s): {_examples(empty)}", fix)
        if m.numbered_classes:
            _check_numbered_folders(folder, dirs, wnids, classnames_path, report, fix)
        else:
            _check_wnid_folders(m, folder, dirs, wnids, classnames_path, report, fix, strict)
        if first is None:
            first = (folder, dirs)
            report.counts["classes"] = len(dirs)
        elif dirs != first[1]:
            report.add(f"{folder}: its class folders differ from {first[0]}'s ({len(dirs)} vs {len(first[1])})",
                       "sort the val images into the train wnid folders (prepare does this from the devkit)")
    if m.val_is_test:
        report.counts["val"] = report.counts.get("test")
    return images


# ---------------------------------------------------------------------------------------------

def _check_required(m: DatasetSpec, ddir: str, report: VerifyReport, root: str) -> None:
    missing = []
    for rel in m.required:
        p = os.path.join(ddir, rel.rstrip("/"))
        ok = os.path.isdir(p) if rel.endswith("/") else os.path.isfile(p)
        if not ok:
            missing.append(rel)
    if missing:
        report.add(f"{ddir}: missing {', '.join(missing)}",
                   f"run `{prepare_command(m, root)}` (it prints the expected layout when files must be "
                   f"fetched by hand)")
    absent_raw = [r for r in m.raw if not os.path.exists(os.path.join(ddir, r))]
    if absent_raw:
        report.notes.append(f"raw files absent ({', '.join(absent_raw)}): fine with the split JSON, needed only "
                            f"to regenerate it")


def _compare_sizes(m: DatasetSpec, report: VerifyReport, expected: Mapping[str, int | None], root: str) -> None:
    where = m.split_file or m.split_where or "the class folders"
    wrong = []
    for key in SIZE_KEYS:
        want = expected.get(key)
        have = report.counts.get(key)
        if want is None or have is None or (key == "val" and m.val_is_test):
            continue
        if have != want:
            wrong.append(f"{key} {have:,} (expected {want:,})")
    if wrong:
        if m.split_file:
            fix = (f"use the published split: delete {os.path.join(report.dataset_dir, m.split_file)} and run "
                   f"`{prepare_command(m, root)}`")
        else:
            fix = f"the folder is incomplete or has extra files: re-extract it with `{prepare_command(m, root)}`"
        report.add(f"{report.dataset_dir}: sizes from {where} differ from the published ones: {'; '.join(wrong)}",
                   fix)


def verify_dataset(name: str, root: str | os.PathLike, *, deep: bool = False, images: bool = True,
                   check_sizes: bool = True, expected: Mapping[str, int | None] | None = None,
                   workers: int | None = None, progress: bool = False) -> VerifyReport:
    """Check ``<root>/<folder>`` of one dataset.

    Sizes are compared with the published ones unless ``check_sizes`` is False;
    ``expected`` overrides single values (keys classes/train/val/test, None = skip), e.g. for
    a synthetic copy. ``images=False`` skips opening images; ``deep`` decodes each one.
    """
    m = get_spec(name)
    root_s = os.fspath(root)
    ddir = os.path.join(os.path.abspath(os.path.expanduser(root_s)), m.folder)
    report = VerifyReport(m.name, m.stem, ddir)
    if not os.path.isdir(ddir):
        report.present = False
        report.add(f"{ddir} not found", f"run `{prepare_command(m, root_s)}`, or set --root/DATA to the folder "
                                        f"that contains {m.folder}/")
        return report
    _check_required(m, ddir, report, root_s)
    cache = _DirCache()
    if m.verify_kind == "split_json":
        paths = _check_split_json(m, ddir, report, root_s, cache)
    elif m.verify_kind == "variant_lists":
        paths = _check_variant_lists(m, ddir, report, root_s, cache)
    elif m.verify_kind == "class_folders":
        paths = _check_folders(m, ddir, report, root_s, strict=check_sizes and expected is None)
    else:
        raise DatasetError(f"dataset spec {m.name}: unknown verify check {m.verify_kind!r} "
                           f"(split_json, variant_lists or class_folders)")
    want: dict[str, int | None] = dict(m.sizes()) if check_sizes else {}
    if expected is not None:
        want.update({k: v for k, v in expected.items() if k in SIZE_KEYS})
    _compare_sizes(m, report, want, root_s)
    if images and paths:
        bad = check_images(paths, deep=deep, workers=workers, progress=progress, desc=m.stem)
        report.images_checked = len(paths)
        if bad:
            shown = [f"{os.path.relpath(p, ddir)} ({why})" for p, why in bad]
            report.add(f"{len(bad)} unreadable image(s) in {ddir}: {_examples(shown, 3)}",
                       f"re-extract the images (delete them or the image folder, then run "
                       f"`{prepare_command(m, root_s)}`)")
    return report


def verify_all(root: str | os.PathLike, names: Iterable[str] | None = None, **kwargs) -> list[VerifyReport]:
    """Reports for ``names``, or for every dataset whose folder exists under ``root``."""
    root_abs = os.path.abspath(os.path.expanduser(os.fspath(root)))
    if names:
        chosen = [get_spec(n) for n in names]
    else:
        chosen = [m for m in all_specs() if os.path.isdir(os.path.join(root_abs, m.folder))]
        if not chosen:
            raise DatasetError(f"no dataset folders under {root_abs} (expected some of: "
                               f"{', '.join(m.folder for m in all_specs())}). Pass the right --root or set DATA, "
                               f"or create them with `mmrl data prepare <dataset> --root {os.fspath(root)}`.")
    return [verify_dataset(m.name, root, **kwargs) for m in chosen]
