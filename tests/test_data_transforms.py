import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

from fixtures_data import mmrl_cfg
from mmrl.data.transforms import build_test_transform, build_train_transform
from mmrl.errors import ConfigError

MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def _messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "mmrl.data"]


def test_train_transform_lines_and_order(caplog):
    with caplog.at_level(logging.INFO, logger="mmrl.data"):
        tf = build_train_transform(mmrl_cfg())
    assert _messages(caplog) == [
        "Building transform_train",
        "+ random resized crop (size=(224, 224), scale=(0.5, 1))",
        "+ random flip",
        "+ to torch tensor of range [0, 1]",
        f"+ normalization (mean={MEAN}, std={STD})",
    ]
    kinds = [type(t) for t in tf.transforms]
    assert kinds == [T.RandomResizedCrop, T.RandomHorizontalFlip, T.ToTensor, T.Normalize]
    rrc = tf.transforms[0]
    assert rrc.size == (224, 224) and rrc.scale == (0.5, 1.0) and rrc.interpolation == InterpolationMode.BICUBIC


def test_test_transform_lines_and_geometry(caplog):
    with caplog.at_level(logging.INFO, logger="mmrl.data"):
        tf = build_test_transform(mmrl_cfg())
    assert _messages(caplog) == [
        "Building transform_test", "+ resize the smaller edge to 224", "+ 224x224 center crop",
        "+ to torch tensor of range [0, 1]", f"+ normalization (mean={MEAN}, std={STD})"]
    resize = tf.transforms[0]
    assert resize.size == 224 and resize.interpolation == InterpolationMode.BICUBIC
    # a wide image: left half red, right half blue -> the center crop keeps both halves equally
    arr = np.zeros((50, 100, 3), dtype=np.uint8)
    arr[:, :50, 0] = 255
    arr[:, 50:, 2] = 255
    out = tf(Image.fromarray(arr))
    assert out.shape == (3, 224, 224)
    red = (1.0 - MEAN[0]) / STD[0]
    assert out[0, 112, 10].item() == pytest.approx(red, abs=1e-4)
    assert out[2, 112, 213].item() == pytest.approx((1.0 - MEAN[2]) / STD[2], abs=1e-4)


def test_train_output_normalised_constant_image():
    torch.manual_seed(0)
    tf = build_train_transform(mmrl_cfg())
    out = tf(Image.new("RGB", (40, 30), (255, 0, 0)))
    assert out.shape == (3, 224, 224)
    assert torch.allclose(out[0], torch.full((224, 224), (1 - MEAN[0]) / STD[0]), atol=1e-4)
    assert torch.allclose(out[1], torch.full((224, 224), -MEAN[1] / STD[1]), atol=1e-4)


def test_without_random_crop_resizes_and_without_normalize_skips_it(caplog):
    cfg = mmrl_cfg(TRANSFORMS=["random_flip"], SIZE=(32, 32))
    with caplog.at_level(logging.INFO, logger="mmrl.data"):
        tf = build_train_transform(cfg)
    assert "+ resize to (32, 32)" in _messages(caplog)
    assert [type(t) for t in tf.transforms] == [T.Resize, T.RandomHorizontalFlip, T.ToTensor]


def test_unsupported_transform_and_interpolation():
    with pytest.raises(ConfigError, match="colorjitter"):
        build_train_transform(mmrl_cfg(TRANSFORMS=["colorjitter"]))
    with pytest.raises(ConfigError, match="INTERPOLATION"):
        build_test_transform(mmrl_cfg(INTERPOLATION="lanczos"))
