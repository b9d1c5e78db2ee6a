"""The actions a dataset spec's prepare steps name (``PrepareStep.action``): each makes its step's
products inside the dataset folder from the step's source files."""
from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mmrl.data.fileio import atomic_path, numbered_lines
from mmrl.datasets.spec import DatasetSpec
from mmrl.datasets.ucf101 import rename_action
from mmrl.datatools.fetch import Fetcher
from mmrl.errors import DatasetError, DownloadError
from mmrl.utils.extract import TEMP_PREFIX, ensure_tar_ended, extract_archive, merge_move

if TYPE_CHECKING:
    from mmrl.datatools.prepare import PrepareResult

_JUNK = ("__MACOSX",)
_STAGING_PREFIX = ".mmrl-staging-"
_VIDEOS_PREFIX = ".mmrl-videos-"
# The names tempfile.mkdtemp gives with these prefixes: what a killed run leaves behind.
_LEFTOVER = re.compile("^(?:" + "|".join(map(re.escape, (TEMP_PREFIX, _STAGING_PREFIX, _VIDEOS_PREFIX)))
                       + ")[a-z0-9_]{8}$")


@dataclass
class StepContext:
    m: DatasetSpec
    root: Path
    ddir: Path
    fetcher: Fetcher
    keep_archives: bool
    result: PrepareResult
    options: dict


def remove_leftovers(ctx: StepContext, steps: Iterable) -> None:
    """Delete the temporary folders an earlier, killed run left in the dataset folder; in the data
    root, which other datasets share, only those holding a folder this dataset extracts there."""
    places = [(ctx.ddir, None)] + [(ctx.root, s.args[0]) for s in steps
                                   if s.action == "extract" and len(s.args) > 1 and s.args[1]]
    for folder, own in places:
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if not _LEFTOVER.match(p.name) or p.is_symlink() or not p.is_dir():
                continue
            if own is not None and not (p / own).exists():
                continue
            try:
                shutil.rmtree(p)
            except OSError as e:
                ctx.result.notes.append(f"could not remove {p}, left by an interrupted earlier run ({e}); "
                                        f"delete it by hand to free its disk space")
                continue
            ctx.result.actions.append(f"removed {p}, left by an interrupted earlier run")


def _place(ctx: StepContext, files: dict[str, Path]) -> None:
    """Copy each source file into the dataset folder under its own name (atomically)."""
    for name, path in files.items():
        _atomic_copy(path, ctx.ddir / name)
        ctx.fetcher.done_with(path, keep=False)
        ctx.result.actions.append(f"placed {ctx.ddir / name}")


def _atomic_copy(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def _visible(paths: Iterable[Path]) -> list[Path]:
    return [p for p in paths if not p.name.startswith(".") and p.name not in _JUNK]


def _extract_as(archive: Path, dest: Path, expect: str) -> None:
    """Extract into ``dest``; the archive must yield folder ``expect`` there, or exactly one
    top-level folder, which then becomes ``expect`` (e.g. EuroSAT_RGB/ -> 2750/)."""
    written = extract_archive(archive, dest)
    for junk in (dest / j for j in _JUNK):
        if junk in written:
            shutil.rmtree(junk, ignore_errors=True)
    if any(p.name == expect for p in written):
        return
    dirs = [p for p in _visible(written) if p.is_dir()]
    if len(dirs) == 1 and (dirs[0] / expect).is_dir():  # one wrapper folder around the real one
        merge_move(dirs[0] / expect, dest / expect)
        shutil.rmtree(dirs[0])
        return
    if len(dirs) == 1:
        merge_move(dirs[0], dest / expect)
        return
    raise DatasetError(f"{archive}: expected it to contain a folder {expect}/, found "
                       f"{', '.join(p.name for p in written) or 'nothing'}. Is it the right archive? If it is, "
                       f"arrange {dest / expect} by hand, or delete the archive and run again.")


def _extract(ctx: StepContext, files: dict[str, Path], expect: str, into_root: bool = False) -> None:
    (archive,) = files.values()
    dest = ctx.root if into_root else ctx.ddir
    _extract_as(archive, dest, expect)
    ctx.fetcher.done_with(archive, ctx.keep_archives)
    ctx.result.actions.append(f"extracted {archive.name} -> {dest / expect}")


def _extract_contents(ctx: StepContext, files: dict[str, Path], subdir: str) -> None:
    """Only ``subdir`` of the archive, its contents straight into the dataset folder (FGVC's data/)."""
    (archive,) = files.values()
    extract_archive(archive, ctx.ddir, subdir=subdir)
    ctx.fetcher.done_with(archive, ctx.keep_archives)
    ctx.result.actions.append(f"extracted {archive.name}:{subdir}/ -> {ctx.ddir}")


def _extract_flat(ctx: StepContext, files: dict[str, Path], *wanted: str) -> None:
    """Put ``wanted`` files from the archive into the dataset folder, wherever they sit inside it
    (Partitions.zip may or may not have a top folder)."""
    (archive,) = files.values()
    staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=ctx.ddir))
    try:
        extract_archive(archive, staging)
        found = {p.name: p for p in staging.rglob("*") if p.is_file() and p.name in wanted}
        missing = [w for w in wanted if w not in found]
        if missing:
            raise DatasetError(f"{archive} has no {', '.join(missing)}; is it the right archive?")
        home = found[wanted[0]].parent
        for p in home.iterdir():  # the whole folder: Training_02.txt etc. come along
            if p.is_file() and not (ctx.ddir / p.name).exists():
                os.replace(p, ctx.ddir / p.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    ctx.fetcher.done_with(archive, ctx.keep_archives)
    ctx.result.actions.append(f"extracted {archive.name} -> {ctx.ddir}")


def _classnames(ctx: StepContext, files: dict[str, Path]) -> None:
    """ImageNet's classnames.txt: the variants copy imagenet/'s when present, else fetch CoOp's file."""
    dest = ctx.ddir / "classnames.txt"
    local = ctx.root / ctx.m.classnames_from / "classnames.txt" if ctx.m.classnames_from else None
    if local is not None and local.is_file():
        _atomic_copy(local, dest)
        ctx.result.actions.append(f"copied {local} -> {dest}")
        return
    try:
        path = ctx.fetcher.fetch(ctx.m.source("classnames.txt"))
    except DownloadError as e:
        # Offline: our reconstruction (CLIP names joined with the sorted wnids, see resources/PROVENANCE.md).
        from mmrl.data.resources import resource_path
        _atomic_copy(resource_path("imagenet_classnames_wnid.txt"), dest)
        ctx.result.actions.append(f"wrote mmrl's reconstruction of classnames.txt -> {dest}")
        ctx.result.notes.append(f"CoOp's classnames.txt could not be downloaded ({e}); {dest} is mmrl's "
                                f"reconstruction (CLIP's names by sorted wnid). Replace it with CoOp's file "
                                f"to be exact.")
        return
    _place(ctx, {"classnames.txt": path})


# ---------------------------------------------------------------------------------------------
# ImageNet: the train tar holds one tar per class; the val tar is flat and sorted by labels.

def _imagenet_train(ctx: StepContext, files: dict[str, Path]) -> None:
    from mmrl.data.resources import read_lines
    archive = files["ILSVRC2012_img_train.tar"]
    wnids = set(read_lines("imagenet_wnids.txt"))
    staging = ctx.ddir / "images" / ".train.partial"   # class folders done in an earlier run are kept
    staging.mkdir(parents=True, exist_ok=True)
    for leftover in staging.glob("*.tmp"):  # <wnid>.tmp/ folders and <wnid>.tar.tmp files
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    try:
        n = _unpack_class_tars(archive, wnids, staging)
    except (tarfile.TarError, EOFError) as e:
        raise DatasetError(f"{archive} is corrupt or incomplete ({type(e).__name__}: {e}); the class folders "
                           f"done so far are kept in {staging}. Delete the archive and download it again, then "
                           f"run again.") from None
    os.replace(staging, ctx.ddir / "images" / "train")
    ctx.fetcher.done_with(archive, ctx.keep_archives)
    ctx.result.actions.append(f"extracted {archive.name} -> {ctx.ddir / 'images' / 'train'} ({n} class tars)")


def _unpack_class_tars(archive: Path, wnids: set[str], staging: Path) -> int:
    """Each <wnid>.tar of the train archive into ``staging/<wnid>/``; returns how many were unpacked."""
    n = 0
    with tarfile.open(archive, "r:*") as outer:
        for member in outer:
            if member.isdir():
                continue
            name = os.path.basename(member.name)
            wnid, ext = os.path.splitext(name)
            if not member.isfile() or ext != ".tar" or wnid not in wnids:
                raise DatasetError(f"{archive}: unexpected member {member.name!r}; the ILSVRC2012 train archive "
                                   f"holds one <wnid>.tar per class. Is it the right file?")
            if (staging / wnid).is_dir():
                continue
            inner = staging / f"{wnid}.tar.tmp"
            with outer.extractfile(member) as src, open(inner, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            extract_archive(inner, staging / f"{wnid}.tmp")
            os.replace(staging / f"{wnid}.tmp", staging / wnid)  # a class folder appears only when complete
            inner.unlink()
            n += 1
        ensure_tar_ended(archive, outer)
    return n


_WNID = re.compile(r"^n\d{8}$")


def read_val_labels(path: str | os.PathLike) -> dict[str, str]:
    """Image file name -> wnid from '<image> <wnid>' lines, or Kaggle's LOC_val_solution.csv."""
    out: dict[str, str] = {}
    for n, line in numbered_lines(path):
        parts = line.split(",", 1) if "," in line else line.split(None, 1)
        if parts[0].strip() == "ImageId":  # the csv header
            continue
        wnid = parts[1].split()[0] if len(parts) == 2 and parts[1].split() else ""
        if not _WNID.match(wnid):
            raise DatasetError(f"{path}:{n}: expected '<image> <wnid>' (or LOC_val_solution.csv rows), got "
                               f"{line[:80]!r}")
        image = os.path.basename(parts[0].strip())
        if not os.path.splitext(image)[1]:
            image += ".JPEG"
        out[image] = wnid
    if not out:
        raise DatasetError(f"{path}: no labels found")
    return out


def _labels_from_devkit(devkit: Path, scratch: Path) -> dict[str, str]:
    """ILSVRC2012 devkit: data/ILSVRC2012_validation_ground_truth.txt holds ILSVRC ids (line i is
    image i), data/meta.mat maps ids to wnids."""
    import scipy.io
    extract_archive(devkit, scratch)
    found = {p.name: p for p in scratch.rglob("*") if p.name in ("meta.mat", "ILSVRC2012_validation_ground_truth.txt")}
    if len(found) != 2:
        raise DatasetError(f"{devkit}: no data/meta.mat and data/ILSVRC2012_validation_ground_truth.txt inside; "
                           f"is it ILSVRC2012_devkit_t12.tar.gz? Or pass --val-labels FILE.")
    from mmrl.data.resources import read_lines
    fix = "Use ILSVRC2012_devkit_t12.tar.gz (the ILSVRC2012 Task 1 & 2 devkit), or pass --val-labels FILE."
    mat = scipy.io.loadmat(found["meta.mat"], squeeze_me=True)
    if "synsets" not in mat:
        raise DatasetError(f"{devkit}: its meta.mat has no 'synsets'; it is not the ILSVRC2012 devkit. {fix}")
    id2wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in mat["synsets"]}
    wnids = set(read_lines("imagenet_wnids.txt"))
    out = {}
    truth = "ILSVRC2012_validation_ground_truth.txt"
    lines = found[truth].read_text(encoding="utf-8").rstrip().splitlines()
    for i, line in enumerate(lines, 1):  # line i is image i: a skipped line would shift every later label
        if not line.strip():
            raise DatasetError(f"{devkit}: line {i} of {truth} is blank; the file is damaged. {fix}")
        try:
            ilsvrc_id = int(line)
        except ValueError:
            raise DatasetError(f"{devkit}: line {i} of {truth} reads {line.strip()!r}, which is not an ILSVRC "
                               f"id; the devkit does not match the ILSVRC2012 val images. {fix}") from None
        wnid = id2wnid.get(ilsvrc_id)
        if wnid not in wnids:
            what = ("its meta.mat does not list" if wnid is None
                    else f"its meta.mat maps to {wnid}, not one of the 1000 ILSVRC2012 classes")
            raise DatasetError(f"{devkit}: line {i} of {truth} gives ILSVRC id {ilsvrc_id}, which {what}; the "
                               f"devkit does not match the ILSVRC2012 val images. {fix}")
        out[f"ILSVRC2012_val_{i:08d}.JPEG"] = wnid
    return out


def _imagenet_val(ctx: StepContext, files: dict[str, Path]) -> None:
    archive = files["ILSVRC2012_img_val.tar"]
    staging = ctx.ddir / "images" / ".val.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if ctx.options.get("val_labels"):
        labels = read_val_labels(ctx.options["val_labels"])
    else:
        labels = _labels_from_devkit(files["ILSVRC2012_devkit_t12.tar.gz"], staging / ".devkit")
    flat = staging / ".flat"
    extract_archive(archive, flat)
    images = sorted(p for p in flat.rglob("*") if p.is_file())
    unlabelled = [p.name for p in images if p.name not in labels]
    if unlabelled:
        shutil.rmtree(staging, ignore_errors=True)
        raise DatasetError(f"{len(unlabelled)} val image(s) have no label (e.g. {', '.join(unlabelled[:3])}); the "
                           f"labels file does not match {archive}.")
    for p in images:
        (staging / labels[p.name]).mkdir(exist_ok=True)
        os.replace(p, staging / labels[p.name] / p.name)
    shutil.rmtree(flat)
    shutil.rmtree(staging / ".devkit", ignore_errors=True)
    os.replace(staging, ctx.ddir / "images" / "val")
    ctx.fetcher.done_with(archive, ctx.keep_archives)
    ctx.result.actions.append(f"sorted {len(images)} val images of {archive.name} into "
                              f"{ctx.ddir / 'images' / 'val'}/<wnid>/")


# ---------------------------------------------------------------------------------------------
# UCF101 from the original videos: the middle frame of each video.

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".mov", ".webm")


def _video_reader() -> Callable[[Path], "object"]:
    """A function video path -> PIL image of its middle frame, from whichever decoder is installed."""
    try:
        import av  # PyAV (also what torchvision.io.read_video uses)
    except ImportError:
        av = None
    if av is not None:
        def read_av(path: Path):
            with av.open(str(path)) as container:
                frames = [f.to_image() for f in container.decode(video=0)]
            if not frames:
                raise DatasetError(f"{path}: no video frames could be decoded")
            return frames[len(frames) // 2]
        return read_av
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        def read_cv2(path: Path):
            from PIL import Image
            cap = cv2.VideoCapture(str(path))
            try:
                n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
                cap.set(cv2.CAP_PROP_POS_FRAMES, max(n // 2, 0))
                ok, frame = cap.read()
            finally:
                cap.release()
            if not ok:
                raise DatasetError(f"{path}: no video frames could be decoded")
            return Image.fromarray(frame[:, :, ::-1])
        return read_cv2
    raise DatasetError("no video decoder is installed, so middle frames cannot be taken from the videos: "
                       "`pip install av` (PyAV) or `pip install opencv-python-headless`, then run again; or drop "
                       "--videos to use CoOp's ready-made UCF-101-midframes.zip (Google Drive).")


def _midframes_from_videos(ctx: StepContext, files: dict[str, Path]) -> None:
    src = Path(os.path.expanduser(os.fspath(ctx.options["videos"])))
    reader = _video_reader()  # fail before any work when no decoder exists
    scratch = None
    if src.is_file():
        if src.suffix.lower() == ".rar":
            raise DatasetError(f"{src}: Python cannot read .rar archives. Extract it first (`unrar x {src.name}` or "
                               f"`7z x {src.name}`) and pass the extracted folder to --videos.")
        scratch = Path(tempfile.mkdtemp(prefix=_VIDEOS_PREFIX, dir=ctx.ddir))
        extract_archive(src, scratch)
        folder = scratch
    elif src.is_dir():
        folder = src
    else:
        raise DatasetError(f"--videos {src}: no such file or folder")
    out = ctx.ddir / ".UCF-101-midframes.partial"   # frames already written are kept on a rerun
    try:
        videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        if not videos:
            raise DatasetError(f"{src}: no video files ({', '.join(VIDEO_SUFFIXES)}) found")
        for v in videos:
            parts = v.stem.split("_")  # v_<Action>_gXX_cXX
            if len(parts) < 2 or not parts[1]:
                raise DatasetError(f"{v}: expected a UCF101 file name like v_ApplyEyeMakeup_g08_c01.avi")
            target = out / rename_action(parts[1]) / f"{v.stem}.jpg"
            if target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            frame = reader(v).convert("RGB")
            tmp = target.with_name(f".{target.name}.tmp")
            frame.save(tmp, format="JPEG", quality=95)
            os.replace(tmp, target)
        os.replace(out, ctx.ddir / "UCF-101-midframes")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    ctx.result.actions.append(f"wrote the middle frames of {len(videos)} videos -> {ctx.ddir / 'UCF-101-midframes'}")


# The actions a spec's prepare steps name.
ACTIONS: dict[str, Callable[..., None]] = {
    "place": _place, "extract": _extract, "extract_contents": _extract_contents, "extract_flat": _extract_flat,
    "classnames": _classnames, "imagenet_train": _imagenet_train, "imagenet_val": _imagenet_val,
    "midframes_from_videos": _midframes_from_videos,
}
