"""Download and lay out a dataset: ``prepare_dataset("eurosat", root)``.

A dataset's spec lists its steps; each step makes some paths inside the dataset folder from
one or more of the spec's source files with one of the actions below, and is skipped
when those paths exist, so a second run of a finished dataset does nothing and an
interrupted one continues.

Where a source file is looked up, in order:
1. the download folder (``<root>/.mmrl-downloads`` by default: earlier downloads, or files
   a person put there by hand);
2. the mirror (``mirror=`` / ``--from`` / ``$MMRL_DATA_MIRROR``): a local folder or a base URL
   holding the files under their spec's names, flat (``<mirror>/EuroSAT.zip``);
3. the official source (HTTP with resume, or Google Drive via gdown), unless it needs a
   login or is known dead: those are collected into manual steps printed with the exact
   target layout.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mmrl.datasets.registry import all_specs, get_spec
from mmrl.datasets.spec import DatasetSpec, PrepareStep, Source
from mmrl.datatools.fetch import MIRROR_ENV, Fetcher, NotFetchable
from mmrl.datatools.steps import ACTIONS, StepContext, remove_leftovers
from mmrl.errors import DatasetError, DownloadError

DOWNLOAD_DIRNAME = ".mmrl-downloads"


@dataclass
class PrepareResult:
    name: str
    stem: str
    dataset_dir: str
    status: str = "complete"            # complete | already | manual
    actions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manual: str | None = None           # the steps a person must do, with the target layout

    @property
    def ok(self) -> bool:
        return self.status in ("complete", "already")


def _done(step: PrepareStep, ddir: Path) -> bool:
    return all((ddir / p.rstrip("/")).is_dir() if p.endswith("/") else (ddir / p).is_file()
               for p in step.products)


def _steps(m: DatasetSpec, given: set[str]) -> list[PrepareStep]:
    """The spec's default steps, each replaced by its variant for a given option (--videos ...)."""
    for option in sorted(given):
        if not any(s.option == option for s in m.prepare):
            takes = [spec.stem for spec in all_specs() if any(s.option == option for s in spec.prepare)]
            raise DatasetError(f"--{option.replace('_', '-')} applies to {', '.join(takes)} only")
    chosen = {s.products: s for s in m.prepare if s.option in given}
    return [chosen.get(s.products, s) for s in m.prepare if s.option is None]


# ---------------------------------------------------------------------------------------------

def default_download_dir(root: str | os.PathLike) -> Path:
    return Path(os.path.abspath(os.path.expanduser(os.fspath(root)))) / DOWNLOAD_DIRNAME


def manual_steps(m: DatasetSpec, missing: list[Source], root: str, download_dir: Path,
                 optional: list[Source] = ()) -> str:
    """What a person must do: which files, where from, where to put them, the target layout."""
    lines = [f"{m.name} needs files that cannot be downloaded automatically:"]

    def describe(s: Source, tag: str = "") -> None:
        why = "needs a login" if s.needs_login else ("its host is gone" if s.dead else "no direct link recorded")
        lines.append(f"  - {s.file}{tag}: {why}; get it from {s.page or s.where}")
        if s.note:
            lines.append(f"      ({s.note})")

    for s in missing:
        describe(s)
    for s in optional:
        describe(s, " (optional: only needed to regenerate the split)")
    lines += [
        f"Put these files in {download_dir} (or in any folder DIR), then run again:",
        f"  mmrl data prepare {m.stem} --root {root} [--from DIR]",
        "Or build the target layout by hand (under the data root):",
        *("  " + ln for ln in m.layout.splitlines()),
    ]
    return "\n".join(lines)


def prepare_dataset(name: str, root: str | os.PathLike, *, mirror: str | None = None,
                    download_dir: str | os.PathLike | None = None, keep_archives: bool = False,
                    progress: bool = True, videos: str | os.PathLike | None = None,
                    val_labels: str | os.PathLike | None = None) -> PrepareResult:
    """Fetch and lay out one dataset under ``root``; see the module docstring.

    ``mirror`` defaults to ``$MMRL_DATA_MIRROR``. ``videos``: UCF101 only, a folder or archive
    of the original videos to take the middle frames from (instead of CoOp's mid-frames zip).
    ``val_labels``: ImageNet only, a file mapping val images to wnids (instead of the devkit).
    """
    m = get_spec(name)
    if not m.prepare:
        why = "it is generated on first use" if m.builtin_demo else "its spec lists no prepare steps"
        raise DatasetError(f"{m.name} has nothing to download: {why}.")
    root_s = os.fspath(root)
    if not root_s:
        raise DatasetError("no data root: pass --root DIR or set DATA")
    root_p = Path(os.path.abspath(os.path.expanduser(root_s)))
    ddir = root_p / m.folder
    result = PrepareResult(m.name, m.stem, str(ddir))
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    dl = Path(download_dir) if download_dir else default_download_dir(root_p)
    fetcher = Fetcher(dl, mirror, progress)
    options = {"videos": videos, "val_labels": val_labels}
    ctx = StepContext(m, root_p, ddir, fetcher, keep_archives, result, options)
    steps = _steps(m, {k for k, v in options.items() if v is not None})
    remove_leftovers(ctx, steps)

    manual: list[Source] = []
    optional_manual: list[Source] = []
    for step in steps:
        if _done(step, ddir):
            continue
        ddir.mkdir(parents=True, exist_ok=True)
        files: dict[str, Path] = {}
        by_hand: list[Source] = []
        try:
            for f in step.sources:
                try:
                    files[f] = fetcher.fetch(m.source(f))
                except NotFetchable as e:
                    by_hand.append(e.source)
        except DownloadError as e:
            if not step.optional:
                raise
            result.notes.append(f"skipped {', '.join(step.products)} (only needed to regenerate the split): {e}")
            continue
        if by_hand:
            if step.optional:
                optional_manual.extend(by_hand)
                result.notes.append(f"skipped {', '.join(step.products)}: {', '.join(x.file for x in by_hand)} "
                                    f"must be fetched by hand (only needed to regenerate the split)")
            else:
                manual.extend(by_hand)
            continue
        ACTIONS[step.action](ctx, files, *step.args)
        if not _done(step, ddir):
            missing = [p for p in step.products if not (ddir / p.rstrip("/")).exists()]
            raise DatasetError(f"{m.name}: after using {', '.join(step.sources) or 'the given files'}, "
                               f"{', '.join(str(ddir / p) for p in missing)} still missing; the archive layout "
                               f"is not the expected one. Expected:\n{m.layout}")
    if manual:
        result.status = "manual"
        result.manual = manual_steps(m, manual, root_s, dl, optional=optional_manual)
    elif not result.actions:
        result.status = "already"
    _cleanup_download_dir(dl)
    return result


def _cleanup_download_dir(dl: Path) -> None:
    try:
        dl.rmdir()  # only when empty: nothing left to resume
    except OSError:
        pass
