"""`mmrl data prepare` end to end against a local mirror (HTTP on 127.0.0.1, or a folder).

Source archives are built from synthetic copies of the real layouts, packed the way the
official archives are packed; after prepare, the registry's loader must read the result
and return the same items as it does on the synthetic original.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from mmrl.cli import main
from mmrl.datatools import fetch, steps
from mmrl.datatools.prepare import prepare_dataset
from mmrl.datatools.steps import read_val_labels
from mmrl.datasets.registry import get_dataset_class, get_spec
from mmrl.datatools.synthetic import write_synthetic_dataset
from mmrl.datatools.verify import verify_dataset
from mmrl.errors import DatasetError, MMRLError

sys.path.insert(0, os.path.dirname(__file__))
from test_download import LocalServer  # noqa: E402  (the Range-capable test server)


@pytest.fixture
def www(tmp_path):
    d = tmp_path / "www"
    d.mkdir()
    with LocalServer(d) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test reaches the internet: only 127.0.0.1 and local folders serve files."""
    from mmrl.errors import DownloadError
    from mmrl.utils.download import download_url
    monkeypatch.delenv("MMRL_DATA_MIRROR", raising=False)

    def local_only(url, dest, **kw):
        if not url.startswith("http://127.0.0.1:"):
            raise DownloadError(f"network disabled in tests: {url}")
        return download_url(url, dest, **kw)

    def no_drive(file_id, dest, **kw):
        raise DownloadError(f"network disabled in tests: Google Drive {file_id}")

    monkeypatch.setattr(fetch, "download_url", local_only)
    monkeypatch.setattr(fetch, "download_gdrive", no_drive)


def _synthetic(stem: str, tmp_path: Path) -> Path:
    return write_synthetic_dataset(stem, tmp_path / "src", n_per_class=8)


def _tar(archive: Path, members: dict[str, Path], mode: str = "w:gz") -> Path:
    """members: name in the archive -> file or folder on disk (added recursively)."""
    with tarfile.open(archive, mode) as tf:
        for arcname, path in members.items():
            tf.add(path, arcname=arcname)
    return archive


def _zip(archive: Path, members: dict[str, Path]) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for arcname, path in members.items():
            files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
            for f in files:
                zf.write(f, arcname if path.is_file() else f"{arcname}/{f.relative_to(path)}")
    return archive


def _load(stem: str, root: Path):
    """(train, val, test) as (relative path, label, classname) tuples."""
    cls = get_dataset_class(stem)
    ds = cls(root)
    out = []
    for split in ds.load():
        out.append(None if split is None else
                   [(os.path.relpath(it.impath, ds.dataset_dir), it.label, it.classname) for it in split])
    return out


def _same_as_source(stem: str, root: Path, tmp_path: Path) -> None:
    assert _load(stem, root) == _load(stem, tmp_path / "src")
    r = verify_dataset(stem, root, check_sizes=False)
    assert r.ok, [p.what for p in r.problems]


def _prepare(stem, root, mirror, **kw):
    kw.setdefault("progress", False)
    return prepare_dataset(stem, root, mirror=mirror, **kw)


# ---------------------------------------------------------------------------------------------

def test_eurosat_over_http_then_rerun_does_nothing(tmp_path, www):
    src = _synthetic("eurosat", tmp_path)
    _zip(www.root / "EuroSAT.zip", {"2750": src / "2750"})
    shutil.copy(src / "split_zhou_EuroSAT.json", www.root)
    root = tmp_path / "data"
    r = _prepare("eurosat", root, www.url)
    assert r.status == "complete" and r.ok
    assert any("EuroSAT.zip" in a for a in r.actions)
    _same_as_source("eurosat", root, tmp_path)
    assert not (root / ".mmrl-downloads").exists()  # archive deleted, empty download dir removed
    n = len(www.requests)
    again = _prepare("eurosat", root, www.url)
    assert again.status == "already" and again.actions == [] and len(www.requests) == n


@pytest.mark.parametrize("top", ["EuroSAT_RGB", "EuroSAT/2750"])
def test_eurosat_from_a_local_folder_with_another_top_folder(tmp_path, top):
    src = _synthetic("eurosat", tmp_path)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    _zip(mirror / "EuroSAT.zip", {top: src / "2750"})  # other zips use another (or a wrapper) top folder
    shutil.copy(src / "split_zhou_EuroSAT.json", mirror)
    root = tmp_path / "data"
    assert _prepare("eurosat", root, str(mirror)).status == "complete"
    _same_as_source("eurosat", root, tmp_path)
    assert (mirror / "EuroSAT.zip").exists()  # files of a local mirror are never deleted
    assert sorted(p.name for p in (root / "eurosat").iterdir()) == ["2750", "split_zhou_EuroSAT.json"]


def test_dtd_extracts_under_the_root(tmp_path, www):
    src = _synthetic("dtd", tmp_path)
    _tar(www.root / "dtd-r1.0.1.tar.gz", {"dtd/images": src / "images", "dtd/labels": src / "labels"})
    shutil.copy(src / "split_zhou_DescribableTextures.json", www.root)
    root = tmp_path / "data"
    assert _prepare("dtd", root, www.url).status == "complete"
    _same_as_source("dtd", root, tmp_path)


def test_fgvc_keeps_only_data_renamed(tmp_path, www):
    src = _synthetic("fgvc_aircraft", tmp_path)
    extra = tmp_path / "README.html"
    extra.write_text("readme")
    _tar(www.root / "fgvc-aircraft-2013b.tar.gz",
         {"fgvc-aircraft-2013b/README.html": extra, "fgvc-aircraft-2013b/data": src})
    root = tmp_path / "data"
    assert _prepare("fgvc_aircraft", root, www.url).status == "complete"
    assert sorted(p.name for p in (root / "fgvc_aircraft").iterdir()) == sorted(p.name for p in src.iterdir())
    assert not (root / "fgvc-aircraft-2013b").exists()
    _same_as_source("fgvc_aircraft", root, tmp_path)


def test_imagenet_a_via_env_mirror(tmp_path, www, monkeypatch):
    src = _synthetic("imagenet_a", tmp_path)
    _tar(www.root / "imagenet-a.tar", {"imagenet-a": src / "imagenet-a"}, mode="w")
    shutil.copy(src / "classnames.txt", www.root)
    monkeypatch.setenv("MMRL_DATA_MIRROR", www.url)
    root = tmp_path / "data"
    r = prepare_dataset("imagenet_a", root, progress=False)
    assert r.status == "complete"
    assert (root / "imagenet-adversarial/classnames.txt").read_bytes() == (src / "classnames.txt").read_bytes()
    _same_as_source("imagenet_a", root, tmp_path)


def test_variant_copies_classnames_from_imagenet(tmp_path, www):
    src = _synthetic("imagenet_r", tmp_path)
    _tar(www.root / "imagenet-r.tar", {"imagenet-r": src / "imagenet-r"}, mode="w")
    root = tmp_path / "data"
    (root / "imagenet").mkdir(parents=True)
    shutil.copy(src / "classnames.txt", root / "imagenet/classnames.txt")
    r = _prepare("imagenet_r", root, www.url)
    assert r.status == "complete" and any("copied" in a for a in r.actions)
    assert all(name != "classnames.txt" for name, _ in www.requests)
    _same_as_source("imagenet_r", root, tmp_path)


def test_ucf101_midframes_zip(tmp_path, www):
    src = _synthetic("ucf101", tmp_path)
    _zip(www.root / "UCF-101-midframes.zip", {"UCF-101-midframes": src / "UCF-101-midframes"})
    shutil.copy(src / "split_zhou_UCF101.json", www.root)
    root = tmp_path / "data"
    assert _prepare("ucf101", root, www.url).status == "complete"
    _same_as_source("ucf101", root, tmp_path)


def test_ucf101_videos_without_a_decoder_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)   # import av -> ImportError
    monkeypatch.setitem(sys.modules, "cv2", None)
    videos = tmp_path / "UCF-101" / "ApplyEyeMakeup"
    videos.mkdir(parents=True)
    (videos / "v_ApplyEyeMakeup_g08_c01.avi").write_bytes(b"RIFF")
    with pytest.raises(DatasetError, match="no video decoder") as e:
        prepare_dataset("ucf101", tmp_path / "data", mirror=str(tmp_path), videos=tmp_path / "UCF-101")
    assert "pip install av" in str(e.value) and "UCF-101-midframes.zip" in str(e.value)


def test_ucf101_middle_frames_from_videos(tmp_path, monkeypatch):
    from PIL import Image
    seen = []

    def fake_reader(path):
        seen.append(path.name)
        return Image.new("RGB", (8, 8), (200, 10, 10))

    monkeypatch.setattr(steps, "_video_reader", lambda: fake_reader)
    vids = tmp_path / "UCF-101"
    for action, stem in [("ApplyEyeMakeup", "v_ApplyEyeMakeup_g08_c01"), ("YoYo", "v_YoYo_g01_c02")]:
        (vids / action).mkdir(parents=True, exist_ok=True)
        (vids / action / f"{stem}.avi").write_bytes(b"RIFF")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "split_zhou_UCF101.json").write_text('{"train": [], "val": [], "test": []}')
    _zip(tmp_path / "videos.zip", {"UCF-101": vids})
    r = prepare_dataset("ucf101", tmp_path / "data", mirror=str(mirror), videos=tmp_path / "videos.zip")
    assert r.status == "complete"
    frames = tmp_path / "data/ucf101/UCF-101-midframes"
    assert sorted(str(p.relative_to(frames)) for p in frames.rglob("*.jpg")) == [
        "Apply_Eye_Makeup/v_ApplyEyeMakeup_g08_c01.jpg", "Yo_Yo/v_YoYo_g01_c02.jpg"]
    assert len(seen) == 2
    with pytest.raises(DatasetError, match="unrar"):
        rar = tmp_path / "UCF101.rar"
        rar.write_bytes(b"Rar!")
        shutil.rmtree(frames)
        prepare_dataset("ucf101", tmp_path / "data", mirror=str(mirror), videos=rar)


def test_stanford_cars_manual_steps_then_from_a_folder(tmp_path, www, capsys):
    src = _synthetic("stanford_cars", tmp_path)
    shutil.copy(src / "split_zhou_StanfordCars.json", www.root)  # the Drive split still works
    root = tmp_path / "data"
    r = _prepare("stanford_cars", root, www.url)
    assert r.status == "manual" and not r.ok
    for text in ("cars_train.tgz", "cars_test.tgz", "its host is gone", "cars_train/00001.jpg",
                 "mmrl data prepare stanford_cars", "--from DIR", str(root / ".mmrl-downloads")):
        assert text in r.manual, text
    assert (root / "stanford_cars/split_zhou_StanfordCars.json").is_file()
    assert any("car_devkit.tgz" in n for n in r.notes)  # optional raw file: a note, not a failure
    assert "car_devkit.tgz (optional" in r.manual
    # The CLI prints the same and exits non-zero.
    assert main(["data", "prepare", "stanford_cars", "--root", str(root), "--from", www.url, "--no-progress"]) == 1
    assert "cars_test_annos_withlabels.mat" in capsys.readouterr().out
    # A person found the files and put them in a folder: now it completes.
    mirror = tmp_path / "found"
    mirror.mkdir()
    _tar(mirror / "cars_train.tgz", {"cars_train": src / "cars_train"})
    _tar(mirror / "cars_test.tgz", {"cars_test": src / "cars_test"})
    _tar(mirror / "car_devkit.tgz", {"devkit": src / "devkit"})
    shutil.copy(src / "cars_test_annos_withlabels.mat", mirror)
    r = _prepare("stanford_cars", root, str(mirror))
    assert r.status == "complete" and (root / "stanford_cars/devkit/cars_meta.mat").is_file()
    _same_as_source("stanford_cars", root, tmp_path)


def _imagenet_sources(src: Path, out: Path) -> dict[str, int]:
    """ILSVRC2012-shaped archives from a synthetic imagenet/ folder; returns wnid -> val count."""
    out.mkdir(parents=True, exist_ok=True)
    train = src / "images/train"
    with tarfile.open(out / "ILSVRC2012_img_train.tar", "w") as outer:
        for wdir in sorted(train.iterdir()):
            inner = out / f"{wdir.name}.tar"
            with tarfile.open(inner, "w") as tf:
                for f in sorted(wdir.iterdir()):
                    tf.add(f, arcname=f.name)
            outer.add(inner, arcname=inner.name)
            inner.unlink()
    wnids = sorted(p.name for p in (src / "images/val").iterdir())
    ids = {w: 1000 - i for i, w in enumerate(wnids)}  # ILSVRC ids are not in wnid order
    counts, truth = {}, []
    with tarfile.open(out / "ILSVRC2012_img_val.tar", "w") as tf:
        k = 0
        for w in wnids:
            for f in sorted((src / "images/val" / w).iterdir()):
                k += 1
                tf.add(f, arcname=f"ILSVRC2012_val_{k:08d}.JPEG")
                truth.append(ids[w])
                counts[w] = counts.get(w, 0) + 1
    dev = out / "devkit_src/data"
    dev.mkdir(parents=True)
    syn = np.zeros((len(wnids) + 1,), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])
    for i, w in enumerate(wnids):
        syn[i] = (ids[w], w, 0)
    syn[-1] = (1001, "n00001740", 3)  # a non-leaf synset, never a label
    scipy.io.savemat(dev / "meta.mat", {"synsets": syn})
    (dev / "ILSVRC2012_validation_ground_truth.txt").write_text("".join(f"{i}\n" for i in truth))
    _tar(out / "ILSVRC2012_devkit_t12.tar.gz", {"ILSVRC2012_devkit_t12": dev.parent})
    shutil.rmtree(dev.parent)
    (out / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "".join(
        f"ILSVRC2012_val_{k:08d},{wnids[wnids.index(w)]} 1 2 3 4\n"
        for k, w in enumerate([w for w in wnids for _ in range(counts[w])], 1)))
    shutil.copy(src / "classnames.txt", out)
    return counts


def test_imagenet_manual_steps_then_arranged_from_a_folder(tmp_path):
    src = _synthetic("imagenet", tmp_path)
    only_names = tmp_path / "names"
    only_names.mkdir()
    shutil.copy(src / "classnames.txt", only_names)
    root = tmp_path / "data"
    r = _prepare("imagenet", root, str(only_names))
    assert r.status == "manual"
    for f in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz",
              "needs a login", "images/val/<wnid>/*.JPEG"):
        assert f in r.manual, f
    assert (root / "imagenet/classnames.txt").is_file()

    mirror = tmp_path / "ilsvrc"
    counts = _imagenet_sources(src, mirror)
    r = _prepare("imagenet", root, str(mirror))
    assert r.status == "complete", r.manual
    val = root / "imagenet/images/val"
    assert {w.name: len(list(w.iterdir())) for w in val.iterdir()} == counts
    train, _, test = _load("imagenet", root)
    src_train, _, src_test = _load("imagenet", tmp_path / "src")
    assert sorted(train) == sorted(src_train)  # listdir order may differ
    assert sorted((lab, c) for _, lab, c in test) == sorted((lab, c) for _, lab, c in src_test)
    assert not list((root / "imagenet/images").glob(".*partial"))


def test_imagenet_val_from_a_labels_file(tmp_path):
    src = _synthetic("imagenet", tmp_path)
    mirror = tmp_path / "ilsvrc"
    counts = _imagenet_sources(src, mirror)
    (mirror / "ILSVRC2012_devkit_t12.tar.gz").unlink()
    labels = read_val_labels(mirror / "LOC_val_solution.csv")
    assert len(labels) == sum(counts.values()) and all(k.endswith(".JPEG") for k in labels)
    root = tmp_path / "data"
    r = _prepare("imagenet", root, str(mirror), val_labels=mirror / "LOC_val_solution.csv")
    assert r.status == "complete"
    assert {w.name: len(list(w.iterdir())) for w in (root / "imagenet/images/val").iterdir()} == counts
    bad = tmp_path / "bad.txt"
    bad.write_text("ILSVRC2012_val_00000001.JPEG 17\n")
    with pytest.raises(DatasetError, match="expected '<image> <wnid>'"):
        read_val_labels(bad)


def test_hostile_archive_leaves_no_half_done_dataset(tmp_path, www):
    with zipfile.ZipFile(www.root / "EuroSAT.zip", "w") as zf:
        zf.writestr("2750/Forest/Forest_1.jpg", b"x")
        zf.writestr("../../escape.txt", b"x")
    root = tmp_path / "data"
    with pytest.raises(MMRLError, match="refusing member"):
        _prepare("eurosat", root, www.url)
    assert not (root / "eurosat/2750").exists() and not (tmp_path / "escape.txt").exists()
    assert not list((root / "eurosat").glob(".mmrl-*"))


def test_cli_prepare_prints_and_is_idempotent(tmp_path, www, capsys):
    src = _synthetic("eurosat", tmp_path)
    _zip(www.root / "EuroSAT.zip", {"2750": src / "2750"})
    shutil.copy(src / "split_zhou_EuroSAT.json", www.root)
    args = ["data", "prepare", "eurosat", "--root", str(tmp_path / "data"), "--from", www.url, "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "EuroSAT: prepared in" in out and "mmrl data verify eurosat" in out
    assert main(args) == 0
    assert "already prepared" in capsys.readouterr().out
    assert main(["data", "prepare", "nosuch", "--root", str(tmp_path)]) == 2


def _files(src: Path, *names: str) -> dict[str, Path]:
    return {n: src / n for n in names}


# How the official archives are packed, per dataset: archive name -> {name inside: synthetic path}.
PACKING = {
    "caltech101": lambda s: {"101_ObjectCategories.tar.gz": _files(s, "101_ObjectCategories")},
    "oxford_pets": lambda s: {"images.tar.gz": _files(s, "images"), "annotations.tar.gz": _files(s, "annotations")},
    "oxford_flowers": lambda s: {"102flowers.tgz": _files(s, "jpg")},
    "food101": lambda s: {"food-101.tar.gz": {"food-101/images": s / "images", "food-101/meta": s / "meta"}},
    "sun397": lambda s: {"SUN397.tar.gz": _files(s, "SUN397"),
                         "Partitions.zip": {f"Partitions/{n}": s / n
                                            for n in ("ClassName.txt", "Training_01.txt", "Testing_01.txt")}},
    "imagenetv2": lambda s: {"imagenetv2-matched-frequency.tar.gz":
                             _files(s, "imagenetv2-matched-frequency-format-val")},
    "imagenet_sketch": lambda s: {"ImageNet-Sketch.zip": {"sketch": s / "images"}},
}
LOOSE_FILES = {"oxford_flowers": ("imagelabels.mat", "cat_to_name.json")}


@pytest.mark.parametrize("stem", sorted(PACKING))
def test_other_datasets_from_a_local_mirror(tmp_path, stem):
    src = _synthetic(stem, tmp_path)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for archive, members in PACKING[stem](src).items():
        (_zip if archive.endswith(".zip") else _tar)(mirror / archive, members)
    for name in LOOSE_FILES.get(stem, ()) + ("classnames.txt",):
        if (src / name).exists():
            shutil.copy(src / name, mirror)
    for split in src.glob("split_zhou_*.json"):
        shutil.copy(split, mirror)
    root = tmp_path / "data"
    r = _prepare(stem, root, str(mirror))
    assert r.status == "complete", r.manual
    _same_as_source(stem, root, tmp_path)
    for raw in get_spec(stem).raw:
        assert (root / get_spec(stem).folder / raw).exists(), raw


def test_sun397_and_sketch_without_files_print_manual_steps(tmp_path, www):
    (www.root / "split_zhou_SUN397.json").write_text('{"train": [], "val": [], "test": []}')
    r = _prepare("sun397", tmp_path / "data", www.url)  # the mirror answers 404 for the archives
    assert r.status == "manual" and "SUN397.tar.gz: its host is gone" in r.manual
    assert "Partitions.zip (optional" in r.manual and "ClassName.txt, Training_01.txt" in r.manual
    r = _prepare("imagenet_sketch", tmp_path / "data", www.url)
    assert r.status == "manual" and "ImageNet-Sketch.zip: no direct link recorded" in r.manual
    # classnames.txt: not on the mirror and Drive unreachable -> mmrl's reconstruction, with a note
    assert (tmp_path / "data/imagenet-sketch/classnames.txt").is_file()
    assert any("reconstruction" in n for n in r.notes)


def test_unreachable_mirror_names_url_and_destination(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    root = tmp_path / "data"
    with pytest.raises(MMRLError) as e:
        _prepare("eurosat", root, f"http://127.0.0.1:{port}")
    msg = str(e.value)
    assert f"http://127.0.0.1:{port}/EuroSAT.zip" in msg and str(root / ".mmrl-downloads/EuroSAT.zip") in msg


def test_a_dataset_without_prepare_steps_is_refused_by_name(tmp_path):
    with pytest.raises(DatasetError, match="Demo has nothing to download: it is generated on first use"):
        prepare_dataset("demo", tmp_path)
    assert list(tmp_path.iterdir()) == []


def _imagenet_mirror_with_train_tar_cut(tmp_path, at):
    """ImageNet's archives in a mirror folder, the train tar cut at ``at(its second member)`` bytes."""
    mirror = tmp_path / "ilsvrc"
    _imagenet_sources(_synthetic("imagenet", tmp_path), mirror)
    train_tar = mirror / "ILSVRC2012_img_train.tar"
    with tarfile.open(train_tar) as tf:
        second = tf.getmembers()[1]
    train_tar.write_bytes(train_tar.read_bytes()[:at(second)])
    return mirror


def test_imagenet_train_tar_cut_short_is_not_declared_prepared(tmp_path):
    # ILSVRC2012_img_train.tar cut right after its first class tar: tarfile stops there quietly.
    mirror = _imagenet_mirror_with_train_tar_cut(tmp_path, lambda second: second.offset)
    root = tmp_path / "data"
    with pytest.raises(MMRLError, match="ILSVRC2012_img_train.tar") as e:
        _prepare("imagenet", root, str(mirror))
    assert "cut short" in str(e.value) and "download it again" in str(e.value)
    assert not (root / "imagenet/images/train").exists()


def test_imagenet_train_tar_cut_inside_a_member_names_the_archive(tmp_path):
    mirror = _imagenet_mirror_with_train_tar_cut(tmp_path, lambda second: second.offset_data + second.size // 2)
    root = tmp_path / "data"
    with pytest.raises(MMRLError, match="ILSVRC2012_img_train.tar") as e:
        _prepare("imagenet", root, str(mirror))
    assert "download it again" in str(e.value)
    assert not (root / "imagenet/images/train").exists()


_KILLED_MID_EXTRACTION = """
import os, sys
import mmrl.utils.extract as ex
ex.merge_move = lambda *a: os._exit(9)  # dies like a killed process: no cleanup runs
from mmrl.datatools.prepare import prepare_dataset
prepare_dataset(sys.argv[1], sys.argv[2], mirror=sys.argv[3], progress=False)
"""


@pytest.mark.parametrize("stem,where", [("eurosat", "eurosat"), ("dtd", "")])
def test_rerun_removes_the_temporary_folder_of_a_killed_extraction(tmp_path, stem, where):
    src = _synthetic(stem, tmp_path)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    if stem == "eurosat":
        _zip(mirror / "EuroSAT.zip", {"2750": src / "2750"})
        shutil.copy(src / "split_zhou_EuroSAT.json", mirror)
    else:
        _tar(mirror / "dtd-r1.0.1.tar.gz", {"dtd/images": src / "images", "dtd/labels": src / "labels"})
        shutil.copy(src / "split_zhou_DescribableTextures.json", mirror)
    root = tmp_path / "data"
    rc = subprocess.run([sys.executable, "-c", _KILLED_MID_EXTRACTION, stem, str(root), str(mirror)],
                        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).returncode
    assert rc == 9
    (left,) = (root / where).glob(".mmrl-extract-*")
    assert any(left.rglob("*.jpg"))
    # Not ours: a name outside mkdtemp's pattern, a file, and (in the shared root) another dataset's.
    decoys = [root / where / ".mmrl-extract-mine", root / where / ".mmrl-extract-abcd1234.txt",
              root / ".mmrl-extract-food1234" / "food-101"]
    for d in decoys[::2]:
        d.mkdir(parents=True)
    decoys[1].write_text("x")
    r = _prepare(stem, root, str(mirror))
    assert r.status == "complete"
    assert not left.exists() and any(str(left) in a and "interrupted" in a for a in r.actions)
    assert all(d.exists() for d in decoys)
    _same_as_source(stem, root, tmp_path)


# 1234: an id meta.mat does not list; 1001: meta.mat's non-leaf synset, not one of the 1000 classes;
# a line that is no id; a blank line inside, which would shift every later image's label.
@pytest.mark.parametrize("change, said", [
    (lambda t: t + "1234\n", "ILSVRC id 1234,"),
    (lambda t: t + "1001\n", "ILSVRC id 1001,"),
    (lambda t: t + "n01440764\n", "reads 'n01440764', which is not an ILSVRC id"),
    (lambda t: t.replace("\n", "\n\n", 1), "line 2 of ILSVRC2012_validation_ground_truth.txt is blank"),
])
def test_imagenet_devkit_that_does_not_match_names_the_line_and_the_right_devkit(tmp_path, change, said):
    src = _synthetic("imagenet", tmp_path)
    mirror = tmp_path / "ilsvrc"
    _imagenet_sources(src, mirror)
    devkit = mirror / "ILSVRC2012_devkit_t12.tar.gz"
    work = tmp_path / "devkit"
    with tarfile.open(devkit) as tf:
        tf.extractall(work, filter="data")
    truth = work / "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"
    truth.write_text(change(truth.read_text()))
    _tar(devkit, {"ILSVRC2012_devkit_t12": work / "ILSVRC2012_devkit_t12"})
    with pytest.raises(DatasetError) as e:
        _prepare("imagenet", tmp_path / "data", str(mirror))
    msg = str(e.value)
    assert str(devkit) in msg and said in msg and "Use ILSVRC2012_devkit_t12.tar.gz" in msg


def test_imagenet_train_clears_leftover_tmp_files_and_folders(tmp_path):
    src = _synthetic("imagenet", tmp_path)
    mirror = tmp_path / "ilsvrc"
    _imagenet_sources(src, mirror)
    root = tmp_path / "data"
    staging = root / "imagenet/images/.train.partial"
    done, other = sorted(p.name for p in (src / "images/train").iterdir())[:2]
    shutil.copytree(src / "images/train" / done, staging / done)  # finished in the killed run
    (staging / f"{done}.tar.tmp").write_bytes(b"half a class tar")
    (staging / f"{other}.tmp").mkdir()
    (staging / f"{other}.tmp/half.JPEG").write_bytes(b"x")
    assert _prepare("imagenet", root, str(mirror)).status == "complete"
    train = root / "imagenet/images/train"
    assert not list(train.glob("*.tmp"))
    assert sorted(p.name for p in train.iterdir()) == sorted(p.name for p in (src / "images/train").iterdir())
