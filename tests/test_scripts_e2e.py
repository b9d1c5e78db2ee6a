"""The three protocol scripts end to end: real engine, synthetic datasets, tiny backbone, 1 epoch.

Six engine runs in subprocesses (as a sweep starts them); most of the time is each process
importing torch and open_clip."""
from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FAST = ("MODEL.BACKBONE.NAME tiny-test DATALOADER.NUM_WORKERS 0 DATALOADER.TEST.BATCH_SIZE 64 "
        "OPTIM.MAX_EPOCH 1")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from mmrl.datatools.synthetic import write_synthetic_dataset
    root = tmp_path_factory.mktemp("data")
    for stem in ("eurosat", "imagenet", "imagenet_a"):
        write_synthetic_dataset(stem, root, n_per_class=20)
    return root


def start(name, env, *args):
    full = {**os.environ, "PYTHON": sys.executable, **env}
    full.pop("MMRL_TRAIN_COMMAND", None)
    return subprocess.Popen(["bash", str(REPO / "scripts" / name), *args], cwd=REPO, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc):
    out, _ = proc.communicate(timeout=900)
    return proc.returncode, out


def table_csv(protocol, out):
    from mmrl.cli import main
    import contextlib
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["table", "--protocol", protocol, "--output", out, "--seeds", "1", "--format", "csv"]) == 0
    return list(csv.DictReader(io.StringIO(buf.getvalue())))


def test_three_scripts_run_the_protocols_and_print_tables(data, tmp_path):
    out = str(tmp_path / "output")

    def env(name, **kw):
        return {"DATA": str(data), "OUTPUT": out, "TRAINERS": "MMRL", "SEEDS": "1", "DATASETS": "eurosat",
                "OPTS": f"{FAST} DATASET.FEWSHOT_DIR {tmp_path / name}", **kw}

    # the three protocols write disjoint trees, so they can run at the same time (the engine's
    # start-up, importing torch and open_clip, is most of the time)
    procs = {"b2n": start("base2new.sh", env("b2n")),
             "fs": start("few_shot.sh", env("fs", SHOTS="1", OPTS=f"{FAST} DATASET.FEWSHOT_DIR {tmp_path / 'fs'}")),
             "cd": start("cross_dataset.sh", env("cd", DG_DATASETS="imagenet_a"))}
    results = {k: finish(p) for k, p in procs.items()}
    for k, (rc, text) in results.items():
        assert rc == 0, f"{k}:\n{text}"

    text = results["b2n"][1]
    assert "2 ran" in text and "| EuroSAT" in text and "harmonic mean" in text
    row = table_csv("b2n", out)[0]
    assert row["dataset"] == "EuroSAT" and row["n_seeds"] == "1" and row["hm"] != ""

    text = results["fs"][1]
    assert "*1 shot*" in text and "| EuroSAT" in text
    assert Path(out, "few_shot/eurosat/shots_1/MMRL/vit_b16_few_shot/seed1/record.json").is_file()

    text = results["cd"][1]
    assert Path(out, "cross_dataset/train/imagenet/shots_16/MMRL/vit_b16_cross_datasets/seed1/record.json").is_file()
    assert "Cross-dataset transfer" in text and "Domain generalisation" in text
    assert "| ImageNetA" in text and "skipped" in text  # dg reused the cd training
    assert [r["dataset"] for r in table_csv("dg", out)] == ["ImageNet", "ImageNetA", "Average"]

    # the second time everything is complete: nothing runs, exit 0
    rc, text = finish(start("base2new.sh", env("b2n")))
    assert rc == 0 and "2 skipped" in text
