"""The shipped demo CLIP: small, loadable with weights_only, sane zero-shot accuracy."""
import pytest
import torch

from mmrl.clip import demo_weights as weights
from mmrl.demo import pretrain, world
from mmrl.errors import WeightsError


@pytest.fixture(scope="module")
def demo_clip():
    return weights.load_demo_clip()


def test_shipped_file_is_small_and_loads_with_weights_only():
    path = weights.demo_weights_path()
    assert path.is_file(), "mmrl/resources/demo_clip.pt must ship with the package"
    assert path.stat().st_size < 8 * 2**20
    obj = torch.load(str(path), map_location="cpu", weights_only=True)
    assert obj["arch"] == "demo-tiny" and obj["format"] == weights.FORMAT
    assert all(v.dtype == torch.float16 for v in obj["state_dict"].values() if v.is_floating_point())
    assert "token_embedding.weight" not in obj["state_dict"]
    assert obj["token_rows"].shape[0] == obj["token_ids"].numel() < 300


def test_loaded_model_is_fp32_eval_and_only_used_tokens_are_nonzero(demo_clip):
    from mmrl.clip.archs import TINY_ARCHS
    from open_clip.model import CLIP
    assert isinstance(demo_clip, CLIP) and not demo_clip.training
    assert all(p.dtype == torch.float32 for p in demo_clip.parameters())
    assert demo_clip.visual.image_size in (TINY_ARCHS["demo-tiny"]["image_size"],
                                           (TINY_ARCHS["demo-tiny"]["image_size"],) * 2)
    assert len(demo_clip.transformer.resblocks) == 12 and len(demo_clip.visual.transformer.resblocks) == 12
    emb = demo_clip.token_embedding.weight
    assert emb.shape == (49408, TINY_ARCHS["demo-tiny"]["text_width"])
    nonzero = set(torch.nonzero(emb.abs().sum(1)).flatten().tolist())
    # every token of every demo prompt (real open_clip tokenizer) has a trained row
    ids = set(pretrain.tokenize(world.all_texts()).flatten().tolist()) - {0}
    assert ids <= nonzero and len(nonzero) < 300
    assert abs(demo_clip.logit_scale.exp().item() - 100.0) < 0.1   # calibrated for MMRL's fixed 100


@pytest.mark.slow
def test_zero_shot_accuracy_is_clearly_above_chance_and_clearly_imperfect(demo_clip):
    torch.manual_seed(0)
    accs = {}
    for part, rng in (("base", range(0, 16)), ("new", range(16, 32))):
        names = [world.CLASSNAMES[i] for i in rng]
        x, y = pretrain.demo_eval_set("test", 8, rng, "demo")
        accs[part] = pretrain.zeroshot_accuracy(demo_clip, x, y, names)
        xp, yp = pretrain.demo_eval_set("test", 8, rng, "pretrain")
        accs[part + "_pretrain_style"] = pretrain.zeroshot_accuracy(demo_clip, xp, yp, names)
    # 16-way: chance is 6.25%
    assert 0.30 <= accs["base"] <= 0.85 and 0.30 <= accs["new"] <= 0.85, accs
    # the demo images are a shifted distribution: zero-shot is better in the pretraining style
    assert accs["base_pretrain_style"] + accs["new_pretrain_style"] > accs["base"] + accs["new"] + 0.1, accs


def test_demo_clip_matches_open_clip_tokenizer_and_encode_text(demo_clip):
    import open_clip
    tok = open_clip.get_tokenizer("ViT-B-16")
    ids = tok([world.TEMPLATE.format(world.CLASSNAMES[0])])
    assert torch.equal(ids, pretrain.tokenize([world.TEMPLATE.format(world.CLASSNAMES[0])]))
    with torch.no_grad():
        full = demo_clip.encode_text(ids)
        eot = ids.argmax(-1)
        used = set(ids.flatten().tolist())
        rows = demo_clip.token_embedding.weight
        remap = torch.zeros(49408, dtype=torch.long)
        remap[sorted(used)] = torch.arange(len(used))
        small = rows[sorted(used)]
        cut = pretrain.encode_text_rows(demo_clip, small, remap[ids], eot)
    assert torch.allclose(full, cut, atol=1e-4)   # the pretraining's cut text tower is exact


def test_missing_corrupt_and_mismatched_files_give_clear_errors(tmp_path, monkeypatch, demo_clip):
    with pytest.raises(WeightsError, match="not found"):
        weights.load_demo_clip(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(weights.demo_weights_path().read_bytes()[:1000])
    with pytest.raises(WeightsError, match="corrupt"):
        weights.load_demo_clip(bad)
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(WeightsError, match="not a demo CLIP"):
        weights.load_demo_clip(other)
    obj = torch.load(str(weights.demo_weights_path()), weights_only=True)
    obj["arch_cfg"] = dict(obj["arch_cfg"], vision_width=32)
    changed = tmp_path / "changed.pt"
    torch.save(obj, changed)
    with pytest.raises(WeightsError, match="Rebuild"):
        weights.load_demo_clip(changed)
    monkeypatch.setenv("MMRL_DEMO_WEIGHTS", str(tmp_path / "nope.pt"))
    assert weights.demo_weights_path() == tmp_path / "nope.pt"


def test_pretraining_is_deterministic_and_round_trips(tmp_path):
    a, used_a, _ = pretrain.pretrain(steps=2, batch=8, warmup=1, log_every=0)
    b, used_b, _ = pretrain.pretrain(steps=2, batch=8, warmup=1, log_every=0)
    assert torch.equal(used_a, used_b)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    out = weights.save_demo_clip(a, used_a, tmp_path / "w.pt", {"steps": 2})
    back = weights.load_demo_clip(out)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(back.encode_image(x), a.encode_image(x), atol=5e-2)
