"""The local executor holds evaluations back so a cell's seeds share one test pass."""
from mmrl.sweep.executors import order_for_shared_evals
from mmrl.sweep.plan import Job
from mmrl.sweep.runner import shares_test_pass


def job(role, seed, dataset="eurosat", metric=None):
    train = f"out/train/{dataset}/seed{seed}"
    if role == "train":
        return Job("b2n", "MMRL", dataset, 16, seed, "vit_b16", "train", "base", train, ())
    return Job("b2n", "MMRL", dataset, 16, seed, "vit_b16", "eval", metric or "novel",
               f"out/test/{dataset}/seed{seed}", (), after=(train,), model_dir=train)


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
