"""download_url / download_gdrive against a local HTTP server (127.0.0.1, random port).

The server honours Range requests (or not, on demand), and can cut a transfer short to
simulate a dropped connection. ``LocalServer`` is reused by tests/test_prepare.py.
"""
from __future__ import annotations

import hashlib
import http.server
import re
import socket
import threading
from pathlib import Path
from urllib.parse import unquote

import pytest

from mmrl.errors import ChecksumError, DownloadError
from mmrl.utils.download import download_gdrive, download_url, part_path, sha256_file


class _Handler(http.server.BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        srv = self.server
        name = unquote(self.path.split("?", 1)[0].lstrip("/"))
        rng = self.headers.get("Range")
        srv.requests.append((name, rng))
        path = srv.root / name
        if not name or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and srv.honour_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        if name in srv.content_types:
            self.send_header("Content-Type", srv.content_types[name])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = srv.cut_after.pop(name, None)
        if cut is not None:  # announce everything, send part, drop the connection
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: list[tuple[str, str | None]] = []
        self.honour_range = True
        self.cut_after: dict[str, int] = {}
        self.content_types: dict[str, str] = {}


class LocalServer:
    """Serves the files of ``root`` at ``self.url``; ``with LocalServer(dir) as s: ...``."""

    def __init__(self, root: Path) -> None:
        self.httpd = _Server(Path(root))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        self.httpd.url = self.url
        return self.httpd

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    with LocalServer(root) as srv:
        yield srv


def _blob(n: int = 300_000) -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(n))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_sha256_file(tmp_path):
    p = tmp_path / "x.bin"
    p.write_bytes(b"abc")
    assert sha256_file(p) == _sha(b"abc")


def test_download_with_checksum_and_atomic_rename(served, tmp_path):
    data = _blob()
    (served.root / "a.bin").write_bytes(data)
    dest = tmp_path / "out" / "a.bin"
    got = download_url(f"{served.url}/a.bin", dest, sha256=_sha(data), progress=False)
    assert got == dest and dest.read_bytes() == data
    assert not part_path(dest).exists()
    # Present and correct: no second request.
    n = len(served.requests)
    download_url(f"{served.url}/a.bin", dest, sha256=_sha(data), progress=False)
    assert len(served.requests) == n


def test_interrupted_download_keeps_part_and_resumes_with_range(served, tmp_path):
    data = _blob()
    (served.root / "a.bin").write_bytes(data)
    served.cut_after["a.bin"] = 100_000
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError) as e:
        download_url(f"{served.url}/a.bin", dest, progress=False, retries=0)
    msg = str(e.value)
    assert "interrupted" in msg and str(part_path(dest)) in msg and "resume" in msg
    assert part_path(dest).stat().st_size == 100_000 and not dest.exists()
    download_url(f"{served.url}/a.bin", dest, sha256=_sha(data), progress=False)
    assert dest.read_bytes() == data
    assert served.requests[-1] == ("a.bin", "bytes=100000-")


def test_interruption_is_resumed_within_one_call(served, tmp_path):
    data = _blob()
    (served.root / "a.bin").write_bytes(data)
    served.cut_after["a.bin"] = 50_000
    dest = tmp_path / "a.bin"
    download_url(f"{served.url}/a.bin", dest, sha256=_sha(data), progress=False, retries=2)
    assert dest.read_bytes() == data
    assert [r for _, r in served.requests] == [None, "bytes=50000-"]


def test_server_without_range_support_restarts_from_zero(served, tmp_path):
    data = _blob()
    (served.root / "a.bin").write_bytes(data)
    served.honour_range = False
    dest = tmp_path / "a.bin"
    part_path(dest).write_bytes(b"stale bytes from another attempt")
    download_url(f"{served.url}/a.bin", dest, sha256=_sha(data), progress=False)
    assert dest.read_bytes() == data


def test_complete_part_answered_416_is_finished(served, tmp_path):
    data = _blob(1000)
    (served.root / "a.bin").write_bytes(data)
    dest = tmp_path / "a.bin"
    part_path(dest).write_bytes(data)
    download_url(f"{served.url}/a.bin", dest, sha256=_sha(data), progress=False)
    assert dest.read_bytes() == data and not part_path(dest).exists()


def test_checksum_mismatch_names_file_and_hashes_and_drops_part(served, tmp_path):
    data = _blob(5000)
    (served.root / "a.bin").write_bytes(data)
    dest = tmp_path / "a.bin"
    wrong = "0" * 64
    with pytest.raises(ChecksumError) as e:
        download_url(f"{served.url}/a.bin", dest, sha256=wrong, progress=False)
    msg = str(e.value)
    assert "a.bin" in msg and wrong in msg and _sha(data) in msg
    assert not dest.exists() and not part_path(dest).exists()


def test_existing_file_with_wrong_checksum_is_kept_and_reported(served, tmp_path):
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"not it")
    with pytest.raises(ChecksumError, match="delete it"):
        download_url(f"{served.url}/a.bin", dest, sha256="1" * 64, progress=False)
    assert dest.read_bytes() == b"not it"


def test_http_404_is_reported_with_status(served, tmp_path):
    with pytest.raises(DownloadError) as e:
        download_url(f"{served.url}/missing.bin", tmp_path / "m.bin", progress=False)
    assert e.value.http_status == 404 and "HTTP 404" in str(e.value)


def test_unreachable_url_names_url_and_destination(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    url = f"http://127.0.0.1:{port}/file.tar.gz"
    dest = tmp_path / "dl" / "file.tar.gz"
    with pytest.raises(DownloadError) as e:
        download_url(url, dest, progress=False, timeout=5)
    msg = str(e.value)
    assert url in msg and f"put it at {dest}" in msg


def test_progress_bar_goes_to_stderr(served, tmp_path, capsys):
    (served.root / "a.bin").write_bytes(_blob(2000))
    download_url(f"{served.url}/a.bin", tmp_path / "a.bin", progress=True)
    out = capsys.readouterr()
    assert out.out == "" and "a.bin" in out.err


def test_download_gdrive_uses_gdown_verbosely_and_checks_hash(tmp_path, monkeypatch):
    import gdown
    calls = []

    def fake_download(*, id, output, quiet, resume, **kw):
        calls.append((id, quiet))
        Path(output).write_bytes(b"drive file")
        return output

    monkeypatch.setattr(gdown, "download", fake_download)
    dest = tmp_path / "split.json"
    assert download_gdrive("abc123", dest, sha256=_sha(b"drive file")) == dest
    assert dest.read_bytes() == b"drive file" and calls == [("abc123", False)]
    with pytest.raises(ChecksumError):
        download_gdrive("abc123", tmp_path / "other.json", sha256="2" * 64)


def test_download_gdrive_failure_says_where_to_put_the_file(tmp_path, monkeypatch):
    import gdown

    def failing(**kw):
        raise RuntimeError("Cannot retrieve the public link of the file")

    monkeypatch.setattr(gdown, "download", failing)
    dest = tmp_path / "split.json"
    with pytest.raises(DownloadError) as e:
        download_gdrive("abc123", dest)
    msg = str(e.value)
    assert "https://drive.google.com/file/d/abc123/view" in msg and str(dest) in msg


def test_download_gdrive_does_not_take_a_stale_http_part_as_finished(served, tmp_path, monkeypatch):
    # An interrupted mirror download leaves <dest>.part; gdown (resume=True) skips any existing
    # output file, so that truncated .part must not be the file gdown is asked to produce.
    import gdown
    whole = _blob(200_000)
    (served.root / "split.json").write_bytes(whole)
    served.cut_after["split.json"] = 50_000
    dest = tmp_path / "split.json"
    with pytest.raises(DownloadError):
        download_url(f"{served.url}/split.json", dest, retries=0, progress=False)
    assert part_path(dest).stat().st_size == 50_000

    def real_gdown_skip(*, id, output, quiet, resume, **kw):
        if resume and Path(output).is_file():
            return output  # gdown 5+: "Skipping already downloaded file"
        Path(output).write_bytes(whole)
        return output

    monkeypatch.setattr(gdown, "download", real_gdown_skip)
    assert download_gdrive("abc123", dest) == dest
    assert dest.read_bytes() == whole


def test_an_html_page_in_place_of_the_file_names_the_dead_link(served, tmp_path):
    """A moved host often answers 200 with an HTML page: that is no download of the archive."""
    (served.root / "data.tar").write_bytes(b"<!DOCTYPE html><html><body>This page has moved</body></html>")
    served.content_types["data.tar"] = "text/html; charset=utf-8"
    dest = tmp_path / "dl" / "data.tar"
    with pytest.raises(DownloadError, match=r"data.tar \(the server answered with a web page") as e:
        download_url(f"{served.url}/data.tar", dest)
    assert str(dest) in str(e.value) and not dest.exists() and not part_path(dest).exists()
    (served.root / "page.html").write_bytes(b"<html></html>")  # an HTML file asked for is a file
    served.content_types["page.html"] = "text/html"
    assert download_url(f"{served.url}/page.html", tmp_path / "dl" / "page.html").read_bytes() == b"<html></html>"
