"""Is an image file readable: a header parse plus the JPEG/PNG end marker (fast), or a full
decode (deep); many files over a process pool."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat


_TAIL = 1024


def check_image(path: str, deep: bool = False) -> str | None:
    """None if the image looks fine, else why not."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            fmt = im.format
            if deep:
                im.load()
                return None
    except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        return f"{type(e).__name__}: {e}"
    marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}.get(fmt or "")
    if marker is None:
        return None
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL))
            tail = f.read()
    except OSError as e:
        return f"{type(e).__name__}: {e}"
    if marker in tail:
        return None
    # No end marker near the end: usually truncated, sometimes trailing junk. Decode to decide.
    try:
        with Image.open(path) as im:
            im.load()
    except Exception as e:
        return f"truncated or corrupt ({type(e).__name__}: {e})"
    return None


_CHUNK = 512
_PARALLEL_MIN = 2000   # below this a process pool costs more than it saves


def _check_chunk(paths: list[str], deep: bool) -> list[tuple[str, str]]:
    out = []
    for p in paths:
        why = check_image(p, deep)
        if why is not None:
            out.append((p, why))
    return out


def check_images(paths: list[str], *, deep: bool = False, workers: int | None = None,
                 progress: bool = False, desc: str = "") -> list[tuple[str, str]]:
    """(path, reason) for every unreadable image.

    Processes, not threads: PIL's header parsing is Python code holding the GIL (threads
    measured slower than one loop), so large folders are split over a process pool.
    """
    if not paths:
        return []
    workers = workers or os.cpu_count() or 1
    chunks = [paths[i:i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    bar = None
    if progress:
        import sys

        from tqdm import tqdm
        bar = tqdm(total=len(paths), desc=desc or "images", unit="img", file=sys.stderr, leave=False)
    bad: list[tuple[str, str]] = []
    try:
        if workers <= 1 or len(paths) < _PARALLEL_MIN:
            results = (_check_chunk(c, deep) for c in chunks)
            for chunk, res in zip(chunks, results):
                bad.extend(res)
                if bar is not None:
                    bar.update(len(chunk))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
                for chunk, res in zip(chunks, pool.map(_check_chunk, chunks, repeat(deep))):
                    bad.extend(res)
                    if bar is not None:
                        bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return bad
