"""PromptSRC's Gaussian prompt aggregation (spec baselines.md §7.5)."""
import math

import pytest
import torch

from mmrl.errors import CheckpointError, ConfigError
from mmrl.models.gpa import GaussianPromptAggregation, gaussian_weights


def test_weights_are_the_specs():
    g = gaussian_weights(15, 1, 20)
    assert sum(g) == pytest.approx(1.0, abs=1e-15)
    want = {13: 0.0540, 14: 0.2420, 15: 0.3989, 16: 0.2420, 17: 0.0540, 12: 0.00443, 18: 0.00443,
            11: 1.34e-4, 19: 1.34e-4, 10: 1.49e-6, 20: 1.49e-6}
    for epoch, value in want.items():
        assert g[epoch - 1] == pytest.approx(value, rel=5e-3)
    cd = gaussian_weights(6, 10, 20)
    assert (round(cd[0], 4), round(cd[5], 4), round(cd[19], 4)) == (0.0554, 0.0628, 0.0236)
    fs = gaussian_weights(30, 30, 50)
    assert (round(fs[0], 4), round(fs[29], 4), round(fs[49], 4)) == (0.0141, 0.0225, 0.0180)
    assert round(gaussian_weights(45, 5, 50)[44], 4) == 0.0923
    with pytest.raises(ConfigError, match="GPA_STD"):
        gaussian_weights(15, 0, 20)


def _states(epochs, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"a": torch.randn(3, 4, generator=g), "b": torch.randn(5, generator=g).half()} for _ in range(epochs)]


def test_aggregate_is_the_weighted_sum_of_epoch_states():
    mean, std, epochs = 3.0, 1.5, 6
    states = _states(epochs)
    gpa = GaussianPromptAggregation(mean, std, epochs)
    for e, s in enumerate(states, 1):
        assert not gpa.complete
        gpa.add_epoch(e, s)
    out = gpa.final_state()
    dens = [math.exp(-0.5 * ((e - mean) / std) ** 2) for e in range(1, epochs + 1)]
    weights = [d / sum(dens) for d in dens]
    for key in ("a", "b"):
        want = sum(w * s[key].double() for w, s in zip(weights, states))
        assert out[key].dtype == states[0][key].dtype  # each tensor aggregated in its own dtype
        tol = 1e-6 if key == "a" else 5e-3
        assert (out[key].double() - want).abs().max() < tol
    # fp16 tensors: weighted and summed in fp16, as the reference does (not in fp64 then rounded)
    fp16 = states[0]["b"] * gpa.weights[0]
    for w, s in zip(gpa.weights[1:], states[1:]):
        fp16 = fp16 + s["b"] * w
    assert torch.equal(out["b"], fp16)


def test_resume_mid_way_gives_the_same_aggregate(tmp_path):
    states = _states(5, seed=1)
    whole = GaussianPromptAggregation(4, 1, 5)
    for e, s in enumerate(states, 1):
        whole.add_epoch(e, s)
    first = GaussianPromptAggregation(4, 1, 5)
    for e, s in enumerate(states[:3], 1):
        first.add_epoch(e, s)
    torch.save(first.state_dict(), tmp_path / "resume.pth")
    resumed = GaussianPromptAggregation(4, 1, 5)
    resumed.load_state_dict(torch.load(tmp_path / "resume.pth", weights_only=True))
    for e, s in enumerate(states[3:], 4):
        resumed.add_epoch(e, s)
    for key in ("a", "b"):
        assert torch.equal(resumed.final_state()[key], whole.final_state()[key])


def test_refusals():
    gpa = GaussianPromptAggregation(15, 1, 20)
    with pytest.raises(RuntimeError, match="in order"):
        gpa.add_epoch(2, _states(1)[0])
    with pytest.raises(RuntimeError, match="needs all 20"):
        gpa.final_state()
    other = GaussianPromptAggregation(15, 2, 20)
    with pytest.raises(CheckpointError, match="GPA"):
        gpa.load_state_dict(other.state_dict())


def test_killed_promptsrc_run_resumes_to_the_same_aggregate(tiny_clip, tmp_path):
    """Three epochs of two SGD steps with GPA after each epoch: stopping after epoch 2 and resuming
    from the saved model, optimizer and GPA state ends with the uninterrupted run's aggregate."""
    from mmrl.models.deep_prompts import DeepPromptArch, build_deep_prompt_model

    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(1, 3, 224, 224, generator=g), torch.randint(0, 3, (1,), generator=g)) for _ in range(6)]

    def build():
        torch.manual_seed(0)
        model = build_deep_prompt_model(DeepPromptArch("PromptSRC", "tiny-test", 2, 2, 3, 3), tiny_clip,
                                        ["cat", "dog", "sea_lion"])
        return model, torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=5e-4), \
            GaussianPromptAggregation(2.0, 1.0, 3)

    def run_epochs(model, optim, gpa, epochs):
        for epoch in epochs:
            for images, labels in batches[2 * (epoch - 1):2 * epoch]:
                optim.zero_grad()
                model.forward_train(images, labels)[0].backward()
                optim.step()
            gpa.add_epoch(epoch, model.state_dict())
        if gpa.complete:
            model.load_state_dict(gpa.final_state())

    whole = build()
    run_epochs(*whole, [1, 2, 3])
    first = build()
    run_epochs(*first, [1, 2])
    torch.save({"model": first[0].state_dict(), "optim": first[1].state_dict(), "gpa": first[2].state_dict()},
               tmp_path / "resume.pth")
    resumed = build()
    state = torch.load(tmp_path / "resume.pth", weights_only=True)
    resumed[0].load_state_dict(state["model"])
    resumed[1].load_state_dict(state["optim"])
    resumed[2].load_state_dict(state["gpa"])
    run_epochs(*resumed, [3])
    final, want = resumed[0].state_dict(), whole[0].state_dict()
    assert all(torch.equal(final[k], want[k]) for k in want)
    assert not torch.equal(want["ctx"], first[0].state_dict()["ctx"])  # epoch 3 and the aggregate changed it
