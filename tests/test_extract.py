"""Safe extraction: good archives land in place; hostile ones are refused, leaving nothing behind."""
from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from mmrl.errors import ExtractError
from mmrl.utils.extract import extract_archive


def _tar(path: Path, entries: list[tuple], mode: str = "w:gz") -> Path:
    """entries: (name, bytes) files, (name, None) dirs, (name, "sym", target), (name, "hard", target)."""
    with tarfile.open(path, mode) as tf:
        for e in entries:
            info = tarfile.TarInfo(e[0])
            if len(e) == 3:
                info.type = tarfile.SYMTYPE if e[1] == "sym" else tarfile.LNKTYPE
                info.linkname = e[2]
                tf.addfile(info)
            elif e[1] is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                tf.addfile(info)
            else:
                info.size = len(e[1])
                tf.addfile(info, io.BytesIO(e[1]))
    return path


def _zip(path: Path, entries: list[tuple]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for e in entries:
            if len(e) == 3:  # symlink: mode in the high bits of external_attr, target as the data
                info = zipfile.ZipInfo(e[0])
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zf.writestr(info, e[2])
            else:
                zf.writestr(e[0], e[1])
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


GOOD = [("data/", None), ("data/a.txt", b"A"), ("data/sub/b.txt", b"B"), ("top.txt", b"T")]


def test_tar_gz_extracts_and_returns_top_level(tmp_path):
    arc = _tar(tmp_path / "good.tar.gz", GOOD)
    dest = tmp_path / "out"
    written = extract_archive(arc, dest)
    assert sorted(p.name for p in written) == ["data", "top.txt"]
    assert (dest / "data/sub/b.txt").read_bytes() == b"B"
    assert not list(dest.glob(".mmrl-extract-*"))


def test_zip_extracts(tmp_path):
    arc = _zip(tmp_path / "good.zip", [("2750/Forest/Forest_1.jpg", b"x"), ("2750/River/River_1.jpg", b"y")])
    extract_archive(arc, tmp_path / "out")
    assert (tmp_path / "out/2750/River/River_1.jpg").read_bytes() == b"y"


def test_suffix_does_not_matter(tmp_path):
    arc = _tar(tmp_path / "archive.bin", GOOD, mode="w")
    extract_archive(arc, tmp_path / "out")
    assert (tmp_path / "out/top.txt").exists()


def test_subdir_keeps_only_that_folder_contents(tmp_path):
    arc = _tar(tmp_path / "fgvc.tar.gz", [("fgvc-aircraft-2013b/README.html", b"r"),
                                          ("fgvc-aircraft-2013b/data/variants.txt", b"707-320\n"),
                                          ("fgvc-aircraft-2013b/data/images/1.jpg", b"i")])
    dest = tmp_path / "fgvc_aircraft"
    extract_archive(arc, dest, subdir="fgvc-aircraft-2013b/data")
    assert _listing(dest) == ["images", "images/1.jpg", "variants.txt"]


def test_merges_into_existing_folder(tmp_path):
    dest = tmp_path / "dtd"
    dest.mkdir()
    (dest / "split.json").write_text("{}")
    extract_archive(_tar(tmp_path / "a.tar.gz", [("images/x.jpg", b"x")]), dest)
    assert _listing(dest) == ["images", "images/x.jpg", "split.json"]


def test_symlink_inside_the_target_is_allowed(tmp_path):
    arc = _tar(tmp_path / "a.tar.gz", [("d/real.txt", b"R"), ("d/link.txt", "sym", "real.txt")])
    extract_archive(arc, tmp_path / "out")
    assert (tmp_path / "out/d/link.txt").is_symlink() and (tmp_path / "out/d/link.txt").read_bytes() == b"R"


@pytest.mark.parametrize("entries, member", [
    ([("ok.txt", b"1"), ("../evil.txt", b"x")], "../evil.txt"),
    ([("a/../../evil.txt", b"x")], "a/../../evil.txt"),
    ([("/etc/evil.txt", b"x")], "/etc/evil.txt"),
    ([("ok.txt", b"1"), ("link", "sym", "../../outside")], "link"),
    ([("link", "sym", "/etc/passwd")], "link"),
    ([("d/link", "sym", "../../x")], "d/link"),
    ([("hard", "hard", "../outside.txt")], "hard"),
])
def test_tar_refusals_name_the_member_and_leave_nothing(tmp_path, entries, member):
    arc = _tar(tmp_path / "evil.tar.gz", entries)
    dest = tmp_path / "target"
    with pytest.raises(ExtractError) as e:
        extract_archive(arc, dest)
    assert repr(member) in str(e.value) and str(arc) in str(e.value)
    assert not dest.exists()  # created for the extraction, removed again
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "outside.txt").exists()


def test_refusal_keeps_existing_target_untouched(tmp_path):
    dest = tmp_path / "target"
    dest.mkdir()
    (dest / "keep.txt").write_text("k")
    arc = _tar(tmp_path / "evil.tar.gz", [("new.txt", b"n"), ("../evil.txt", b"x")])
    with pytest.raises(ExtractError):
        extract_archive(arc, dest)
    assert _listing(dest) == ["keep.txt"]


def test_escape_through_a_chain_of_symlinks_is_refused(tmp_path):
    # Each link is lexically inside; together they point outside (only visible on disk).
    arc = _tar(tmp_path / "chain.tar", [("sub/", None), ("sub/up", "sym", ".."), ("a", "sym", "sub/up/.."),
                                        ("a/evil.txt", b"x")], mode="w")
    dest = tmp_path / "t" / "target"
    dest.parent.mkdir()
    with pytest.raises(ExtractError, match="refusing"):
        extract_archive(arc, dest)
    assert not (tmp_path / "t" / "evil.txt").exists()


def test_special_files_are_refused(tmp_path):
    arc = tmp_path / "fifo.tar"
    with tarfile.open(arc, "w") as tf:
        info = tarfile.TarInfo("pipe")
        info.type = tarfile.FIFOTYPE
        tf.addfile(info)
    with pytest.raises(ExtractError, match="'pipe'"):
        extract_archive(arc, tmp_path / "out")


@pytest.mark.parametrize("entries, member", [
    ([("ok.txt", b"1"), ("../evil.txt", b"x")], "../evil.txt"),
    ([("/abs.txt", b"x")], "/abs.txt"),
    ([("link", "sym", "../../outside")], "link"),
    ([("link", "sym", "/etc")], "link"),
])
def test_zip_refusals(tmp_path, entries, member):
    arc = _zip(tmp_path / "evil.zip", entries)
    dest = tmp_path / "target"
    with pytest.raises(ExtractError) as e:
        extract_archive(arc, dest)
    assert repr(member) in str(e.value)
    assert not dest.exists()


def test_zip_write_through_symlink_chain_is_refused(tmp_path):
    arc = _zip(tmp_path / "chain.zip", [("sub/up", "sym", ".."), ("a", "sym", "sub/up/.."), ("a/evil.txt", b"x")])
    with pytest.raises(ExtractError, match="refusing"):
        extract_archive(arc, tmp_path / "t" / "target")
    assert not (tmp_path / "t" / "evil.txt").exists()


def test_truncated_archive_is_reported_as_corrupt(tmp_path):
    good = _tar(tmp_path / "good.tar.gz", [("big.bin", bytes(range(256)) * 4000)])
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    dest = tmp_path / "out"
    with pytest.raises(ExtractError, match="corrupt or incomplete"):
        extract_archive(bad, dest)
    assert not dest.exists()


def test_not_an_archive(tmp_path):
    p = tmp_path / "x.tar.gz"
    p.write_text("<html>404</html>")
    with pytest.raises(ExtractError, match="not a zip or tar"):
        extract_archive(p, tmp_path / "out")


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_tar_cut_at_a_member_boundary_is_reported_as_incomplete(tmp_path, mode):
    # A tar cut right after a member's data has no end-of-archive blocks; tarfile then stops
    # quietly, so without a check a part of the archive would be extracted as if it were all.
    whole = tmp_path / "whole.tar"
    _tar(whole, [("imgs/a.jpg", b"A" * 1000), ("imgs/b.jpg", b"B" * 1000)], mode="w")
    cut = whole.read_bytes()[:512 + 1024]  # header + padded data of the first member
    bad = tmp_path / ("cut.tar.gz" if mode == "w:gz" else "cut.tar")
    if mode == "w:gz":
        import gzip
        bad.write_bytes(gzip.compress(cut))
    else:
        bad.write_bytes(cut)
    dest = tmp_path / "out"
    with pytest.raises(ExtractError, match="corrupt or incomplete") as e:
        extract_archive(bad, dest)
    assert str(bad) in str(e.value)
    assert not dest.exists()
