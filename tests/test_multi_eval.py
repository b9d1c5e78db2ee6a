"""evaluate_together gives exactly what separate evaluation passes give."""
import pytest
import torch

from mmrl.data.loaders import build_test_loader
from mmrl.data.transforms import build_test_transform
from mmrl.datasets import build_dataset
from mmrl.datatools.synthetic import write_synthetic_dataset
from mmrl.engine.multi_eval import accuracy, evaluate_together, prefix_groups
from mmrl.models.mmrl import ArchSpec, Behaviour, MultiModalRepresentationLearner
from mmrl.models.prompts import Prompts
from mmrl.models.zeroshot import ZeroshotCLIP
from fixtures_data import mmrl_cfg


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset("eurosat", root, n_classes=4, n_per_class=8)
    data = build_dataset("EuroSAT", root)
    cfg = mmrl_cfg()
    cfg.DATALOADER.TEST.BATCH_SIZE = 5  # several batches, the last one short
    return data, build_test_loader(cfg, data.test, build_test_transform(cfg))


def seeded_model(clip, data, seed, trainer="MMRL", layers=tuple(range(6, 13))):
    torch.manual_seed(seed)
    prompts = Prompts.build(data.classnames, data.template)
    m = MultiModalRepresentationLearner(ArchSpec(trainer=trainer, rep_layers=list(layers), rep_dim=48), clip,
                                        prompts, Behaviour(beta=0.6))
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():  # move off the init so the seeds' predictions differ
        for p in m.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    return m


def separate(model, loader, head):
    model.eval()
    logits = [model.forward_eval(b["img"])[head].float() for b in loader]
    return torch.cat(logits)


def test_three_seeds_equal_separate_passes(tiny_clip, split):
    data, loader = split
    models = [seeded_model(tiny_clip, data, s) for s in (1, 2, 3)]
    heads = ["fused", "class", "rep"]
    assert prefix_groups(models) == [[0, 1, 2]]
    results = evaluate_together(models, loader, heads, "cpu", "fp32", save_logits=True)
    labels = torch.cat([b["label"] for b in loader]).numpy()
    for m, head, res in zip(models, heads, results):
        want = separate(m, loader, head)
        assert torch.equal(torch.from_numpy(res["logits"]), want)
        assert (res["pred"] == want.argmax(1).numpy()).all()
        assert (res["label"] == labels).all() and res["head"] == head
        assert list(res["index"]) == list(range(len(data.test)))
        assert 0.0 <= accuracy(res) <= 100.0
    assert len({r["logits"].tobytes() for r in results}) == 3  # really three different models


def test_models_that_cannot_share_fall_back_exactly(tiny_clip, split):
    data, loader = split
    other_j = seeded_model(tiny_clip, data, 4, trainer="MMRLpp", layers=(3, 6, 12))
    zs = ZeroshotCLIP(tiny_clip, Prompts.build(data.classnames, data.template))
    models = [seeded_model(tiny_clip, data, 1), other_j, zs, seeded_model(tiny_clip, data, 2)]
    assert prefix_groups(models) == [[0, 3], [1], [2]]
    results = evaluate_together(models, loader, "class", "cpu", save_logits=True)
    for m, res in zip(models, results):
        assert torch.equal(torch.from_numpy(res["logits"]), separate(m, loader, "class"))
    assert "logits" not in evaluate_together(models[:1], loader, "fused", "cpu")[0]
