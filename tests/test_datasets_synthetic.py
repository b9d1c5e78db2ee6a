import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

from mmrl.datatools.synthetic import write_synthetic_dataset


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("stem", ["eurosat", "stanford_cars", "oxford_flowers", "sun397", "food101", "fgvc_aircraft"])
def test_deterministic(tmp_path, stem):
    a = write_synthetic_dataset(stem, tmp_path / "a", n_per_class=10)
    b = write_synthetic_dataset(stem, tmp_path / "b", n_per_class=10)
    assert _digest(a) == _digest(b)
    c = write_synthetic_dataset(stem, tmp_path / "c", n_per_class=10, seed=1)
    assert _digest(a) != _digest(c)


def test_eurosat_default_is_ready_for_16_shots(tmp_path):
    ddir = write_synthetic_dataset("eurosat", tmp_path)
    assert ddir == tmp_path / "eurosat"
    split = json.loads((ddir / "split_zhou_EuroSAT.json").read_text())
    assert sorted(p.name for p in (ddir / "2750").iterdir()) == [
        "AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop",
        "Residential", "River", "SeaLake"]
    assert {e[2] for e in split["train"]} == {
        "Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Industrial Buildings",
        "Pasture Land", "Permanent Crop Land", "Residential Buildings", "River", "Sea or Lake"}
    for lab in range(10):
        assert sum(e[1] == lab for e in split["train"]) >= 16 and sum(e[1] == lab for e in split["val"]) >= 4


def test_class_colours_are_distinct(tmp_path):
    ddir = write_synthetic_dataset("eurosat", tmp_path, n_per_class=4, image_size=(16, 16))
    means = []
    for folder in sorted((ddir / "2750").iterdir()):
        img = np.asarray(Image.open(next(folder.iterdir())).convert("RGB"), dtype=np.float32)
        assert img.shape == (16, 16, 3)
        means.append(img.reshape(-1, 3).mean(0))
    dists = [np.abs(a - b).max() for i, a in enumerate(means) for b in means[i + 1:]]
    assert min(dists) > 25


def test_without_split_json_removes_an_old_one(tmp_path):
    ddir = write_synthetic_dataset("dtd", tmp_path, n_per_class=10)
    assert (ddir / "split_zhou_DescribableTextures.json").exists()
    write_synthetic_dataset("dtd", tmp_path, n_per_class=10, with_split_json=False)
    assert not (ddir / "split_zhou_DescribableTextures.json").exists()


def test_mat_files_have_the_real_structure(tmp_path):
    cars = write_synthetic_dataset("stanford_cars", tmp_path, n_per_class=10)
    anno = loadmat(cars / "devkit" / "cars_train_annos.mat")["annotations"]
    assert anno.shape[0] == 1 and set(anno.dtype.names) >= {"fname", "class"}
    assert anno[0, 0]["fname"][0] == "00001.jpg" and anno[0, 0]["class"][0, 0] >= 1
    names = loadmat(cars / "devkit" / "cars_meta.mat")["class_names"]
    assert names.shape == (1, 6) and names[0, 0][0] == "AM General Hummer SUV 2000"
    flowers = write_synthetic_dataset("oxford_flowers", tmp_path, n_per_class=10)
    labels = loadmat(flowers / "imagelabels.mat")["labels"]
    assert labels.shape == (1, 60) and labels[0, 0] == 6


def test_more_classes_than_real_names(tmp_path):
    ddir = write_synthetic_dataset("dtd", tmp_path, n_classes=12, n_per_class=5)
    assert len([p for p in (ddir / "images").iterdir()]) == 12
