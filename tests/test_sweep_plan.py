"""Sweep expansion = the authors' per-run commands and directories.

See docs/protocol.md#run-directories-and-aggregation.
"""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from mmrl.errors import ConfigError
from mmrl.sweep.plan import chains, expand

SHIPPED = Path(__file__).resolve().parent.parent / "mmrl" / "configs"


@pytest.fixture(autouse=True)
def _elsewhere(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not the repository: the config paths must not depend on the cwd
    monkeypatch.delenv("MMRL_CONFIGS", raising=False)


def common(seed, stem, cfg, out, trainer="MMRL"):
    return (f"--root $DATA --seed {seed} --trainer {trainer} --dataset-config-file {SHIPPED}/datasets/{stem}.yaml "
            f"--config-file {SHIPPED}/trainers/{trainer}/{cfg}.yaml --output-dir {out}")


def test_config_paths_are_absolute_files():
    jobs = expand("fs", trainers=["MMRL", "MMRLpp", "ZeroshotCLIP"], datasets=["eurosat", "imagenet"],
                  seeds=[1], root="$DATA")
    for job in jobs:
        for flag in ("--dataset-config-file", "--config-file"):
            path = Path(job.argv[job.argv.index(flag) + 1])
            assert path.is_absolute() and path.is_file(), (flag, path)


def cmds(jobs):
    return [shlex.join(j.argv) for j in jobs]


def q(s):
    return shlex.join(shlex.split(s))


def test_b2n_mmrl_matches_the_authors_table():
    jobs = expand("b2n", trainers=["MMRL"], datasets=["eurosat", "imagenet"], seeds=[1, 2], root="$DATA")
    want = []
    for stem, cfg in (("eurosat", "vit_b16"), ("imagenet", "vit_b16_imagenet")):
        for s in (1, 2):
            train = f"output/base2new/train_base/{stem}/shots_16/MMRL/{cfg}/seed{s}"
            test = f"output/base2new/test_new/{stem}/shots_16/MMRL/{cfg}/seed{s}"
            want.append(common(s, stem, cfg, train) + " DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base TASK B2N")
            want.append(common(s, stem, cfg, test) + f" --model-dir {train} --eval-only DATASET.NUM_SHOTS 16 "
                        "DATASET.SUBSAMPLE_CLASSES new TASK B2N")
    assert cmds(jobs) == [q(w) for w in want]
    # every evaluation comes after, and depends on, the training whose checkpoint it loads
    for train, test in zip(jobs[0::2], jobs[1::2]):
        assert test.after == (train.run_dir,) and test.model_dir == train.run_dir
        assert (train.role, train.metric, test.role, test.metric) == ("train", "base", "eval", "novel")


def test_fs_mmrl_matches_the_authors_table_shots_outer_seeds_inner():
    jobs = expand("fs", trainers=["MMRL"], datasets=["dtd", "imagenet"], seeds=[1, 2, 3], shots=[1, 16],
                  root="$DATA")
    want = []
    for stem, cfg in (("dtd", "vit_b16_few_shot"), ("imagenet", "vit_b16_imagenet")):
        for k in (1, 16):
            for s in (1, 2, 3):
                out = f"output/few_shot/{stem}/shots_{k}/MMRL/{cfg}/seed{s}"
                want.append(common(s, stem, cfg, out) + f" DATASET.NUM_SHOTS {k} TASK FS")
    assert cmds(jobs) == [q(w) for w in want]
    assert all(not j.after for j in jobs)


def test_cd_mmrl_matches_the_authors_commands_in_its_own_tree():
    jobs = expand("cd", trainers=["MMRL"], datasets=["dtd", "eurosat"], seeds=[1], root="$DATA")
    cfg = "vit_b16_cross_datasets"
    train = f"output/cross_dataset/train/imagenet/shots_16/MMRL/{cfg}/seed1"
    want = [common(1, "imagenet", cfg, train) + " DATASET.NUM_SHOTS 16 TRAINER.MMRL.REG_WEIGHT 0.2 TASK CD"]
    for t in ("dtd", "eurosat"):
        out = f"output/cross_dataset/test/{t}/shots_16/MMRL/{cfg}/seed1"
        want.append(common(1, t, cfg, out) + f" --model-dir {train} --eval-only DATASET.NUM_SHOTS 16 "
                    "TRAINER.MMRL.REG_WEIGHT 0.2 TRAINER.MMRL.REP_DIM 512 TASK CD")
    assert cmds(jobs) == [q(w) for w in want]
    assert [j.dataset for j in jobs] == ["imagenet", "dtd", "eurosat"]


def test_cd_mmrlpp_passes_no_pinned_opts_and_dg_shares_the_training():
    cd = expand("cd", trainers=["MMRLpp"], datasets=["dtd"], seeds=[1], root="R")
    dg = expand("dg", trainers=["MMRLpp"], seeds=[1], root="R")
    assert cd[0].argv[-4:] == ("DATASET.NUM_SHOTS", "16", "TASK", "CD")
    assert cd[1].argv[-4:] == ("DATASET.NUM_SHOTS", "16", "TASK", "CD")
    assert cd[0].run_dir == dg[0].run_dir  # one ImageNet training serves CD and DG
    assert [j.dataset for j in dg[1:]] == ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]


def test_default_datasets_and_sizes_of_the_protocols():
    assert len(expand("b2n", root="R")) == 2 * 11 * 3 * 2
    assert len(expand("fs", root="R")) == 2 * 11 * 5 * 3
    assert len(expand("cd", root="R")) == 2 * 3 * (1 + 10)


def test_zero_shot_clip_runs_once_eval_only():
    jobs = expand("b2n", trainers=["ZeroshotCLIP"], datasets=["eurosat"], seeds=[1, 2, 3], root="R")
    assert [j.run_dir for j in jobs] == [
        "output/base2new/test_base/eurosat/shots_0/ZeroshotCLIP/vit_b16/seed1",
        "output/base2new/test_new/eurosat/shots_0/ZeroshotCLIP/vit_b16/seed1"]
    assert all("--eval-only" in j.argv and "--model-dir" not in j.argv for j in jobs)
    assert jobs[0].argv[-4:] == ("DATASET.SUBSAMPLE_CLASSES", "base", "TASK", "B2N")
    cd = expand("cd", trainers=["ZeroshotCLIP"], datasets=["dtd"], seeds=[1], root="R")
    assert [j.dataset for j in cd] == ["imagenet", "dtd"]  # the source is evaluated too


def test_demo_dataset_uses_its_own_cfg_and_extra_opts_come_last():
    jobs = expand("cd", trainers=["MMRL"], datasets=["demo"], source="demo", seeds=[1], root="R",
                  extra_opts=["OPTIM.MAX_EPOCH", "1"])
    assert len(jobs) == 1 and all(j.cfg == "demo" for j in jobs)  # no demo -> demo "transfer" eval
    assert jobs[0].run_dir == "output/cross_dataset/train/demo/shots_16/MMRL/demo/seed1"
    assert all(j.argv[-2:] == ("OPTIM.MAX_EPOCH", "1") for j in jobs)


def test_chains_group_a_training_with_its_evaluations():
    jobs = expand("cd", trainers=["MMRL", "MMRLpp"], datasets=["dtd", "eurosat"], seeds=[1, 2], root="R")
    groups = chains(jobs)
    assert len(groups) == 4 and all(len(g) == 3 and g[0].role == "train" for g in groups)


def test_bad_inputs_fail_clearly():
    with pytest.raises(ConfigError, match="unknown protocol"):
        expand("xx")
    with pytest.raises(ConfigError, match="'NoSuchMethod' is not known; choose one of .*MMRL, MMRLpp"):
        expand("b2n", trainers=["NoSuchMethod"])
    with pytest.raises(ConfigError, match="KEY VALUE"):
        expand("b2n", extra_opts=["OPTIM.LR"])
