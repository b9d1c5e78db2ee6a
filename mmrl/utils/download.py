"""Downloads that survive bad networks: resume, checksum, atomic rename.

``download_url`` writes to ``<dest>.part`` and renames it into place only once the whole
file is there (and its SHA256 matches, when one is given), so ``dest`` is never half a
file. An interrupted transfer keeps the ``.part`` and the next call continues it with an
HTTP Range request. Errors say which URL failed and where to put the file by hand.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from mmrl.errors import ChecksumError, DownloadError

log = logging.getLogger("mmrl.download")

CHUNK = 1 << 20
USER_AGENT = "mmrl-download/1.0 (+python-urllib)"


class _Interrupted(Exception):
    """The connection ended before the announced length: worth resuming."""


def sha256_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def part_path(dest: str | os.PathLike) -> Path:
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def _check_existing(dest: Path, sha256: str | None) -> bool:
    """True when ``dest`` is already the wanted file; a wrong existing file is an error, not overwritten."""
    if not dest.is_file():
        return False
    if sha256 is None:
        return True
    actual = sha256_file(dest)
    if actual.lower() == sha256.lower():
        return True
    raise ChecksumError(f"{dest} exists but its SHA256 is {actual}, expected {sha256}. The file is corrupt or a "
                        f"different version: delete it and run again to re-download.")


def _verify_part(part: Path, dest: Path, sha256: str | None, source: str) -> None:
    if sha256 is None:
        return
    actual = sha256_file(part)
    if actual.lower() != sha256.lower():
        # The transfer completed, so resuming would only reproduce the bad bytes: start over next time.
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{dest.name} from {source}: SHA256 mismatch (expected {sha256}, got {actual}). "
                            f"The partial file {part} was deleted; run again to re-download, or download it by "
                            f"hand and place it at {dest}.")


def _unreachable(url: str, dest: Path, why: str, http_status: int | None = None) -> DownloadError:
    return DownloadError(f"could not download {url} ({why}). If this machine is offline or the host has moved, "
                         f"fetch the file elsewhere and put it at {dest} (then run again).", http_status=http_status)


def _part_for(dest: Path, sha256: str | None) -> Path | None:
    """The ``.part`` file to download ``dest`` into, or None when ``dest`` is already there (and checked)."""
    if _check_existing(dest, sha256):
        log.info("%s already present", dest)
        return None
    dest.parent.mkdir(parents=True, exist_ok=True)
    return part_path(dest)


def download_url(url: str, dest: str | os.PathLike, *, sha256: str | None = None, resume: bool = True,
                 progress: bool = True, retries: int = 3, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` (created parents included) and return ``dest``.

    An existing ``dest`` is kept (and checked against ``sha256``). ``retries`` is how many times
    an interrupted transfer is resumed within this call before giving up with the ``.part``
    kept for a later call.
    """
    dest = Path(dest)
    part = _part_for(dest, sha256)
    if part is None:
        return dest
    if not resume:
        part.unlink(missing_ok=True)
    attempt = 0
    while True:
        try:
            _fetch_into(url, part, dest, progress=progress, timeout=timeout)
            break
        except _Interrupted as e:
            attempt += 1
            have = part.stat().st_size if part.exists() else 0
            if attempt > retries or not resume:
                raise DownloadError(f"download of {url} was interrupted ({e}); {have} bytes are kept in {part}. "
                                    f"Run again to resume, or download the file by hand and place it at "
                                    f"{dest}.") from None
            log.warning("download of %s interrupted at %d bytes (%s); resuming (try %d of %d)",
                        url, have, e, attempt, retries)
            time.sleep(min(0.5 * attempt, 5.0))
    _verify_part(part, dest, sha256, url)
    os.replace(part, dest)
    log.info("downloaded %s -> %s", url, dest)
    return dest


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _total_from_content_range(value: str | None) -> int | None:
    # "bytes 100-199/200" or "bytes */200"
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _fetch_into(url: str, part: Path, dest: Path, *, progress: bool, timeout: float) -> None:
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            total = _total_from_content_range(e.headers.get("Content-Range"))
            if total == offset:
                return  # the .part already holds the whole file
            part.unlink(missing_ok=True)  # the .part is longer than the file: it is not this file
            raise _Interrupted(f"server refused resuming at byte {offset}; starting over") from None
        raise _unreachable(url, dest, f"the server answered HTTP {e.code} {e.reason}", e.code) from None
    except urllib.error.URLError as e:
        raise _unreachable(url, dest, str(e.reason)) from None
    except (socket.timeout, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as e:
        raise _unreachable(url, dest, f"{type(e).__name__}: {e}") from None

    with resp:
        if _web_page_for(resp, dest):
            raise _unreachable(url, dest, "the server answered with a web page, not the file: the link is dead "
                                          "or has moved")
        status = getattr(resp, "status", 200) or 200
        if offset and status != 206:
            offset = 0  # the server ignored the Range header: restart from byte 0
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        total = (offset + expected) if expected is not None else None
        got = 0
        bar = _progress_bar(dest.name, total, offset, progress)
        try:
            with open(part, "ab" if offset else "wb") as f:
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (http.client.HTTPException, OSError) as e:  # dropped, reset, timed out
                        raise _Interrupted(f"{type(e).__name__}: {e}") from None
                    if not block:
                        break
                    try:
                        f.write(block)
                    except OSError as e:
                        raise DownloadError(f"writing {part} failed ({e}); check free disk space and "
                                            f"permissions, then run again to resume {url}.") from None
                    got += len(block)
                    bar.update(len(block))
        finally:
            bar.close()
    if expected is not None and got < expected:
        raise _Interrupted(f"got {got} of {expected} bytes")


def _web_page_for(resp, dest: Path) -> bool:
    """An HTML answer for a file that is not a web page: what a moved or dead host serves."""
    kind = (resp.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    return kind in ("text/html", "application/xhtml+xml") and dest.suffix.lower() not in (".html", ".htm")


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(name: str, total: int | None, initial: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, file=sys.stderr, leave=False, dynamic_ncols=True)


def gdrive_view_url(file_id: str) -> str:
    return f"https://drive.google.com/file/d/{file_id}/view?usp=sharing"


def download_gdrive(file_id: str, dest: str | os.PathLike, *, sha256: str | None = None) -> Path:
    """Download a public Google Drive file with gdown (which handles the large-file confirmation)."""
    dest = Path(dest)
    http_part = _part_for(dest, sha256)
    if http_part is None:
        return dest
    # gdown skips an existing output file as finished, so it must not be handed a .part that an
    # interrupted download_url left (a truncated file); gdown writes its output only when complete.
    part = dest.with_name(dest.name + ".gdown")
    manual = (f"Open {gdrive_view_url(file_id)} in a browser, download the file and put it at {dest} "
              f"(then run again).")
    try:
        import gdown
    except ImportError:
        raise DownloadError(f"the gdown package is needed to download Google Drive file {file_id} "
                            f"(pip install gdown). {manual}") from None
    try:
        out = gdown.download(id=file_id, output=str(part), quiet=False, resume=True)
    except Exception as e:  # gdown raises its own types (FileURLRetrievalError, requests errors, ...)
        raise DownloadError(f"could not download Google Drive file {file_id} ({type(e).__name__}: {e}). "
                            f"{manual}") from None
    if not out or not part.is_file():
        raise DownloadError(f"could not download Google Drive file {file_id} (gdown returned nothing; the file "
                            f"may be private, over its download quota or deleted). {manual}")
    _verify_part(part, dest, sha256, gdrive_view_url(file_id))
    os.replace(part, dest)
    http_part.unlink(missing_ok=True)  # nothing left to resume
    return dest
