"""Figures are written as PNGs (Agg backend) from hand-made records."""
from __future__ import annotations

import random

from mmrl.engine.rundir import write_record
from mmrl.sweep.plan import expand


def _fill(out, protocol, **kw):
    rng = random.Random(0)
    for j in expand(protocol, root="", output=out, seeds=[1, 2], **kw):
        acc = {"base": 85, "novel": 75, "accuracy": 60 + 2 * (j.shots or 0) ** 0.5}[j.metric] + rng.uniform(-2, 2)
        write_record(j.run_dir, {"status": "complete", "config_hash": "x", "metrics": {"accuracy": acc}})


def _cli(argv):
    from mmrl.cli import main
    return main(argv)


def test_plots_are_pngs(tmp_path, capsys):
    out = str(tmp_path / "output")
    _fill(out, "fs", trainers=["MMRL", "MMRLpp", "ZeroshotCLIP"], datasets=["dtd", "eurosat", "ucf101"], shots=[1, 4, 16])
    _fill(out, "b2n", trainers=["MMRL", "MMRLpp"], datasets=["dtd", "eurosat"])
    figs = tmp_path / "figs"
    assert _cli(["plot", "--protocol", "fs", "--out", str(figs), "--output", out, "--seeds", "1", "2"]) == 0
    assert _cli(["plot", "--protocol", "b2n", "--out", str(figs), "--output", out, "--seeds", "1", "2"]) == 0
    printed = capsys.readouterr().out.split()
    names = sorted(p.name for p in figs.iterdir())
    assert names == ["base2new.png", "few_shot.png", "few_shot_average.png"] and len(printed) == 3
    for p in figs.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
