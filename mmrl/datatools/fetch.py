"""Finding a dataset's source file: the download folder, the mirror, then the official source
(the order :mod:`mmrl.datatools.prepare` describes)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from mmrl.datasets.spec import Source
from mmrl.errors import DatasetError, DownloadError
from mmrl.utils.download import download_gdrive, download_url

log = logging.getLogger("mmrl.prepare")

MIRROR_ENV = "MMRL_DATA_MIRROR"


class NotFetchable(Exception):
    """A source that cannot be fetched automatically and was not found locally."""

    def __init__(self, source: Source) -> None:
        super().__init__(source.file)
        self.source = source


def _is_url(s: str) -> bool:
    return "://" in s and not s.startswith("file://")


class Fetcher:
    """Resolves a spec source to a local file (see the module docstring for the order)."""

    def __init__(self, download_dir: Path, mirror: str | None, progress: bool) -> None:
        self.download_dir = download_dir
        self.progress = progress
        mirror = mirror or None
        if mirror and mirror.startswith("file://"):
            mirror = mirror[len("file://"):]
        self.mirror_url = mirror.rstrip("/") if mirror and _is_url(mirror) else None
        self.mirror_dir = Path(os.path.expanduser(mirror)) if mirror and not self.mirror_url else None
        if self.mirror_dir is not None and not self.mirror_dir.is_dir():
            raise DatasetError(f"mirror folder {self.mirror_dir} does not exist (from --from or ${MIRROR_ENV}); "
                               f"give a folder holding the source files or a base URL.")
        self.downloaded: set[Path] = set()  # files this run fetched into download_dir (deletable)

    def local(self, source: Source) -> Path | None:
        for folder in (self.download_dir, self.mirror_dir):
            if folder is not None and (folder / source.file).is_file():
                return folder / source.file
        return None

    def fetch(self, source: Source) -> Path:
        found = self.local(source)
        if found is not None:
            log.info("using %s", found)
            return found
        dest = self.download_dir / source.file
        if self.mirror_url:
            url = f"{self.mirror_url}/{source.file}"
            try:
                return self._got(download_url(url, dest, sha256=source.sha256, progress=self.progress))
            except DownloadError as e:
                if e.http_status != 404:
                    raise
                log.info("%s is not on the mirror; trying the official source", source.file)
        if not source.automatic:
            raise NotFetchable(source)
        if source.gdrive_id:
            return self._got(download_gdrive(source.gdrive_id, dest, sha256=source.sha256))
        return self._got(download_url(source.url, dest, sha256=source.sha256, progress=self.progress))

    def _got(self, path: Path) -> Path:
        self.downloaded.add(path)
        return path

    def done_with(self, path: Path, keep: bool) -> None:
        """Delete an archive this run downloaded, once its content is in place."""
        if not keep and path in self.downloaded:
            path.unlink(missing_ok=True)
