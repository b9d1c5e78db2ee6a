"""Safe extraction of tar (.tar, .tar.gz, .tgz, ...) and zip archives.

Every member is checked before anything is written: absolute paths, ``..`` components,
links that resolve outside the target and device files are refused, naming the member.
Extraction goes to a temporary folder next to the target and is moved into place only
when it completed, so a failure leaves the target as it was.
"""
from __future__ import annotations

import gzip
import logging
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from mmrl.errors import ExtractError

log = logging.getLogger("mmrl.extract")

# Prefix of the temporary folder extract_archive makes in the target folder.
TEMP_PREFIX = ".mmrl-extract-"


def archive_kind(path: str | os.PathLike) -> str:
    """'zip' or 'tar' by content (the suffix may lie); error if neither."""
    path = Path(path)
    if not path.is_file():
        raise ExtractError(f"archive {path} not found")
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise ExtractError(f"{path} is not a zip or tar archive (corrupt or incomplete download?). "
                       f"Delete it and download it again.")


def _normalise(archive: Path, name: str) -> str:
    """The member's path as a clean relative POSIX path, or an error naming it."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise ExtractError(f"{archive}: refusing member {name!r} with an absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ExtractError(f"{archive}: refusing member {name!r}: '..' would write outside the target folder")
    return "/".join(parts)


def _link_inside(archive: Path, member: str, target: str, *, hard: bool) -> None:
    """A link target (relative to the member's folder, or to the archive root for hard links) must stay inside."""
    t = target.replace("\\", "/")
    if t.startswith("/") or (len(t) > 1 and t[1] == ":"):
        raise ExtractError(f"{archive}: refusing link {member!r} -> {target!r}: absolute link target")
    base = "" if hard else posixpath.dirname(member)
    resolved = posixpath.normpath(posixpath.join(base, t))
    if resolved == ".." or resolved.startswith("../"):
        raise ExtractError(f"{archive}: refusing link {member!r} -> {target!r}: it points outside the target folder")


def _under(name: str, subdir: str | None) -> str | None:
    """The member's path relative to ``subdir`` (None when outside it)."""
    if not subdir:
        return name
    if name == subdir:
        return ""
    return name[len(subdir) + 1:] if name.startswith(subdir + "/") else None


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_tar_member(archive: Path, m: tarfile.TarInfo) -> str:
    name = _normalise(archive, m.name)
    if m.issym():
        _link_inside(archive, name, m.linkname, hard=False)
    elif m.islnk():
        _link_inside(archive, name, m.linkname, hard=True)
    elif not (m.isfile() or m.isdir()):
        raise ExtractError(f"{archive}: refusing member {m.name!r}: device, FIFO or other special file")
    return name


def _extract_tar(archive: Path, tf: tarfile.TarFile, into: Path, subdir: str | None,
                 wanted: set[str] | None) -> None:
    # One pass over the stream (a .tar.gz is decompressed once); a refusal mid-way only
    # discards the temporary folder.
    for m in tf:
        name = _check_tar_member(archive, m)
        m.name = name  # normalised for every member, so hard-link lookups by name still match
        if m.islnk():
            m.linkname = _normalise(archive, m.linkname)
        rel = _under(name, subdir)
        if rel is None or (wanted is not None and rel.split("/")[0] not in wanted):
            continue
        if hasattr(tarfile, "data_filter"):
            # The stdlib filter is a second line of defence (links resolved on disk, odd modes dropped).
            tf.extract(m, into, set_attrs=not m.isdir(), filter="data")
        else:  # pragma: no cover - Python without PEP 706
            tf.extract(m, into, set_attrs=not m.isdir())
    ensure_tar_ended(archive, tf)


def ensure_tar_ended(archive: Path, tf: tarfile.TarFile) -> None:
    """Call after iterating ``tf`` to its end: tarfile stops quietly when the data ends right
    after a member, where a whole archive has its end-of-archive blocks (which the last header
    read consumed; a cut archive gave it nothing to read)."""
    if tf.offset and tf.fileobj.tell() == tf.offset:
        raise ExtractError(f"{archive} is corrupt or incomplete: it ends after member {tf.members[-1].name!r} "
                           f"without the end-of-archive blocks, so it was cut short. Delete it and download it "
                           f"again.")


def _check_zip(archive: Path, zf: zipfile.ZipFile, subdir: str | None) -> list[zipfile.ZipInfo]:
    chosen = []
    for info in zf.infolist():
        name = _normalise(archive, info.filename)
        if _zip_is_symlink(info):
            _link_inside(archive, name, zf.read(info).decode("utf-8", "replace"), hard=False)
        if _under(name, subdir) is not None:
            chosen.append(info)
    return chosen


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _extract_zip(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], into: Path) -> None:
    archive = Path(zf.filename or "archive")
    real_root = os.path.realpath(into)
    for info in members:
        name = _normalise(archive, info.filename)
        target = into / name
        # Resolve links already written: a lexically clean path can still escape through them.
        if not _inside(os.path.realpath(target.parent), real_root):
            raise ExtractError(f"{archive}: refusing member {info.filename!r}: it would be written outside the "
                               f"target folder through a symlink")
        if _zip_is_symlink(info):
            link = zf.read(info).decode("utf-8")
            if not _inside(os.path.realpath(os.path.join(os.path.realpath(target.parent), link)), real_root):
                raise ExtractError(f"{archive}: refusing link {info.filename!r} -> {link!r}: it points outside "
                                   f"the target folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(link, target)
        elif info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)


def merge_move(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; folders that exist on both sides are merged, files are replaced."""
    if dst.is_dir() and not dst.is_symlink() and src.is_dir() and not src.is_symlink():
        for child in list(src.iterdir()):
            merge_move(child, dst / child.name)
        src.rmdir()
        return
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    os.replace(src, dst)


def extract_archive(archive: str | os.PathLike, dest: str | os.PathLike, *, subdir: str | None = None,
                    only: Iterable[str] | None = None) -> list[Path]:
    """Extract ``archive`` into folder ``dest`` and return the top-level paths written there.

    ``subdir``: extract only the members under this archive folder (e.g.
    ``"fgvc-aircraft-2013b/data"``) and put its *contents* in ``dest``.
    ``only``: further restrict to these top-level names (after ``subdir`` is stripped).
    Existing folders in ``dest`` are merged with the archive's, existing files replaced.
    """
    archive, dest = Path(archive), Path(dest)
    kind = archive_kind(archive)
    sub = _normalise(archive, subdir) if subdir else None
    wanted = set(only) if only is not None else None
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    # Same filesystem as dest, so the final moves are renames.
    tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=dest))
    ok = False
    try:
        if kind == "tar":
            with tarfile.open(archive, "r:*") as tf:
                _extract_tar(archive, tf, tmp, sub, wanted)
        else:
            with zipfile.ZipFile(archive) as zf:
                members = _check_zip(archive, zf, sub)
                if wanted is not None:
                    members = [i for i in members if (_under(_normalise(archive, i.filename), sub) or "")
                               .split("/")[0] in wanted]
                _extract_zip(zf, members, tmp)
        root = tmp / sub if sub else tmp
        if sub and not root.is_dir():
            raise ExtractError(f"{archive} has no folder {subdir!r}; is it the right archive?")
        written = []
        for child in sorted(root.iterdir()):
            merge_move(child, dest / child.name)
            written.append(dest / child.name)
        ok = True
        return written
    except tarfile.FilterError as e:
        # The stdlib filter caught an escape through links that a lexical check cannot see.
        member = e.tarinfo.name if getattr(e, "tarinfo", None) is not None else "?"
        raise ExtractError(f"{archive}: refusing member {member!r}: {e}. Nothing was written to {dest}.") from None
    except _CORRUPT as e:
        raise ExtractError(f"{archive} is corrupt or incomplete ({type(e).__name__}: {e}). Nothing was written "
                           f"to {dest}; delete the archive and download it again.") from None
    except OSError as e:
        raise ExtractError(f"extracting {archive} into {dest} failed: {e}. Nothing was written to {dest}; "
                           f"check free disk space and permissions, then run again.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not ok:
            try:
                dest.rmdir()  # only if still empty
            except OSError:
                pass


# Damaged or truncated streams, as the stdlib reports them.
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)
