"""The one rule of which evaluations share a test pass, and the one evaluation loop they run."""
import itertools
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mmrl.clip.backbone import BackboneInfo
from mmrl.config import resolve_config
from mmrl.data.items import Item
from mmrl.engine import shared_pass
from mmrl.engine.args import parse_run_args
from mmrl.engine.trainer import Trainer, seed_everything, evaluate_trainers
from mmrl.sweep.plan import expand
from mmrl.sweep.runner import shares_test_pass
from engine_helpers import REPO, argv as engine_argv


def _cfg(argv):
    return resolve_config(parse_run_args(list(argv))).cfg


def _facts(cfg):
    """The pass's facts as a config states them (items: dataset, root, subsample)."""
    keys = (*shared_pass.TRANSFORM_KEYS, "TEST.PREC", "MODEL.BACKBONE.NAME", "DATASET.NAME", "DATASET.ROOT",
            "DATASET.SUBSAMPLE_CLASSES")
    return tuple(shared_pass.config_value(cfg, k) for k in keys)


@pytest.mark.parametrize("protocol", ["b2n", "cd"])
def test_the_sweep_groups_the_seeds_of_a_cell_and_only_runs_with_the_same_facts(protocol):
    jobs = expand(protocol, trainers=["MMRL", "ZeroshotCLIP"], datasets=["eurosat", "dtd"], seeds=(1, 2, 3),
                  root="/data", output="/out")
    evals = [j for j in jobs if j.role == "eval"]
    facts = {j.id: _facts(_cfg(j.argv)) for j in evals}
    for a, b in itertools.combinations(jobs, 2):
        if shares_test_pass(a, b):  # the job-level key never claims more than the configs say
            assert a.role == b.role == "eval" and facts[a.id] == facts[b.id], (a.id, b.id)
    cells = {(j.trainer, j.dataset, j.metric) for j in evals if j.model_dir}
    assert cells
    for cell in cells:  # and it groups every trained cell's seeds
        seeds = [j for j in evals if (j.trainer, j.dataset, j.metric) == cell]
        assert len(seeds) == 3 and all(shares_test_pass(seeds[0], j) for j in seeds[1:])
    assert not any(shares_test_pass(j, j) for j in jobs if j.role == "train")


def test_only_the_arguments_that_name_a_run_are_left_out_of_the_job_key():
    base = ("--trainer", "MMRL", "--dataset-config-file", "d.yaml", "--eval-only")
    one = (*base, "--seed", "1", "--output-dir", "o1", "--model-dir", "m1", "TASK", "B2N")
    assert shared_pass.can_share(one, (*base, "--model-dir", "m2", "--seed=2", "--output-dir", "o2", "TASK", "B2N"))
    for other in ((*one, "TEST.PREC", "bf16"), ("--backbone", "ViT-B/32", *one), ("--root", "/elsewhere", *one),
                  ("--load-epoch", "3", *one), tuple(a for a in one if a != "--eval-only")):
        assert not shared_pass.can_share(one, other), other
    assert not shared_pass.can_share(("--no-such-flag", "--eval-only"), ("--no-such-flag", "--eval-only"))


def _trainer(cfg, items, **over):
    t = SimpleNamespace(cfg=cfg, data=SimpleNamespace(test=items), device=torch.device("cpu"),
                        precision={"test_used": "fp32"}, backbone_info=BackboneInfo("ViT-B/16", "random"))
    for k, v in over.items():
        setattr(t, k, v)
    return t


def test_run_key_changes_with_each_fact_and_nothing_else():
    argv = ("--trainer", "MMRL", "--dataset-config-file", str(REPO / "configs/datasets/eurosat.yaml"),
            "--config-file", str(REPO / "configs/trainers/MMRL/vit_b16.yaml"), "TASK", "B2N")
    cfg = _cfg(argv)
    items = [Item(f"/d/{i}.jpg", i % 3, f"c{i % 3}") for i in range(6)]
    key = shared_pass.run_key(_trainer(cfg, items))
    same = cfg.clone()
    same.defrost()
    same.SEED, same.OUTPUT_DIR, same.TASK = 7, "/elsewhere", "FS"
    assert shared_pass.run_key(_trainer(same, items, model="another model")) == key

    def changed(dotted, value):
        c = cfg.clone()
        c.defrost()
        node = c
        *path, last = dotted.split(".")
        for p in path:
            node = node[p]
        node[last] = value
        return _trainer(c, items)

    others = [changed("INPUT.SIZE", (192, 192)), changed("INPUT.INTERPOLATION", "bilinear"),
              changed("INPUT.TRANSFORMS", ("random_flip",)), changed("INPUT.PIXEL_MEAN", (0.5, 0.5, 0.5)),
              changed("INPUT.PIXEL_STD", (0.2, 0.2, 0.2)), changed("DATALOADER.TEST.BATCH_SIZE", 7),
              # a run that must fail on an unreadable image never gets the substitutes of a skipping run's pass
              changed("DATASET.SKIP_CORRUPT", True),
              _trainer(cfg, items[:-1]), _trainer(cfg, [replace(items[0], label=2), *items[1:]]),
              _trainer(cfg, items, precision={"test_used": "bf16"}), _trainer(cfg, items, device=torch.device("meta")),
              _trainer(cfg, items, backbone_info=BackboneInfo("ViT-B/32", "random"))]
    assert all(shared_pass.run_key(t) != key for t in others)
    assert shared_pass.group([1, 2, 3, 4, 5], lambda n: n % 2) == [[1, 3, 5], [2, 4]]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    from mmrl.datatools.synthetic import write_synthetic_dataset
    root = tmp_path_factory.mktemp("data")
    write_synthetic_dataset("eurosat", root, n_per_class=6)
    return root


def _built(root, out, seed, task):
    """A trainer with its initial (untrained) model: different seeds, different models."""
    cfg = _cfg(engine_argv(root, out, seed=seed, subsample="all", shots=1, opts=["TASK", task, "TEST.SAVE_LOGITS", "True",
                                                                         "TEST.CACHE_DIR", "none"]))
    t = Trainer(cfg, out)
    t.build_data()
    seed_everything(seed)
    t.build_model()
    return t


def test_a_runs_own_test_equals_its_part_of_a_shared_pass(data_root, tmp_path):
    fs, cd = _built(data_root, tmp_path / "fs", 1, "FS"), _built(data_root, tmp_path / "cd", 2, "CD")
    assert (fs.head, cd.head) == ("fused", "class")  # each run scores its own head in the shared pass
    assert shared_pass.run_key(fs) == shared_pass.run_key(cd)
    alone = []
    for t in (fs, cd):
        metrics = t.test()
        alone.append((metrics, dict(np.load(t.output_dir / "predictions.npz"))))
        assert t.timings["eval_s"] > 0
    for t, out, (metrics, written) in zip((fs, cd), evaluate_trainers([fs, cd]), alone):
        assert t.finish_test(out) == metrics
        shared = np.load(t.output_dir / "predictions.npz")
        assert set(shared.files) == set(written) == {"impath", "label", "pred", "head", "logits"}
        for k in written:
            assert np.array_equal(shared[k], written[k]), k  # logits bit-equal
    assert not np.array_equal(alone[0][1]["logits"], alone[1][1]["logits"])
