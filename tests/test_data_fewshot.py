import json
import logging
import random

import pytest

from fixtures_data import items, stems
from mmrl.data.items import Item
from mmrl.data.fewshot import default_fewshot_dir, fewshot_path, generate_fewshot, load_or_create_fewshot
from mmrl.errors import DatasetError


def _train_val():
    train = items("c0", 0, 10) + items("c1", 1, 10) + items("c2", 2, 3)
    val = items("v0", 0, 5) + items("v1", 1, 5) + items("v2", 2, 5)
    return train, val


def test_spec_vector_train_then_val_same_stream():
    train, val = _train_val()
    random.seed(1)
    out = generate_fewshot(train, 4)
    assert stems(out) == ["c0_02", "c0_01", "c0_04", "c0_00", "c1_07", "c1_09", "c1_08", "c1_05",
                          "c2_00", "c2_01", "c2_02"]
    out_val = generate_fewshot(val, 4)
    assert stems(out_val) == ["v0_03", "v0_01", "v0_00", "v0_04", "v1_00", "v1_03", "v1_01", "v1_04",
                              "v2_03", "v2_02", "v2_04", "v2_00"]


def test_spec_vector_large_population():
    pop = [Item(f"/d/img{i:04d}", 0, "a") for i in range(1300)]
    random.seed(2)
    assert stems(generate_fewshot(pop, 16)) == [
        "img0115", "img0187", "img0173", "img0739", "img0346", "img0631", "img0515", "img1240",
        "img0434", "img1242", "img0073", "img1190", "img0324", "img0882", "img0805", "img1042"]


def test_spec_vector_shuffle():
    random.seed(1)
    lst = list(range(10))
    random.shuffle(lst)
    assert lst == [6, 8, 9, 7, 5, 3, 0, 4, 1, 2]


def test_tracker_order_not_sorted():
    # class 2 appears first: it must be sampled first (and be first in the output)
    lst = items("c2", 2, 6) + items("c0", 0, 6)
    random.seed(3)
    out = generate_fewshot(lst, 2)
    assert [it.label for it in out] == [2, 2, 0, 0]
    random.seed(3)
    expect = random.sample(lst[:6], 2) + random.sample(lst[6:], 2)
    assert out == expect


def test_short_class_keeps_all_and_warns(caplog):
    lst = items("a", 0, 2) + items("b", 1, 5)
    random.seed(0)
    with caplog.at_level(logging.WARNING, logger="mmrl.data"):
        out = generate_fewshot(lst, 4)
    assert stems(out)[:2] == ["a_00", "a_01"]
    assert len(out) == 6
    assert any("fewer than 4" in r.getMessage() and "class0" in r.getMessage() for r in caplog.records)


def test_k_below_one_is_identity():
    lst = items("a", 0, 3)
    state = random.getstate()
    assert generate_fewshot(lst, -1) == lst
    assert random.getstate() == state


def _files(tmp_path, train, val):
    for it in [*train, *val]:
        p = tmp_path / "ds" / it.impath.split("/ds/")[1]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def _ds_items(tmp_path):
    root = str(tmp_path / "ds" / "img")
    train = items("c0", 0, 10, root=root) + items("c1", 1, 10, root=root)
    val = items("v0", 0, 6, root=root) + items("v1", 1, 6, root=root)
    _files(tmp_path, train, val)
    return train, val


def _call(tmp_path, train, val, **kw):
    args = dict(name="Toy", stem="toy", folder="ds", dataset_dir=str(tmp_path / "ds"), train=train, val=val,
                num_shots=4, seed=7, fewshot_dir=tmp_path / "fs")
    args.update(kw)
    return load_or_create_fewshot(**args)


def test_store_relative_json_then_reuse_without_rng(tmp_path):
    train, val = _ds_items(tmp_path)
    random.seed(7)
    ftrain, fval = _call(tmp_path, train, val)
    random.seed(7)
    assert ftrain == generate_fewshot(train, 4) and fval == generate_fewshot(val, 4)
    path = tmp_path / "fs" / "toy" / "shot_4-seed_7.json"
    rec = json.loads(path.read_text())
    assert rec["train"][0].startswith("img/c") and not rec["train"][0].startswith("/")
    assert len(rec["val"]) == 8
    text = path.read_text()
    random.seed(123)
    state = random.getstate()
    again = _call(tmp_path, train, val)
    assert again == (ftrain, fval)
    assert random.getstate() == state          # reuse consumes no RNG
    assert path.read_text() == text            # never rewritten


def test_val_uses_min_k_4(tmp_path):
    train, val = _ds_items(tmp_path)
    random.seed(1)
    ftrain, fval = _call(tmp_path, train, val, num_shots=8)
    assert len(ftrain) == 16 and len(fval) == 8


def test_sample_val_false_keeps_val(tmp_path):
    train, val = _ds_items(tmp_path)
    random.seed(1)
    ftrain, fval = _call(tmp_path, train, val, sample_val=False)
    assert len(ftrain) == 8 and fval == val


def test_stale_json_missing_image(tmp_path):
    train, val = _ds_items(tmp_path)
    random.seed(1)
    ftrain, _ = _call(tmp_path, train, val)
    (tmp_path / "ds" / ftrain[0].impath.split("/ds/")[1]).unlink()
    with pytest.raises(DatasetError) as e:
        _call(tmp_path, train, val)
    msg = str(e.value)
    assert "shot_4-seed_7.json" in msg and "no longer exist" in msg and "delete" in msg


def test_stale_json_not_in_split(tmp_path):
    train, val = _ds_items(tmp_path)
    random.seed(1)
    ftrain, _ = _call(tmp_path, train, val)
    smaller = [it for it in train if it != ftrain[0]]
    with pytest.raises(DatasetError, match="not in the current train split"):
        _call(tmp_path, smaller, val)


def test_default_dir_honours_mmrl_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("MMRL_CACHE", str(tmp_path / "c"))
    assert default_fewshot_dir() == tmp_path / "c" / "fewshot"
    assert fewshot_path(None, "eurosat", 16, -1) == tmp_path / "c" / "fewshot" / "eurosat" / "shot_16-seed_-1.json"
    monkeypatch.delenv("MMRL_CACHE")
    assert str(default_fewshot_dir()).endswith(".cache/mmrl/fewshot")


def test_stored_file_for_another_draw_or_edited_is_refused(tmp_path):
    train, val = _ds_items(tmp_path)
    random.seed(1)
    _call(tmp_path, train, val)
    path = tmp_path / "fs" / "toy" / "shot_4-seed_7.json"
    rec = json.loads(path.read_text())
    # a 2-shot file copied over the 4-shot name
    path.write_text(json.dumps({**rec, "num_shots": 2}))
    with pytest.raises(DatasetError, match=r"shot_4-seed_7.json is stale: it was drawn for \{'num_shots': 2\}"):
        _call(tmp_path, train, val)
    # an edited list: one class short, or an image twice
    path.write_text(json.dumps({**rec, "train": rec["train"][:-1]}))
    with pytest.raises(DatasetError, match="wrong number of images for 4 shots"):
        _call(tmp_path, train, val)
    path.write_text(json.dumps({**rec, "train": rec["train"][:-1] + rec["train"][:1]}))
    with pytest.raises(DatasetError, match="names an image twice"):
        _call(tmp_path, train, val)
    path.write_bytes(b"\xff\xfe not text")
    with pytest.raises(DatasetError, match="cannot be read as JSON"):
        _call(tmp_path, train, val)


def test_stored_file_of_a_split_that_changed_since_is_refused(tmp_path):
    """Images added to the train split (or reordered): the stored subset still passes the per-image
    checks, but it is not what the sampler draws for this seed on the current split."""
    train, val = _ds_items(tmp_path)
    random.seed(7)
    stored, _ = _call(tmp_path, train, val)
    more = str(tmp_path / "ds" / "img2")
    grown = train + items("c0", 0, 2, root=more) + items("c1", 1, 2, root=more)
    _files(tmp_path, grown, val)
    for changed in (grown, list(reversed(train))):
        random.seed(7)
        assert generate_fewshot(changed, 4) != stored  # what a fresh draw gives
        with pytest.raises(DatasetError, match=r"shot_4-seed_7.json is stale: the train split .* changed"):
            _call(tmp_path, changed, val)
    assert _call(tmp_path, train, val)[0] == stored  # the split it was drawn from: still read
