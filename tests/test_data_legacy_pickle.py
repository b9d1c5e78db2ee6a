import os
import pickle

import pytest

from fixtures_data import fake_dassl, write_reference_pickle
from mmrl.data.items import Item
from mmrl.data.legacy_pickle import load_legacy_items, load_legacy_pickle, reroot
from mmrl.errors import DatasetError


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_reads_reference_datum_and_reroots(tmp_path, protocol):
    old = "/home/someone/data/eurosat/2750/Forest/Forest_1.jpg"
    path = tmp_path / "shot_1-seed_1.pkl"
    write_reference_pickle(path, {"train": [Item(old, 1, "Forest")], "val": []}, protocol=protocol)
    out = load_legacy_items(path, str(tmp_path / "eurosat"), "eurosat")
    assert out["train"] == [Item(str(tmp_path / "eurosat" / "2750/Forest/Forest_1.jpg"), 1, "Forest", 0)]
    assert out["val"] == []


def test_reroot_rules():
    assert reroot("/a/eurosat/x/eurosat/2750/f.jpg", "/new/eurosat", "eurosat") == "/new/eurosat/2750/f.jpg"
    assert reroot("/new/eurosat/2750/f.jpg", "/new/eurosat", "eurosat") == "/new/eurosat/2750/f.jpg"
    assert reroot("/elsewhere/f.jpg", "/new/eurosat", "eurosat") == "/elsewhere/f.jpg"


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("1+1",))


@pytest.mark.parametrize("payload", [_Evil(), _EvalEvil(), {"train": [len]}])
def test_refuses_other_globals(tmp_path, payload):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(DatasetError) as e:
        load_legacy_pickle(path)
    assert "refusing to load global" in str(e.value) and str(path) in str(e.value)


def test_rejects_non_datum_content(tmp_path):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"train": [1, 2]}))
    with pytest.raises(DatasetError, match="not a list of Dassl Datum"):
        load_legacy_items(path, str(tmp_path), "x")


def test_fake_dassl_is_removed_afterwards():
    import sys
    name = "dassl.data.datasets.base_dataset"
    before = sys.modules.get(name)  # the real Dassl's, when the Dassl integration tests imported it
    with fake_dassl() as Datum:
        assert sys.modules[name].Datum is Datum
    assert sys.modules.get(name) is before
