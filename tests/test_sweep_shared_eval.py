"""The local executor holds evaluations back so a cell's seeds share one test pass."""
import pytest

from mmrl.sweep.executors import order_for_shared_evals
from mmrl.sweep.plan import Job
from mmrl.sweep.runner import shares_test_pass


def job(role, seed, dataset="eurosat", metric=None):
    """A job as the plan writes it: the cell in its arguments, the seed and directories naming the run."""
    train = f"out/train/{dataset}/seed{seed}"
    common = ("--seed", str(seed), "--trainer", "MMRL", "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
              "--config-file", "configs/trainers/MMRL/vit_b16.yaml")
    if role == "train":
        argv = (*common, "--output-dir", train, "DATASET.SUBSAMPLE_CLASSES", "base")
        return Job("b2n", "MMRL", dataset, 16, seed, "vit_b16", "train", "base", train, argv)
    out = f"out/test/{dataset}/seed{seed}"
    argv = (*common, "--output-dir", out, "--model-dir", train, "--eval-only",
            "DATASET.SUBSAMPLE_CLASSES", "base" if metric == "base" else "new")
    return Job("b2n", "MMRL", dataset, 16, seed, "vit_b16", "eval", metric or "novel", out, argv,
               after=(train,), model_dir=train)


def test_evals_wait_for_all_trainings_of_their_cell():
    plan = [job("train", 1), job("eval", 1), job("train", 2), job("eval", 2),
            job("train", 1, "dtd"), job("eval", 1, "dtd")]
    order = [(j.role, j.dataset, j.seed) for j in order_for_shared_evals(plan)]
    assert order == [("train", "eurosat", 1), ("train", "eurosat", 2), ("eval", "eurosat", 1),
                     ("eval", "eurosat", 2), ("train", "dtd", 1), ("eval", "dtd", 1)]


def test_only_same_cell_evaluations_share():
    assert shares_test_pass(job("eval", 1), job("eval", 3))
    assert not shares_test_pass(job("eval", 1), job("eval", 1, "dtd"))
    assert not shares_test_pass(job("eval", 1), job("train", 1))
    assert not shares_test_pass(job("eval", 1), job("eval", 2, metric="base"))


@pytest.mark.slow
def test_shared_pass_runs_when_eval_dirs_do_not_exist_yet(tmp_path):
    """Regression: the shared-eval spec file must not need the (not yet created) run dirs."""
    import json
    from pathlib import Path

    from mmrl.datatools.synthetic import write_synthetic_dataset
    from mmrl.engine.run import main as run_main
    from mmrl.sweep.runner import CommandRunner, run_jobs_together
    repo = Path(__file__).resolve().parents[1]
    root = tmp_path / "data"
    write_synthetic_dataset("eurosat", root, n_per_class=20)
    common = ["--dataset-config-file", str(repo / "configs/datasets/eurosat.yaml"),
              "--config-file", str(repo / "configs/trainers/MMRL/vit_b16.yaml"), "--root", str(root),
              "--trainer", "MMRL"]
    opts = ["DATASET.NUM_SHOTS", "2", "TASK", "B2N", "MODEL.BACKBONE.NAME", "tiny-test", "OPTIM.MAX_EPOCH", "1",
            "DATALOADER.NUM_WORKERS", "0", "DATASET.FEWSHOT_DIR", str(tmp_path / "fs")]
    jobs = []
    for seed in (1, 2):
        train = tmp_path / "out/train" / f"seed{seed}"
        assert run_main([*common, "--seed", str(seed), "--output-dir", str(train), *opts,
                         "DATASET.SUBSAMPLE_CLASSES", "base"]) == 0
        ev = tmp_path / "out/test" / f"seed{seed}"
        argv = (*common, "--seed", str(seed), "--output-dir", str(ev), "--model-dir", str(train), "--eval-only",
                *opts, "DATASET.SUBSAMPLE_CLASSES", "new")
        jobs.append(Job("b2n", "MMRL", "eurosat", 2, seed, "vit_b16", "eval", "novel", str(ev), argv,
                        after=(str(train),), model_dir=str(train)))
    outs = run_jobs_together(jobs, CommandRunner(cwd=str(repo)))
    assert [o.ok for o in outs] == [True, True], [(o.action, o.detail, o.tail[-5:]) for o in outs]
    for j in jobs:
        assert json.loads((Path(j.run_dir) / "record.json").read_text())["status"] == "complete"
