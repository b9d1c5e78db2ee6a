import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import RandomSampler, SequentialSampler

from fixtures_data import mmrl_cfg
from mmrl.data.items import Item
from mmrl.data.loaders import ImageDataset, build_test_loader, build_train_loader, read_image
from mmrl.errors import DatasetError


def _img(path, mode="RGB", colour=(10, 200, 30)):
    arr = np.zeros((8, 8, 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
    img = Image.fromarray(arr)
    img = img.convert(mode) if mode != "RGB" else img
    img.save(path)
    return path


def _items(tmp_path, n):
    return [Item(str(_img(tmp_path / f"{i}.png", colour=(i, 0, 0))), i % 3, f"c{i % 3}") for i in range(n)]


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK"])
def test_decode_converts_to_rgb(tmp_path, mode):
    ext = "jpg" if mode == "CMYK" else "png"
    img = read_image(str(_img(tmp_path / f"x.{ext}", mode)))
    assert img.mode == "RGB" and img.size == (8, 8)


def test_sample_dict(tmp_path):
    its = _items(tmp_path, 3)
    ds = ImageDataset(its, lambda im: torch.tensor(np.asarray(im)[0, 0, 0]))
    s = ds[2]
    assert set(s) == {"img", "label", "domain", "impath", "index"}
    assert (s["label"], s["domain"], s["impath"], s["index"], int(s["img"])) == (2, 0, its[2].impath, 2, 2)


def _corrupt(tmp_path):
    good = _img(tmp_path / "good.jpg")
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(good.read_bytes()[:60])
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"not an image at all")
    return good, truncated, garbage


def test_corrupt_images_name_the_file(tmp_path):
    good, truncated, garbage = _corrupt(tmp_path)
    for bad in (truncated, garbage):
        with pytest.raises(DatasetError) as e:
            ImageDataset([Item(str(bad), 0, "a")])[0]
        assert str(bad) in str(e.value) and "SKIP_CORRUPT" in str(e.value)
    with pytest.raises(DatasetError, match="Image not found"):
        read_image(str(tmp_path / "missing.jpg"))


def test_skip_corrupt_substitutes_next_readable(tmp_path, caplog):
    good, truncated, garbage = _corrupt(tmp_path)
    ds = ImageDataset([Item(str(truncated), 0, "a"), Item(str(garbage), 1, "b"), Item(str(good), 2, "c")],
                      skip_corrupt=True)
    with caplog.at_level(logging.WARNING, logger="mmrl.data"):
        s = ds[0]
    assert (s["impath"], s["label"], s["index"]) == (str(good), 2, 2)
    assert str(truncated) in caplog.text and str(garbage) in caplog.text
    with pytest.raises(DatasetError, match="No readable image"):
        ImageDataset([Item(str(garbage), 0, "a")], skip_corrupt=True)[0]


def test_skip_corrupt_via_cfg_in_loader(tmp_path):
    good, truncated, _ = _corrupt(tmp_path)
    cfg = mmrl_cfg()
    cfg.DATASET.SKIP_CORRUPT = True
    loader = build_test_loader(cfg, [Item(str(truncated), 0, "a"), Item(str(good), 1, "b")], None)
    assert loader.dataset.skip_corrupt


def test_train_loader_drop_last_rule_and_sampler(tmp_path):
    cfg = mmrl_cfg()
    its = _items(tmp_path, 10)
    loader = build_train_loader(cfg, its, None)
    assert isinstance(loader.sampler, RandomSampler) and loader.drop_last and len(loader) == 2   # 10 // 4
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 32
    small = build_train_loader(cfg, its, None)
    assert not small.drop_last and len(small) == 1    # one short batch of 10
    assert loader.num_workers == 0 and not loader.pin_memory


def test_test_loader_sequential_no_drop(tmp_path):
    cfg = mmrl_cfg()
    cfg.DATALOADER.TEST.BATCH_SIZE = 4
    cfg.DATALOADER.NUM_WORKERS = 2
    its = _items(tmp_path, 10)
    from mmrl.data.transforms import build_test_transform
    loader = build_test_loader(cfg, its, build_test_transform(mmrl_cfg(SIZE=(16, 16))), num_workers=0)
    assert isinstance(loader.sampler, SequentialSampler) and not loader.drop_last and loader.num_workers == 0
    batches = list(loader)
    assert [len(b["label"]) for b in batches] == [4, 4, 2]
    assert batches[0]["img"].shape == (4, 3, 16, 16)
    assert torch.cat([b["index"] for b in batches]).tolist() == list(range(10))
    assert build_test_loader(cfg, its, None).num_workers == 2


def test_empty_list_is_an_error():
    with pytest.raises(DatasetError, match="empty"):
        build_train_loader(mmrl_cfg(), [], None)


def test_corrupt_image_error_type_survives_worker_processes(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"junk")
    with pytest.raises(DatasetError) as e:
        list(build_test_loader(mmrl_cfg(), [Item(str(bad), 0, "a")], None, num_workers=1))
    assert str(bad) in str(e.value)
