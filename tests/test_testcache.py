"""The uint8 test-image cache yields exactly the normal loader's batches and is reused,
invalidated and disabled as documented."""
import json
import logging
from dataclasses import replace

import pytest
import torch

from mmrl.data import loaders, testcache
from mmrl.data.testcache import build_cached_test_loader, prepare_test_cache, resolve_cache_dir
from mmrl.data.transforms import build_test_transform, build_train_transform
from mmrl.datasets import build_dataset
from mmrl.datatools.synthetic import write_synthetic_dataset
from fixtures_data import mmrl_cfg


@pytest.fixture(scope="module")
def eurosat(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    # 64x64 like the real EuroSAT, and one odd size to exercise the crop
    write_synthetic_dataset("eurosat", root, n_classes=3, n_per_class=6, image_size=(64, 64))
    data = build_dataset("EuroSAT", root)
    return data


@pytest.fixture
def decodes(monkeypatch):
    """Counts image decodes done through the data pipeline."""
    count = {"n": 0}
    real = loaders.read_image

    def counting(path):
        count["n"] += 1
        return real(path)
    monkeypatch.setattr(loaders, "read_image", counting)
    return count


def cfg_with(cache_dir, batch=4):
    cfg = mmrl_cfg()
    cfg.TEST.CACHE_DIR = str(cache_dir)
    cfg.DATALOADER.TEST.BATCH_SIZE = batch
    return cfg


def batches(loader):
    return list(loader)


def assert_same_batches(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert set(x) == set(y)
        # stored uint8 after resize+crop: ToTensor/Normalize on the same bytes is bit-identical
        assert torch.equal(x["img"], y["img"]), (x["img"] - y["img"]).abs().max()
        for k in ("label", "domain", "index"):
            assert torch.equal(x[k], y[k])
        assert list(x["impath"]) == list(y["impath"])


def test_cached_batches_equal_normal_path(eurosat, tmp_path, decodes):
    cfg = cfg_with(tmp_path / "cache")
    tf = build_test_transform(cfg)
    normal = batches(loaders.build_test_loader(cfg, eurosat.test, tf))
    cached_loader = build_cached_test_loader(cfg, eurosat.test, tf, name="EuroSAT", dataset_dir=eurosat.dataset_dir)
    assert isinstance(cached_loader.dataset, testcache.CachedTestDataset)
    assert_same_batches(batches(cached_loader), normal)
    files = sorted(p.name for p in (tmp_path / "cache" / "EuroSAT").iterdir())
    assert [f for f in files if f.endswith(".tmp")] == []
    header = json.loads(next((tmp_path / "cache" / "EuroSAT").glob("*.json")).read_text())
    assert header["shape"] == [len(eurosat.test), 3, 224, 224] and header["dtype"] == "uint8"


def test_second_build_reuses_without_decoding(eurosat, tmp_path, decodes):
    cfg = cfg_with(tmp_path)
    tf = build_test_transform(cfg)
    first = build_cached_test_loader(cfg, eurosat.test, tf, name="EuroSAT")
    assert decodes["n"] == len(eurosat.test)
    want = batches(first)
    decodes["n"] = 0
    second = build_cached_test_loader(cfg, eurosat.test, tf, name="EuroSAT")
    got = batches(second)
    assert decodes["n"] == 0
    assert_same_batches(got, want)


def test_changed_split_or_transform_invalidates(eurosat, tmp_path, decodes):
    cfg = cfg_with(tmp_path)
    tf = build_test_transform(cfg)
    a = prepare_test_cache(eurosat.test, tf, tmp_path, name="EuroSAT")
    assert a.built
    fewer = prepare_test_cache(eurosat.test[:-1], tf, tmp_path, name="EuroSAT")
    relabelled = [replace(eurosat.test[0], label=eurosat.test[0].label + 1), *eurosat.test[1:]]
    b = prepare_test_cache(relabelled, tf, tmp_path, name="EuroSAT")
    cfg.INPUT.INTERPOLATION = "bilinear"
    c = prepare_test_cache(eurosat.test, build_test_transform(cfg), tmp_path, name="EuroSAT")
    assert fewer.built and b.built and c.built
    assert len({a.data_path, fewer.data_path, b.data_path, c.data_path}) == 4
    assert not prepare_test_cache(eurosat.test, tf, tmp_path, name="EuroSAT").built


def test_truncated_cache_is_rebuilt(eurosat, tmp_path):
    tf = build_test_transform(cfg_with(tmp_path))
    a = prepare_test_cache(eurosat.test, tf, tmp_path, name="x")
    with open(a.data_path, "r+b") as fh:
        fh.truncate(100)
    b = prepare_test_cache(eurosat.test, tf, tmp_path, name="x")
    assert b.built and b.data_path.stat().st_size == len(eurosat.test) * 3 * 224 * 224


def test_disabled_with_none(eurosat, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("MMRL_CACHE", str(tmp_path / "envcache"))
    assert resolve_cache_dir("") == tmp_path / "envcache" / "testcache"
    assert resolve_cache_dir("None") is None
    cfg = cfg_with("none")
    with caplog.at_level(logging.INFO, logger="mmrl.data"):
        loader = build_cached_test_loader(cfg, eurosat.test, build_test_transform(cfg))
    assert isinstance(loader.dataset, loaders.ImageDataset)
    assert "disabled" in caplog.text
    assert not (tmp_path / "envcache").exists()


def test_short_disk_falls_back(eurosat, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(testcache.shutil, "disk_usage", lambda p: type("U", (), {"free": 10})())
    cfg = cfg_with(tmp_path)
    with caplog.at_level(logging.WARNING, logger="mmrl.data"):
        loader = build_cached_test_loader(cfg, eurosat.test, build_test_transform(cfg))
    assert isinstance(loader.dataset, loaders.ImageDataset)
    assert "skipped" in caplog.text
    assert not list(tmp_path.rglob("*.u8"))


def test_random_transform_is_not_cached(eurosat, tmp_path):
    cfg = cfg_with(tmp_path)
    assert prepare_test_cache(eurosat.test, build_train_transform(cfg), tmp_path) is None


def test_corrupt_image_substitution_matches_normal_path(eurosat, tmp_path):
    items = list(eurosat.test)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    items[1] = replace(items[1], impath=str(bad))
    cfg = cfg_with(tmp_path / "cache")
    cfg.DATASET.SKIP_CORRUPT = True
    tf = build_test_transform(cfg)
    normal = batches(loaders.build_test_loader(cfg, items, tf))
    cached = build_cached_test_loader(cfg, items, tf)
    assert isinstance(cached.dataset, testcache.CachedTestDataset)
    assert_same_batches(batches(cached), normal)
    cfg.DATASET.SKIP_CORRUPT = False  # the substituted cache must not hide the broken file
    from mmrl.errors import DatasetError
    with pytest.raises(DatasetError):
        batches(build_cached_test_loader(cfg, items, tf))


def _copy_dataset(data, dest):
    """The same layout under another root; returns build_dataset's view of it."""
    import shutil
    shutil.copytree(data.dataset_dir, dest / "eurosat")
    return build_dataset("EuroSAT", dest)


def test_overwritten_images_rebuild_the_cache_and_the_log_says_why(eurosat, tmp_path, caplog):
    from PIL import Image
    data = _copy_dataset(eurosat, tmp_path / "data")
    cfg = cfg_with(tmp_path / "cache")
    tf = build_test_transform(cfg)
    before = batches(build_cached_test_loader(cfg, data.test, tf, name="EuroSAT", dataset_dir=data.dataset_dir))
    for k, it in enumerate(data.test):  # every test image overwritten, same names
        Image.new("RGB", (64, 64), (k * 9 % 256, 200, 30)).save(it.impath)
    caplog.set_level(logging.INFO, logger="mmrl.data")
    loader = build_cached_test_loader(cfg, data.test, tf, name="EuroSAT", dataset_dir=data.dataset_dir)
    after = batches(loader)
    assert_same_batches(after, batches(loaders.build_test_loader(cfg, data.test, tf)))
    assert not torch.equal(after[0]["img"], before[0]["img"])
    n = len(data.test)
    assert f"images changed: {n} of {n} files differ" in caplog.text
    caplog.clear()
    assert not prepare_test_cache(data.test, tf, tmp_path / "cache", name="EuroSAT",
                                  dataset_dir=data.dataset_dir).built
    assert "images changed" not in caplog.text


def test_two_roots_with_one_layout_do_not_share_a_cache(eurosat, tmp_path):
    a = _copy_dataset(eurosat, tmp_path / "a")
    b = _copy_dataset(eurosat, tmp_path / "b")
    tf = build_test_transform(cfg_with(tmp_path))
    ca = prepare_test_cache(a.test, tf, tmp_path / "cache", name="EuroSAT", dataset_dir=a.dataset_dir)
    cb = prepare_test_cache(b.test, tf, tmp_path / "cache", name="EuroSAT", dataset_dir=b.dataset_dir)
    assert ca.built and cb.built and ca.data_path != cb.data_path
    # the same files reached through another path (a symlink) are the same cache
    (tmp_path / "link").symlink_to(tmp_path / "a")
    via = build_dataset("EuroSAT", tmp_path / "link")
    again = prepare_test_cache(via.test, tf, tmp_path / "cache", name="EuroSAT", dataset_dir=via.dataset_dir)
    assert not again.built and again.data_path == ca.data_path


def test_first_build_logs_its_reason(eurosat, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mmrl.data")
    tf = build_test_transform(cfg_with(tmp_path))
    prepare_test_cache(eurosat.test, tf, tmp_path, name="x", dataset_dir=eurosat.dataset_dir)
    assert "(no cache yet)" in caplog.text
