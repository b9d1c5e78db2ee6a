import json
import os
import random

import pytest

from mmrl.data.items import Item
from mmrl.data.splits import (read_split, split_by_label_groups, split_folders, split_groups, split_trainval,
                              split_to_json, write_split)
from mmrl.errors import DatasetError


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_write_read_roundtrip_keeps_order_and_format(tmp_path):
    prefix = tmp_path / "images"
    rels = ["b/2.jpg", "a/1.jpg", "b/1.jpg"]
    for r in rels:
        _touch(prefix / r)
    train = [Item(str(prefix / rels[0]), 1, "bee"), Item(str(prefix / rels[1]), 0, "ant")]
    val = [Item(str(prefix / rels[2]), 1, "bee")]
    path = tmp_path / "split_zhou_Toy.json"
    write_split(train, val, [], path, str(prefix))
    text = path.read_text()
    assert list(json.loads(text)) == ["train", "val", "test"]
    assert text.startswith('{\n    "train": [\n        [\n            "b/2.jpg",\n            1,\n            "bee"\n')
    r_train, r_val, r_test = read_split(path, str(prefix))
    assert r_train == train and r_val == val and r_test == []
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_prefix_is_removed_by_substring_and_one_slash(tmp_path):
    # StanfordCars: the prefix is the dataset folder, entries keep their sub-folder
    d = "/data/stanford_cars"
    js = json.loads(split_to_json([Item(f"{d}/cars_train/00001.jpg", 0, "x")], [], [], d))
    assert js["train"] == [["cars_train/00001.jpg", 0, "x"]]


def test_read_split_missing_images_named(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"train": [["a/1.jpg", 0, "a"]], "val": [], "test": []}))
    with pytest.raises(DatasetError) as e:
        read_split(path, str(tmp_path / "images"))
    assert str(tmp_path / "images" / "a" / "1.jpg") in str(e.value)


@pytest.mark.parametrize("content, match", [
    ("{not json", "cannot be read as JSON"),
    ('{"train": []}', "keys 'train', 'val', 'test'"),
    ('{"train": [["a", 0]], "val": [], "test": []}', "entry 0 of 'train'"),
    ('{"train": [["a", "zero", "x"]], "val": [], "test": []}', "entry 0 of 'train'"),
    ('{"train": [["/etc/passwd", 0, "x"]], "val": [], "test": []}', "entry 0 of 'train'"),
    ('{"train": [["../other/a.jpg", 0, "x"]], "val": [], "test": []}', "entry 0 of 'train'"),
    ('{"train": [["a", 0, "cat"]], "val": [], "test": [["b", 0, "dog"]]}', "label 0 is both 'cat' and 'dog'"),
])
def test_read_split_bad_files(tmp_path, content, match):
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=match) as e:
        read_split(path, str(tmp_path), check_exists=False)
    assert str(path) in str(e.value)


def test_read_split_unreadable_bytes_named(tmp_path):
    path = tmp_path / "s.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DatasetError, match="cannot be read as JSON"):
        read_split(path, str(tmp_path))


def test_split_trainval_reference_rule():
    # label 1 first (tracker order); 13 items -> round(2.6) = 3 val; 12 items -> round(2.4) = 2 val
    tv = [Item(f"/x/b{i}", 1, "b") for i in range(12)] + [Item(f"/x/a{i}", 0, "a") for i in range(13)]
    random.seed(0)
    train, val = split_trainval(tv)
    random.seed(0)
    idx_b, idx_a = list(range(12)), list(range(12, 25))
    random.shuffle(idx_b)
    random.shuffle(idx_a)
    assert val == [tv[i] for i in idx_b[:2]] + [tv[i] for i in idx_a[:3]]
    assert train == [tv[i] for i in idx_b[2:]] + [tv[i] for i in idx_a[3:]]


def test_split_groups_round_half_even():
    # n = 5: round(2.5) = 2 train, round(1.0) = 1 val, 2 test; n = 15: round(7.5) = 8, 3, 4
    g5 = [Item(f"/x/a{i}", 0, "a") for i in range(5)]
    g15 = [Item(f"/x/b{i}", 1, "b") for i in range(15)]
    train, val, test = split_groups([g5, g15], rng=random.Random(0))
    assert [sum(it.label == lab for it in train) for lab in (0, 1)] == [2, 8]
    assert [sum(it.label == lab for it in val) for lab in (0, 1)] == [1, 3]
    assert [sum(it.label == lab for it in test) for lab in (0, 1)] == [2, 4]


def test_split_groups_too_small_class():
    with pytest.raises(DatasetError, match="too few"):
        split_groups([[Item("/x/a/1", 0, "a"), Item("/x/a/2", 0, "a")]], rng=random.Random(0))


def test_split_folders_case_sensitive_sort_ignored_and_renames(tmp_path):
    for folder in ["apple", "Zebra", "BACKGROUND_Google", "banana", ".hidden"]:
        for i in range(4):
            _touch(tmp_path / folder / f"{i}.jpg")
    train, val, test = split_folders(str(tmp_path), ignored=["BACKGROUND_Google"], renames={"Zebra": "zebra"},
                                     rng=random.Random(0))
    labels = {it.label: it.classname for it in train + val + test}
    assert labels == {0: "zebra", 1: "apple", 2: "banana"}
    assert all("BACKGROUND" not in it.impath for it in train + val + test)
    assert (len(train), len(val), len(test)) == (6, 3, 3)   # 4 -> 2/1/1 per class


def test_split_folders_consumes_global_rng_like_reference(tmp_path):
    for folder in ["a", "b"]:
        for i in range(10):
            _touch(tmp_path / folder / f"{i}.jpg")
    random.seed(5)
    train, _, _ = split_folders(str(tmp_path))
    random.seed(5)
    lists = []
    for folder in ["a", "b"]:
        files = [f for f in os.listdir(tmp_path / folder)]
        random.shuffle(files)
        lists += [str(tmp_path / folder / f) for f in files[:5]]
    assert [it.impath for it in train] == lists


def test_split_by_label_groups_tracker_order():
    lst = [Item(f"/x/{i}", lab, str(lab)) for i, lab in enumerate([2, 0, 2, 0, 1] * 4)]
    train, val, test = split_by_label_groups(lst, rng=random.Random(0))
    assert [it.label for it in train] == [2] * 4 + [0] * 4 + [1] * 2
