"""File helpers: atomic writes (a reader never sees half a file), numbered text lines, dataset-relative
paths and the cache folder."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """A temp path beside ``dest`` to write to; moved onto ``dest`` only if the block succeeds,
    after its data is on disk (else a host crash can leave the rename without the data)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def killed_writes(folder: Path, name: str = "*") -> list[Path]:
    """The temp files of ``atomic_path`` writes (of file ``name``) in ``folder`` that a killed
    process left; only a caller that holds the lock every writer of those files takes may delete them."""
    return sorted(p for p in folder.glob(f".{name}.*.tmp") if p.is_file() and not p.is_symlink())


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> bool:
    """Write ``text`` to ``path`` via a temp file in the same folder.

    With ``overwrite=False`` an existing file is kept (first writer wins, so concurrent runs
    of the same few-shot draw never rewrite each other's file). Returns True if written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # fails atomically if the target already exists
        except FileExistsError:
            return False
        except OSError:  # filesystems without hard links: best effort
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def numbered_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number, stripped line) for each non-blank line of a UTF-8 text file: the number names
    the line in an error."""
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line:
                yield n, line


def relpath_in(path: str, folder: str) -> str:
    """``path`` relative to ``folder`` (plain prefix cut when it is inside, the common case)."""
    head = folder.rstrip("/") + "/"
    return path[len(head):] if path.startswith(head) else os.path.relpath(path, folder)


def cache_root() -> Path:
    """Where generated files live (demo dataset, few-shot subsets, test-image cache):
    ``$MMRL_CACHE``, else ``~/.cache/mmrl``."""
    env = os.environ.get("MMRL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mmrl"
