"""build_dataset end to end: few-shot store, reference pickles, base/new, logs, errors."""
import json
import logging
import random

import pytest

from fixtures_data import write_reference_pickle
from mmrl.data.fewshot import generate_fewshot
from mmrl.data.items import Item
from mmrl.data.splits import read_split, split_folders
from mmrl.datasets import build_dataset
from mmrl.datatools.synthetic import write_synthetic_dataset
from mmrl.errors import DatasetError


@pytest.fixture
def eurosat(tmp_path):
    return write_synthetic_dataset("eurosat", tmp_path / "data")


def _build(eurosat, seed=1, **kw):
    kw.setdefault("fewshot_dir", eurosat.parent.parent / "fs")
    return build_dataset("EuroSAT", eurosat.parent, num_shots=kw.pop("num_shots", 16), seed=seed, **kw)


def test_fewshot_matches_reference_draw_on_fresh_rng(eurosat):
    random.seed(1)
    data = _build(eurosat)
    train, val, test = read_split(eurosat / "split_zhou_EuroSAT.json", str(eurosat / "2750"))
    random.seed(1)
    assert data.train_x == generate_fewshot(train, 16)
    assert data.val == generate_fewshot(val, 4)
    assert data.test == test and len(data.train_x) == 160 and len(data.val) == 40
    stored = json.loads((eurosat.parent.parent / "fs" / "eurosat" / "shot_16-seed_1.json").read_text())
    assert stored["train"] == [data.relpath(it) for it in data.train_x]
    assert stored["train"][0].startswith("2750/")
    random.seed(999)        # a later run, whatever its RNG state, reuses the stored subset
    assert _build(eurosat).train_x == data.train_x


def test_base_new_are_halves_of_the_same_draw(eurosat):
    random.seed(2)
    full = _build(eurosat, seed=2)
    random.seed(2)
    base = _build(eurosat, seed=2, subsample="base")
    new = _build(eurosat, seed=2, subsample="new")
    assert base.classnames == full.classnames[:5] and new.classnames == full.classnames[5:]
    assert base.num_classes == new.num_classes == 5
    assert [it.impath for it in base.train_x] + [it.impath for it in new.train_x] == [it.impath for it in full.train_x]
    assert {it.label for it in new.test} == set(range(5))
    assert all(new.lab2cname[it.label] == it.classname for it in new.test)


def test_generated_split_consumes_rng_before_fewshot(tmp_path):
    ddir = write_synthetic_dataset("eurosat", tmp_path, with_split_json=False)
    random.seed(4)
    from mmrl.datasets.eurosat import EuroSAT
    tr, _, _ = split_folders(str(ddir / "2750"), renames=EuroSAT.SPLIT_RENAMES)
    expect = generate_fewshot(tr, 2)
    random.seed(4)
    data = build_dataset("EuroSAT", tmp_path, num_shots=2, seed=4, fewshot_dir=tmp_path / "fs")
    assert data.train_x == expect


def test_reference_fewshot_pickle_is_used_and_rerooted(eurosat, tmp_path):
    random.seed(1)
    draw = build_dataset("EuroSAT", eurosat.parent, num_shots=1, seed=1, fewshot_dir=tmp_path / "other")
    # the reference's cache: other images (the last of each class), absolute paths on another machine
    chosen = [Item(f"/old/machine/eurosat/2750/{it.impath.split('/')[-2]}/{it.impath.split('/')[-2]}_32.jpg",
                   it.label, it.classname) for it in draw.train_x]
    val = [Item("/old/machine/eurosat/2750/River/River_7.jpg", 8, "River")]
    write_reference_pickle(eurosat / "split_fewshot" / "shot_1-seed_1.pkl", {"train": chosen, "val": val})
    random.seed(1)
    state = random.getstate()
    data = build_dataset("EuroSAT", eurosat.parent, num_shots=1, seed=1, fewshot_dir=tmp_path / "fs")
    assert [data.relpath(it) for it in data.train_x] == [c.impath.split("/eurosat/")[1] for c in chosen]
    assert data.train_x != draw.train_x and data.classnames == draw.classnames
    assert data.val == [Item(str(eurosat / "2750/River/River_7.jpg"), 8, "River")]
    assert random.getstate() == state
    assert not (tmp_path / "fs").exists()


def test_reference_pickle_with_missing_images(eurosat, tmp_path):
    write_reference_pickle(eurosat / "split_fewshot" / "shot_1-seed_1.pkl",
                           {"train": [Item("/old/eurosat/2750/Forest/Nope.jpg", 1, "Forest")], "val": []})
    with pytest.raises(DatasetError, match="shot_1-seed_1.pkl"):
        build_dataset("EuroSAT", eurosat.parent, num_shots=1, seed=1, fewshot_dir=tmp_path / "fs")


def test_imagenet_preprocessed_pickle(tmp_path):
    ddir = write_synthetic_dataset("imagenet", tmp_path, n_per_class=4)
    fresh = build_dataset("ImageNet", tmp_path)
    moved = lambda lst: [Item(it.impath.replace(str(tmp_path), "/elsewhere"), it.label, it.classname)
                         for it in reversed(lst)]
    write_reference_pickle(ddir / "preprocessed.pkl", {"train": moved(fresh.train_x), "test": moved(fresh.test)})
    data = build_dataset("ImageNet", tmp_path)
    assert data.train_x == list(reversed(fresh.train_x)) and data.test == list(reversed(fresh.test))


def test_stale_fewshot_json(eurosat):
    random.seed(1)
    data = _build(eurosat, num_shots=2)
    victim = data.train_x[0]
    split = eurosat / "split_zhou_EuroSAT.json"
    obj = json.loads(split.read_text())
    obj["train"] = [e for e in obj["train"] if e[0] != data.relpath(victim).split("/", 1)[1]]
    split.write_text(json.dumps(obj))
    with pytest.raises(DatasetError, match="not in the current train split"):
        _build(eurosat, num_shots=2)
    import os
    os.unlink(victim.impath)
    with pytest.raises(DatasetError) as e:
        _build(eurosat, num_shots=2)
    assert "shot_2-seed_1.json" in str(e.value) and "delete it" in str(e.value)


def test_dassl_log_lines(eurosat, caplog):
    random.seed(1)
    with caplog.at_level(logging.INFO, logger="mmrl.data"):
        _build(eurosat, subsample="base")
    msgs = [r.getMessage() for r in caplog.records if r.name == "mmrl.data"]
    fs = eurosat.parent.parent / "fs" / "eurosat" / "shot_16-seed_1.json"
    assert msgs == [f"Reading split from {eurosat / 'split_zhou_EuroSAT.json'}", "Creating a 16-shot dataset",
                    "Creating a 4-shot dataset", f"Saving preprocessed few-shot data to {fs}",
                    "SUBSAMPLE BASE CLASSES!"]


def test_generating_split_warns_and_logs(tmp_path, caplog):
    write_synthetic_dataset("dtd", tmp_path, with_split_json=False)
    random.seed(0)
    with caplog.at_level(logging.INFO, logger="mmrl.data"):
        build_dataset("DescribableTextures", tmp_path)
    assert any(r.levelno == logging.WARNING and "will NOT match the published split" in r.getMessage()
               for r in caplog.records)
    assert "Splitting into 50% train, 20% val, and 30% test" in caplog.text
    assert f"Saved split to {tmp_path / 'dtd' / 'split_zhou_DescribableTextures.json'}" in caplog.text


def test_unseeded_fewshot_file_name(eurosat):
    _build(eurosat, seed=-1, num_shots=1)
    assert (eurosat.parent.parent / "fs" / "eurosat" / "shot_1-seed_-1.json").is_file()


# -- errors ---------------------------------------------------------------------------------------

def test_missing_dataset_folder_names_prepare_command(tmp_path):
    with pytest.raises(DatasetError) as e:
        build_dataset("oxford_pets", tmp_path / "nowhere")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "oxford_pets") in msg
    assert f"mmrl data prepare oxford_pets --root {tmp_path / 'nowhere'}" in msg


def test_wrong_layout_names_expected_folder(tmp_path):
    ddir = write_synthetic_dataset("eurosat", tmp_path)
    (ddir / "2750").rename(ddir / "EuroSAT_RGB")
    with pytest.raises(DatasetError, match="wrong layout") as e:
        build_dataset("EuroSAT", tmp_path)
    assert str(ddir / "2750") in str(e.value)


def test_split_referencing_missing_image(tmp_path):
    ddir = write_synthetic_dataset("dtd", tmp_path)
    (ddir / "images" / "banded" / "banded_0003.jpg").unlink()
    with pytest.raises(DatasetError) as e:
        build_dataset("dtd", tmp_path)
    assert "banded_0003.jpg" in str(e.value) and "split_zhou_DescribableTextures.json" in str(e.value)


def test_empty_split(tmp_path):
    ddir = write_synthetic_dataset("dtd", tmp_path, n_classes=2, n_per_class=4)
    (ddir / "split_zhou_DescribableTextures.json").write_text('{"train": [], "val": [], "test": []}')
    with pytest.raises(DatasetError, match="test split is empty"):
        build_dataset("dtd", tmp_path)


def test_generation_needs_raw_annotation_files(tmp_path):
    ddir = write_synthetic_dataset("oxford_pets", tmp_path, with_split_json=False)
    (ddir / "annotations" / "trainval.txt").unlink()
    with pytest.raises(DatasetError) as e:
        build_dataset("OxfordPets", tmp_path)
    assert "annotations/trainval.txt" in str(e.value) and "split_zhou_OxfordPets.json" in str(e.value)


def test_aircraft_unknown_variant(tmp_path):
    ddir = write_synthetic_dataset("fgvc_aircraft", tmp_path, n_per_class=4)
    with open(ddir / "images_variant_val.txt", "a") as f:
        f.write("1234567 Concorde\n")
    with pytest.raises(DatasetError, match=r"images_variant_val.txt:\d+: variant 'Concorde'"):
        build_dataset("FGVCAircraft", tmp_path)


def test_reference_pickle_for_another_k_is_refused(eurosat, tmp_path):
    random.seed(1)
    two = build_dataset("EuroSAT", eurosat.parent, num_shots=2, seed=1, fewshot_dir=tmp_path / "other")
    write_reference_pickle(eurosat / "split_fewshot" / "shot_1-seed_1.pkl", {"train": two.train_x, "val": []})
    try:
        with pytest.raises(DatasetError, match=r"shot_1-seed_1.pkl: .*wrong number of images for 1 shots.*Move the"):
            build_dataset("EuroSAT", eurosat.parent, num_shots=1, seed=1, fewshot_dir=tmp_path / "fs")
    finally:
        (eurosat / "split_fewshot" / "shot_1-seed_1.pkl").unlink()
