"""Figures are written as PNGs (Agg backend) from hand-made records."""
from __future__ import annotations

import random

import pytest

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
    _fill(out, "fs", trainers=["MMRL", "MMRLpp", "ZeroshotCLIP"], datasets=["dtd", "eurosat", "ucf101"],
          shots=[1, 4, 16])
    _fill(out, "b2n", trainers=["MMRL", "MMRLpp"], datasets=["dtd", "eurosat"])
    figs = tmp_path / "figs"
    assert _cli(["plot", "--protocol", "fs", "--out", str(figs), "--output", out, "--seeds", "1", "2"]) == 0
    assert _cli(["plot", "--protocol", "b2n", "--out", str(figs), "--output", out, "--seeds", "1", "2"]) == 0
    printed = capsys.readouterr().out.split()
    names = sorted(p.name for p in figs.iterdir())
    assert names == ["base2new.png", "few_shot.png", "few_shot_average.png"] and len(printed) == 3
    for p in figs.iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000


def test_curves_and_bars_show_every_method_by_its_display_name(tmp_path, monkeypatch):
    from mmrl.results import plots
    from mmrl.results.aggregate import build_report
    from engine_helpers import stand_in_methods
    stand_in_methods(monkeypatch, "CoOp")
    legends = {}

    def keep_legend(fig, path):
        legend = fig.legends[0] if fig.legends else fig.axes[0].get_legend()
        legends[path.name] = [t.get_text() for t in legend.get_texts()]
        plots.plt.close(fig)
        return path

    monkeypatch.setattr(plots, "_save", keep_legend)
    out = str(tmp_path / "output")
    trainers = ["MMRLpp", "CoOp", "ZeroshotCLIP", "MMRL"]
    _fill(out, "fs", trainers=trainers, datasets=["dtd"], shots=[1, 4])
    _fill(out, "b2n", trainers=trainers, datasets=["dtd"])
    plots.plot_few_shot(build_report(expand("fs", trainers=trainers, datasets=["dtd"], shots=[1, 4], seeds=[1, 2],
                                            root="", output=out)), tmp_path)
    plots.plot_b2n(build_report(expand("b2n", trainers=trainers, datasets=["dtd"], seeds=[1, 2], root="",
                                       output=out)), tmp_path)
    assert legends["few_shot.png"] == legends["few_shot_average.png"] == ["CLIP (zero-shot)", "CoOp", "MMRL", "MMRL++"]
    assert legends["base2new.png"] == ["CLIP", "CoOp", "MMRL", "MMRL++"]


def test_plot_offers_no_cross_domain_options_and_table_does(capsys):
    for cmd, has_source in (("plot", False), ("table", True)):
        with pytest.raises(SystemExit):
            _cli([cmd, "--help"])
        text = capsys.readouterr().out
        assert ("--source" in text) is has_source and ("cd/dg" in text) is has_source, cmd
