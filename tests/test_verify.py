"""`mmrl data verify` on synthetic copies of the real layouts (mmrl.datatools.synthetic)."""
from __future__ import annotations

import json
import shutil

import pytest

from mmrl.cli import main
from mmrl.datasets.registry import get_spec
from mmrl.datasets.specs import SPECS
from mmrl.datatools.synthetic import write_synthetic_dataset
from mmrl.datatools.image_check import check_image
from mmrl.datatools.verify import verify_all, verify_dataset
from mmrl.errors import DatasetError

STEMS = [m.stem for m in SPECS if not m.builtin_demo]


def _synthetic(stem, root, **kw):
    kw.setdefault("n_per_class", 8)
    return write_synthetic_dataset(stem, root, **kw)


def _first_json_image(ddir, stem):
    m = get_spec(stem)
    split = json.loads((ddir / m.split_file).read_text())
    return ddir / m.prefix / split["train"][0][0]


@pytest.mark.parametrize("stem", STEMS)
def test_synthetic_layout_is_ok_without_published_sizes(tmp_path, stem):
    _synthetic(stem, tmp_path)
    r = verify_dataset(stem, tmp_path, check_sizes=False)
    assert r.ok, [p.what for p in r.problems]
    assert r.images_checked > 0 and r.counts["test"] > 0 and r.counts["classes"] > 0


def test_published_sizes_are_checked_by_default(tmp_path):
    _synthetic("eurosat", tmp_path)
    r = verify_dataset("eurosat", tmp_path)
    assert not r.ok
    (p,) = r.problems
    assert "expected 13,500" in p.what and "split_zhou_EuroSAT.json" in p.what
    assert "mmrl data prepare eurosat" in p.fix


def test_expected_override_for_a_synthetic_copy(tmp_path):
    _synthetic("eurosat", tmp_path)
    r = verify_dataset("eurosat", tmp_path, expected={"classes": 10, "train": 40, "val": 20, "test": 20})
    assert r.ok, [p.what for p in r.problems]
    r = verify_dataset("eurosat", tmp_path, expected={"classes": 10, "train": 41})
    assert not r.ok and "train 40 (expected 41)" in r.problems[0].what


def test_missing_image_is_named(tmp_path):
    ddir = _synthetic("dtd", tmp_path)
    img = _first_json_image(ddir, "dtd")
    img.unlink()
    r = verify_dataset("dtd", tmp_path, check_sizes=False)
    assert not r.ok
    (p,) = r.problems
    assert "1 image(s) listed in" in p.what and img.name in p.what and "mmrl data prepare dtd" in p.fix


def test_truncated_image_found_by_header_check_and_by_deep(tmp_path):
    ddir = _synthetic("eurosat", tmp_path)
    img = _first_json_image(ddir, "eurosat")
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])
    for deep in (False, True):
        r = verify_dataset("eurosat", tmp_path, check_sizes=False, deep=deep)
        assert not r.ok
        (p,) = r.problems
        assert "1 unreadable image(s)" in p.what and img.name in p.what
    assert check_image(str(img)) is not None


def test_image_checks_in_a_process_pool(tmp_path, monkeypatch):
    from mmrl.datatools import image_check
    ddir = _synthetic("eurosat", tmp_path)
    img = _first_json_image(ddir, "eurosat")
    img.write_bytes(img.read_bytes()[:100])
    monkeypatch.setattr(image_check, "_PARALLEL_MIN", 0)
    monkeypatch.setattr(image_check, "_CHUNK", 16)
    r = verify_dataset("eurosat", tmp_path, check_sizes=False, workers=2)
    assert r.images_checked == 80 and len(r.problems) == 1 and img.name in r.problems[0].what


def test_not_an_image(tmp_path):
    ddir = _synthetic("imagenet_a", tmp_path)
    victim = next((ddir / "imagenet-a").rglob("*.jpg"))
    victim.write_text("<html>not found</html>")
    r = verify_dataset("imagenet_a", tmp_path, check_sizes=False)
    assert not r.ok and "unreadable" in r.problems[0].what and victim.name in r.problems[0].what


def test_no_images_flag_skips_opening(tmp_path):
    ddir = _synthetic("eurosat", tmp_path)
    _first_json_image(ddir, "eurosat").write_bytes(b"junk")
    r = verify_dataset("eurosat", tmp_path, check_sizes=False, images=False)
    assert r.ok and r.images_checked == 0


def test_wrong_class_count_in_split_json(tmp_path):
    ddir = _synthetic("eurosat", tmp_path)
    path = ddir / "split_zhou_EuroSAT.json"
    split = json.loads(path.read_text())
    split = {k: [e for e in v if e[1] != 9] for k, v in split.items()}  # drop the last class
    path.write_text(json.dumps(split))
    r = verify_dataset("eurosat", tmp_path, check_sizes=False, expected={"classes": 10})
    assert not r.ok and "classes 9 (expected 10)" in r.problems[0].what
    # Against the published numbers the class count is wrong too.
    r = verify_dataset("eurosat", tmp_path)
    assert "classes 9 (expected 10)" in r.problems[0].what


def test_wrong_class_count_in_class_folders(tmp_path):
    ddir = _synthetic("imagenet_r", tmp_path)
    folders = sorted(p for p in (ddir / "imagenet-r").iterdir() if p.is_dir())
    shutil.rmtree(folders[0])
    r = verify_dataset("imagenet_r", tmp_path, check_sizes=False, expected={"classes": len(folders)})
    assert not r.ok and f"classes {len(folders) - 1} (expected {len(folders)})" in r.problems[0].what
    # The published check also names the 200 expected wnids.
    r = verify_dataset("imagenet_r", tmp_path)
    assert any("differ from the 200 expected ImageNetR wnids" in p.what for p in r.problems)


def test_unknown_wnid_folder(tmp_path):
    ddir = _synthetic("imagenet_a", tmp_path)
    (ddir / "imagenet-a" / "n99999999").mkdir()
    (ddir / "imagenet-a" / "n99999999" / "x.jpg").write_bytes(
        next((ddir / "imagenet-a").rglob("*.jpg")).read_bytes())
    r = verify_dataset("imagenet_a", tmp_path, check_sizes=False)
    text = " ".join(p.what for p in r.problems)
    assert "n99999999" in text and "no class name" in text


def test_missing_split_json_and_absent_dataset(tmp_path):
    ddir = _synthetic("eurosat", tmp_path)
    (ddir / "split_zhou_EuroSAT.json").unlink()
    r = verify_dataset("eurosat", tmp_path, check_sizes=False)
    assert not r.ok and "missing split_zhou_EuroSAT.json" in r.problems[0].what
    r = verify_dataset("dtd", tmp_path)
    assert not r.present and str(tmp_path / "dtd") in r.problems[0].what
    assert "mmrl data prepare dtd" in r.problems[0].fix


def test_verify_all_picks_present_folders_and_fails_on_empty_root(tmp_path):
    with pytest.raises(DatasetError, match="no dataset folders"):
        verify_all(tmp_path)
    _synthetic("eurosat", tmp_path)
    _synthetic("fgvc_aircraft", tmp_path)
    assert [r.stem for r in verify_all(tmp_path, check_sizes=False)] == ["fgvc_aircraft", "eurosat"]


def test_cli_exit_status_and_output(tmp_path, capsys, monkeypatch):
    _synthetic("eurosat", tmp_path)
    assert main(["data", "verify", "--root", str(tmp_path), "eurosat", "--no-sizes"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK    EuroSAT") and "1 of 1 dataset(s) OK" in out
    assert main(["data", "verify", "--root", str(tmp_path), "EuroSAT"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  EuroSAT" in out and "fix: use the published split" in out
    monkeypatch.setenv("DATA", str(tmp_path))
    assert main(["data", "verify", "--json", "--expect", "classes=10", "--expect", "train=40", "--no-sizes"]) == 0
    (rep,) = json.loads(capsys.readouterr().out)
    assert rep["ok"] and rep["counts"]["train"] == 40
    assert main(["data", "verify", "--root", str(tmp_path), "nosuchset"]) == 2
    assert "Unknown dataset" in capsys.readouterr().err


def test_specs_agree_with_the_loaders():
    from mmrl.datasets.registry import get_dataset_class
    for m in SPECS:
        cls = get_dataset_class(m.name)
        assert (cls.NAME, cls.STEM, cls.FOLDER, cls.SPEC) == (m.name, m.stem, m.folder, m)
        assert get_spec(m.stem) is m and get_spec(m.folder) is m
        if m.split_file:
            assert m.split_file == f"split_zhou_{m.name}.json"
        if m.stem != "stanford_cars":
            assert cls.IMAGE_SUBDIR == m.image_dir, m.name


def test_spec_facts():
    assert get_spec("Flowers102").stem == "oxford_flowers"
    with pytest.raises(DatasetError, match="Did you mean 'EuroSAT'"):
        get_spec("eurosatt")
    cars, sun, inet = get_spec("stanford_cars"), get_spec("sun397"), get_spec("imagenet")
    assert all(s.dead for s in cars.sources if s.url) and all(s.dead for s in sun.sources if s.url)
    assert all(s.needs_login for s in inet.sources if s.file.startswith("ILSVRC"))
    assert all(s.sha256 is None for m in SPECS for s in m.sources)  # none published, none guessed
    names = [s.file for m in SPECS for s in m.sources if s.file != "classnames.txt"]
    assert len(names) == len(set(names))  # flat mirror: file names must not collide
    assert all(m.test > 0 for m in SPECS if not m.builtin_demo) and get_spec("food101").train == 50_500
