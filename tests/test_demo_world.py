"""The demo world: deterministic images, a CoOp-format split, the Demo dataset class."""
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmrl.demo import world
from mmrl.errors import DatasetError


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    t0 = time.time()
    d = world.ensure_demo_dataset(tmp_path_factory.mktemp("demo-root"))
    assert time.time() - t0 < 60, "generating the demo dataset must stay fast"
    return d


def test_classes_split_into_halves_that_each_use_every_attribute_word():
    n = len(world.CLASSES)
    assert n == 32 and len(set(world.CLASSES)) == n
    half = (n + 1) // 2
    for part in (world.CLASSES[:half], world.CLASSES[half:]):
        assert {c.color for c in part} == set(world.COLORS)
        assert {c.pattern for c in part} == set(world.PATTERNS)
        assert {c.shape for c in part} == set(world.SHAPES)
    # plain words the text encoder can compose
    assert world.CLASSNAMES[0].count(" ") == 2 and "_" not in "".join(world.CLASSNAMES)
    # the demo classes are held out of pretraining, every attribute word is not
    pre = world.pretrain_combos()
    assert not set(pre) & set(world.CLASSES)
    for attr, values in (("color", world.COLORS), ("pattern", world.PATTERNS), ("shape", world.SHAPES)):
        assert {getattr(c, attr) for c in pre} == set(values)


def test_rendering_is_deterministic_and_depends_on_the_key():
    c = world.CLASSES[3]
    a = world.render(c, world.image_rng(3, 3, 0), "demo")
    b = world.render(c, world.image_rng(3, 3, 0), "demo")
    other = world.render(c, world.image_rng(3, 3, 1), "demo")
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, other)
    # the two styles differ (the demo images are not the pretraining distribution)
    p = world.render(c, world.image_rng(3, 3, 0), "pretrain")
    assert not np.array_equal(a, p)


def test_split_json_is_in_the_coop_format_with_the_documented_counts(demo_dir):
    path = demo_dir / "split_zhou_Demo.json"
    text = path.read_text()
    obj = json.loads(text)
    assert list(obj) == ["train", "val", "test"]
    # the published files' layout: 4-space indent, ", " / ": " separators
    assert text == json.dumps(obj, indent=4, separators=(",", ": "))
    counts = {"train": world.N_TRAIN, "val": world.N_VAL, "test": world.N_TEST}
    assert counts["train"] >= 16 and counts["val"] >= 4
    seen = set()
    for split, rows in obj.items():
        assert len(rows) == counts[split] * len(world.CLASSES)
        per_label = {}
        for rel, label, cname in rows:
            assert isinstance(rel, str) and isinstance(label, int) and isinstance(cname, str)
            assert cname == world.CLASSNAMES[label]
            assert rel.split("/")[0] == cname.replace(" ", "_") and rel.endswith(".png")
            assert (demo_dir / "images" / rel).is_file()
            per_label[label] = per_label.get(label, 0) + 1
            seen.add(rel)
        assert per_label == {lab: counts[split] for lab in range(len(world.CLASSES))}
        labels = [r[1] for r in rows]
        assert labels == sorted(labels)  # class by class, in label order
    assert len(seen) == sum(counts.values()) * len(world.CLASSES)  # no file in two splits
    with Image.open(demo_dir / "images" / rows[0][0]) as im:
        assert im.size == (64, 64) and im.mode == "RGB"


def test_written_files_are_byte_identical_to_a_fresh_rendering(demo_dir, tmp_path):
    # re-write a sample of the files the way the generator does and compare bytes
    obj = json.loads((demo_dir / "split_zhou_Demo.json").read_text())
    for split, rows in obj.items():
        for k in range(0, len(rows), 97):
            rel, label, _ = rows[k]
            i = k - rows.index(next(r for r in rows if r[1] == label))
            arr = world.render(world.CLASSES[label], world.image_rng(world.SPLIT_IDS[split], label, i), "demo")
            out = tmp_path / "x.png"
            Image.fromarray(arr, "RGB").save(out, format="PNG", optimize=False, compress_level=6)
            assert out.read_bytes() == (demo_dir / "images" / rel).read_bytes(), rel


def test_second_call_reuses_the_folder_and_a_stale_one_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(world, "N_TRAIN", 2)
    monkeypatch.setattr(world, "N_VAL", 1)
    monkeypatch.setattr(world, "N_TEST", 1)
    d = world.ensure_demo_dataset(tmp_path)
    assert d == tmp_path / "demo"
    stamp = (d / "split_zhou_Demo.json").stat().st_mtime_ns
    assert world.ensure_demo_dataset(tmp_path) == d
    assert (d / "split_zhou_Demo.json").stat().st_mtime_ns == stamp
    (d / "WORLD_VERSION").write_text("0\n")          # written by another world version
    (d / "images" / "leftover.txt").write_text("x")
    assert world.ensure_demo_dataset(tmp_path) == d
    assert (d / "WORLD_VERSION").read_text().strip() == str(world.WORLD_VERSION)
    assert not (d / "images" / "leftover.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]  # no temp folders left behind


def test_default_location_follows_mmrl_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMRL_CACHE", str(tmp_path / "c"))
    assert world.default_demo_root() == tmp_path / "c"
    monkeypatch.delenv("MMRL_CACHE")
    assert world.default_demo_root() == Path.home() / ".cache" / "mmrl"


def test_demo_dataset_is_registered_and_builds_base_and_new(demo_dir, tmp_path):
    from mmrl.data.resources import text_template
    from mmrl.datasets import build_dataset, get_dataset_class
    assert get_dataset_class("Demo") is get_dataset_class("demo")
    assert text_template("Demo") == world.TEMPLATE
    root = str(demo_dir.parent)
    base = build_dataset("Demo", root, num_shots=16, seed=1, subsample="base", fewshot_dir=tmp_path)
    new = build_dataset("Demo", root, num_shots=16, seed=1, subsample="new", fewshot_dir=tmp_path)
    assert base.dataset_dir == str(demo_dir)
    assert base.classnames == world.CLASSNAMES[:16] and new.classnames == world.CLASSNAMES[16:]
    assert len(base.train_x) == 16 * 16 and len(base.val) == 16 * 4 and len(base.test) == 16 * world.N_TEST
    assert base.template == "a photo of a {}."


def test_demo_dataset_without_a_root_uses_the_cache(monkeypatch, tmp_path):
    from mmrl.datasets import get_dataset_class
    Demo = get_dataset_class("demo")  # the loader class with its spec's facts
    made = []
    monkeypatch.setattr(world, "ensure_demo_dataset", lambda root=None: made.append(root) or tmp_path / "demo")
    ds = Demo("")
    assert ds.resolve() == str(tmp_path / "demo") and made == [None]
    # a data root without demo/ is refused (never a silent switch to the cache) and not written to
    ds = Demo(str(tmp_path / "data"))
    with pytest.raises(DatasetError, match="Leave --root out"):
        ds.resolve()
    assert made == [None] and not (tmp_path / "data").exists()
    # a data root holding a demo/ folder with a split (not generated here) is used as is
    own = tmp_path / "mine" / "demo"
    own.mkdir(parents=True)
    (own / "split_zhou_Demo.json").write_text('{"train": [], "val": [], "test": []}')
    ds = Demo(str(tmp_path / "mine"))
    assert ds.resolve() == str(own) and len(made) == 1
    assert os.path.basename(ds.dataset_dir) == "demo"
