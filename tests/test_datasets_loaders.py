"""Every dataset loader on its synthetic real layout, with and without the split JSON."""
import os
import random
import re
from collections import Counter

import pytest

from mmrl.datasets import build_dataset, get_dataset_class
from mmrl.datatools.synthetic import write_synthetic_dataset
from mmrl.errors import ConfigError

SPLIT_COUNTS = {"folder": (16, 6, 10), "trainval": (18, 4, 10)}   # per class, n_per_class = 32

EXPECTED = {
    "eurosat": (["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road",
                 "Industrial Buildings", "Pasture Land", "Permanent Crop Land", "Residential Buildings", "River",
                 "Sea or Lake"], "folder", r"2750/(\w+)/\1_\d+\.jpg"),
    # case-sensitive sort: capitalised folders first; renamed after labelling; ignored folders absent
    "caltech101": (["face", "leopard", "motorbike", "accordion", "airplane", "anchor", "ant", "barrel"],
                   "folder", r"101_ObjectCategories/\w+/image_\d{4}\.jpg"),
    "dtd": (["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered"], "folder", r"images/(\w+)/\1_\d{4}\.jpg"),
    "food101": (["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare", "beet_salad"],
                "folder", r"images/\w+/\d+\.jpg"),
    "oxford_pets": (["abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle",
                     "bengal"], "trainval", r"images/\w+_\d+\.jpg"),
    "stanford_cars": (["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Acura TL Sedan",
                       "2008 Acura TL Type-S", "2012 Acura TSX Sedan", "2001 Acura Integra Type R"],
                      "trainval", r"cars_(train|test)/\d{5}\.jpg"),
    "oxford_flowers": (["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea",
                        "english marigold", "tiger lily"], "folder", r"jpg/image_\d{5}\.jpg"),
    "fgvc_aircraft": (["707-320", "727-200", "737-200", "A300B4", "BAE 146-200", "Cessna 172", "DC-10", "F-16A/B"],
                      "folder", r"images/\d{7}\.jpg"),
    "sun397": (["abbey", "outdoor apartment_building", "badlands", "shop bakery", "cafeteria", "dam"],
               "trainval", r"SUN397/[a-z]/[\w/]+/sun_[0-9a-f]{16}\.jpg"),
    "ucf101": (["Apply_Eye_Makeup", "Apply_Lipstick", "Archery", "Baby_Crawling", "Balance_Beam", "Yo_Yo"],
               "trainval", r"UCF-101-midframes/(\w+)/v_\w+_g\d\d_c\d\d\.jpg"),
}
TEMPLATES = {"eurosat": "a centered satellite photo of {}.", "dtd": "{} texture.",
             "oxford_pets": "a photo of a {}, a type of pet.", "ucf101": "a photo of a person doing {}.",
             "food101": "a photo of {}, a type of food.", "fgvc_aircraft": "a photo of a {}, a type of aircraft.",
             "oxford_flowers": "a photo of a {}, a type of flower.", "caltech101": "a photo of a {}.",
             "sun397": "a photo of a {}.", "stanford_cars": "a photo of a {}."}


def _per_class(lst):
    return sorted(Counter(it.label for it in lst).values())


@pytest.mark.parametrize("with_json", [True, False], ids=["json", "generated"])
@pytest.mark.parametrize("stem", sorted(EXPECTED))
def test_loader_on_real_layout(tmp_path, stem, with_json):
    names, kind, pattern = EXPECTED[stem]
    ddir = write_synthetic_dataset(stem, tmp_path, with_split_json=with_json)
    cls = get_dataset_class(stem)
    split_json = ddir / f"split_zhou_{cls.NAME}.json"
    assert split_json.exists() == (with_json and stem != "fgvc_aircraft")
    random.seed(1)
    data = build_dataset(stem, tmp_path)
    assert data.classnames == names and data.num_classes == len(names)
    assert data.lab2cname == dict(enumerate(names))
    assert data.template == TEMPLATES[stem]
    n_tr, n_va, n_te = SPLIT_COUNTS[kind]
    assert _per_class(data.train_x) == [n_tr] * len(names)
    assert _per_class(data.val) == [n_va] * len(names)
    assert _per_class(data.test) == [n_te] * len(names)
    for it in [*data.train_x, *data.val, *data.test]:
        assert os.path.isfile(it.impath) and it.classname == names[it.label] and it.domain == 0
        assert re.fullmatch(pattern, data.relpath(it)), data.relpath(it)
    # without a JSON the loader writes one (never for FGVCAircraft), and it reads back identically
    assert split_json.exists() == (stem != "fgvc_aircraft")
    if not with_json and stem != "fgvc_aircraft":
        again = build_dataset(stem, tmp_path)
        assert (again.train_x, again.val, again.test) == (data.train_x, data.val, data.test)


def test_caltech_ignored_folders_exist_but_are_excluded(tmp_path):
    ddir = write_synthetic_dataset("caltech101", tmp_path, with_split_json=False)
    assert (ddir / "101_ObjectCategories" / "BACKGROUND_Google").is_dir()
    assert (ddir / "101_ObjectCategories" / "Faces_easy").is_dir()
    data = build_dataset("Caltech101", tmp_path)
    paths = [it.impath for it in [*data.train_x, *data.val, *data.test]]
    assert not [p for p in paths if "BACKGROUND_Google" in p or "Faces_easy" in p]
    assert {data.relpath(it).split("/")[1] for it in data.train_x if it.label == 0} == {"Faces"}


def test_stanford_cars_prefix_is_dataset_folder(tmp_path):
    ddir = write_synthetic_dataset("stanford_cars", tmp_path)
    text = (ddir / "split_zhou_StanfordCars.json").read_text()
    assert '"cars_train/' in text and '"cars_test/' in text
    data = build_dataset("StanfordCars", tmp_path)
    assert data.image_dir == data.dataset_dir == str(ddir)
    assert all(data.relpath(it).startswith("cars_train/") for it in data.train_x + data.val)
    assert all(data.relpath(it).startswith("cars_test/") for it in data.test)


def test_flowers_generated_split_groups_in_first_appearance_order(tmp_path):
    write_synthetic_dataset("oxford_flowers", tmp_path, with_split_json=False)
    data = build_dataset("OxfordFlowers", tmp_path)
    order = list(dict.fromkeys(it.label for it in data.train_x))
    assert order == [5, 0, 4, 1, 3, 2]   # imagelabels.mat starts 6, 1, 5, 2, 4, 3 (1-based)


def test_aircraft_labels_follow_variants_file_order(tmp_path):
    ddir = write_synthetic_dataset("fgvc_aircraft", tmp_path)
    variants = (ddir / "variants.txt").read_text().splitlines()
    (ddir / "variants.txt").write_text("\n".join(reversed(variants)) + "\n")
    data = build_dataset("FGVCAircraft", tmp_path)
    assert data.classnames == list(reversed(variants))
    assert not list(ddir.glob("split_zhou_*"))


def test_pets_and_ucf_name_rules():
    from mmrl.datasets.ucf101 import rename_action
    from mmrl.datasets.stanford_cars import year_first
    from mmrl.datasets.sun397 import sun_classname
    assert rename_action("ApplyEyeMakeup") == "Apply_Eye_Makeup" and rename_action("YoYo") == "Yo_Yo"
    assert year_first("AM General Hummer SUV 2000") == "2000 AM General Hummer SUV"
    assert sun_classname("a/apartment_building/outdoor") == "outdoor apartment_building"


def test_pets_annotation_parsing(tmp_path):
    from mmrl.datasets.oxford_pets import read_pet_annotations
    p = tmp_path / "trainval.txt"
    p.write_text("#Image CLASS-ID SPECIES BREED ID\nAbyssinian_100 1 1 1\namerican_bulldog_10 2 2 1\n")
    got = read_pet_annotations(str(p), "/img")
    assert [(it.impath, it.label, it.classname) for it in got] == [
        ("/img/Abyssinian_100.jpg", 0, "abyssinian"), ("/img/american_bulldog_10.jpg", 1, "american_bulldog")]


# -- ImageNet family ----------------------------------------------------------------------------

def test_imagenet_sorted_within_class_val_is_test_and_fewshot_train_only(tmp_path):
    ddir = write_synthetic_dataset("imagenet", tmp_path, n_per_class=20)
    wnids = sorted(os.listdir(ddir / "images" / "train"))
    random.seed(3)
    data = build_dataset("ImageNet", tmp_path, num_shots=4, seed=3, fewshot_dir=tmp_path / "fs")
    assert data.val is data.test and len(data.test) == 6 * 5
    assert len(data.train_x) == 6 * 4
    full = build_dataset("ImageNet", tmp_path)
    first = [it.impath for it in full.train_x if it.label == 0]
    assert first == sorted(first) and os.path.basename(os.path.dirname(first[0])) == wnids[0]
    assert full.classnames[0] == "tench" and full.template == "a photo of a {}."
    base = build_dataset("ImageNet", tmp_path, num_shots=4, seed=3, subsample="base", fewshot_dir=tmp_path / "fs")
    assert base.num_classes == 3 and base.val is base.test and {it.label for it in base.test} == {0, 1, 2}


VARIANTS = {"imagenetv2": ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark",
                           "electric ray"],
            "imagenet_sketch": ["tench", "Treeing Walker Coonhound", "Angora rabbit", "movie theater", "monitor",
                                "stretcher"],
            "imagenet_a": ["stingray", "great egret", "fox squirrel", "storage chest", "obelisk", "syringe"],
            "imagenet_r": ["goldfish", "pelican", "Pembroke Welsh Corgi", "gazelle", "castle", "spider web"]}


@pytest.mark.parametrize("stem", sorted(VARIANTS))
def test_variants_are_test_only(tmp_path, stem):
    write_synthetic_dataset(stem, tmp_path, n_per_class=5)
    random.seed(1)
    state = random.getstate()
    data = build_dataset(stem, tmp_path, num_shots=16, seed=1, fewshot_dir=tmp_path / "fs")
    assert random.getstate() == state and not (tmp_path / "fs").exists()   # few-shot ignored
    assert data.train_x == data.test and data.val is None
    assert data.classnames == VARIANTS[stem] and len(data.test) == 30
    assert [it.label for it in data.test] == sorted(it.label for it in data.test)
    with pytest.raises(ConfigError, match="test-only"):
        build_dataset(stem, tmp_path, subsample="base")


@pytest.mark.parametrize("stem, sub", [("imagenet_a", "imagenet-a"), ("imagenet_r", "imagenet-r")])
def test_imagenet_a_r_reject_unexpected_folders(tmp_path, stem, sub):
    from mmrl.errors import DatasetError
    ddir = write_synthetic_dataset(stem, tmp_path, n_per_class=2)
    assert (ddir / sub / "README.txt").is_file()            # a file, skipped
    (ddir / sub / "n99999999").mkdir()
    (ddir / sub / "n99999999" / "x.jpg").write_bytes(b"")
    with pytest.raises(DatasetError) as e:
        build_dataset(stem, tmp_path)
    assert "n99999999" in str(e.value) and f"{stem}_wnids.txt" in str(e.value)


def test_imagenet_a_subset_warns_on_partial_set(tmp_path, caplog):
    write_synthetic_dataset("imagenet_a", tmp_path, n_per_class=2)
    with caplog.at_level("WARNING", logger="mmrl.data"):
        data = build_dataset("ImageNetA", tmp_path)
    assert data.num_classes == 6 and "6 of the 200 class folders" in caplog.text


def test_imagenetv2_names_follow_classnames_file_order(tmp_path):
    ddir = write_synthetic_dataset("imagenetv2", tmp_path, n_per_class=2)
    lines = (ddir / "classnames.txt").read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    (ddir / "classnames.txt").write_text("\n".join(lines) + "\n")
    data = build_dataset("ImageNetV2", tmp_path)
    assert data.classnames[:2] == ["goldfish", "tench"]


def test_imagenet_without_classnames_txt_uses_bundled_list(tmp_path, caplog):
    ddir = write_synthetic_dataset("imagenet_sketch", tmp_path, n_per_class=2)
    (ddir / "classnames.txt").unlink()
    with caplog.at_level("WARNING", logger="mmrl.data"):
        data = build_dataset("ImageNetSketch", tmp_path)
    assert data.classnames == VARIANTS["imagenet_sketch"] and "classnames.txt not found" in caplog.text


def test_numbered_lines_skip_blank_lines_but_keep_their_numbers(tmp_path):
    from mmrl.data.fileio import numbered_lines
    p = tmp_path / "list.txt"
    p.write_text("a b\n\n   \n  c  \r\nd", encoding="utf-8")
    assert list(numbered_lines(p)) == [(1, "a b"), (4, "c"), (5, "d")]


def test_a_bad_list_line_is_named_by_file_and_line_number(tmp_path):
    from mmrl.errors import DatasetError
    ddir = write_synthetic_dataset("fgvc_aircraft", tmp_path, n_per_class=4)
    test_list = ddir / "images_variant_test.txt"
    n = len(test_list.read_text(encoding="utf-8").splitlines())
    with open(test_list, "a", encoding="utf-8") as f:
        f.write("\n\n0000001 No Such Variant\n")
    with pytest.raises(DatasetError, match=rf"images_variant_test\.txt:{n + 3}: variant 'No Such Variant'"):
        build_dataset("fgvc_aircraft", tmp_path)
