"""Tables from hand-made records: HM rules, spreads, missing seeds, flags, formats, published numbers."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest

from mmrl.engine.rundir import write_record
from mmrl.errors import IncompleteResults
from mmrl.results.aggregate import AVERAGE, build_report, hm
from mmrl.results.render import build_grid, footnotes, to_csv, to_latex, to_markdown
from mmrl.sweep.plan import expand

# (dataset, seed) -> (base, novel); chosen so that mean-of-HMs != HM-of-means
B2N = {
    ("eurosat", 1): (90.0, 60.0), ("eurosat", 2): (92.0, 70.0), ("eurosat", 3): (94.0, 80.0),
    ("dtd", 1): (80.0, 50.0), ("dtd", 2): (81.0, 52.0), ("dtd", 3): (82.0, 57.0),
}


def put(run_dir, acc, status="complete"):
    write_record(run_dir, {"schema": 1, "status": status, "config_hash": "x",
                           "metrics": {"accuracy": acc} if status == "complete" else {}})


def b2n_jobs(out, trainers=("MMRL",), seeds=(1, 2, 3)):
    return expand("b2n", trainers=list(trainers), datasets=["eurosat", "dtd"], seeds=list(seeds), root="", output=out)


@pytest.fixture
def b2n_out(tmp_path):
    out = str(tmp_path / "output")
    for job in b2n_jobs(out):
        base, novel = B2N[(job.dataset, job.seed)]
        put(job.run_dir, base if job.metric == "base" else novel)
    return out


def mean(xs):
    return sum(xs) / len(xs)


def test_b2n_hm_rules_and_population_std(b2n_out):
    rep = build_report(b2n_jobs(b2n_out))
    e = rep.entry("MMRL", "eurosat", None)
    assert e.value("base") == pytest.approx(92.0)
    assert e.spread_of("base") == pytest.approx(math.sqrt(8 / 3))  # ddof 0
    assert e.hm == pytest.approx(hm(92.0, 70.0))  # HM of the seed means
    per_seed_hm = mean([hm(*B2N[("eurosat", s)]) for s in (1, 2, 3)])
    assert e.hm != pytest.approx(per_seed_hm)
    avg = rep.entry("MMRL", AVERAGE, None)
    b, n = mean([92.0, 81.0]), mean([70.0, mean([50.0, 52.0, 57.0])])
    assert (avg.value("base"), avg.value("novel")) == (pytest.approx(b), pytest.approx(n))
    assert avg.hm == pytest.approx(hm(b, n))  # HM of the averages ...
    assert avg.hm != pytest.approx(mean([e.hm, rep.entry("MMRL", "dtd", None).hm]))  # ... not the mean of HMs
    ci = build_report(b2n_jobs(b2n_out), ci95=True).entry("MMRL", "eurosat", None)
    assert ci.spread_of("base") == pytest.approx(1.96 * math.sqrt(8 / 3) / math.sqrt(3))


def test_markdown_latex_and_footer_state_the_rules(b2n_out):
    grid = build_grid(build_report(b2n_jobs(b2n_out)))
    md = to_markdown(grid)
    assert "| EuroSAT" in md and "92.00 ± 1.63" in md and "**Average**" in md
    assert "harmonic mean of its seed-mean Base and Novel" in md and "HM = harmonic mean of those two averages" in md
    tex = to_latex(grid)
    assert "\\begin{tabular}{lccc}" in tex and "92.00 $\\pm$ 1.63" in tex
    assert "\\multicolumn{3}{c}{MMRL}" in tex and tex.index("\\midrule\nAverage") > 0


def test_missing_seeds_are_refused_unless_partial_which_marks_them(b2n_out):
    jobs = b2n_jobs(b2n_out)
    gone = next(j for j in jobs if j.dataset == "dtd" and j.seed == 3 and j.metric == "novel")
    put(gone.run_dir, None, status="failed")  # a failed run does not count
    with pytest.raises(IncompleteResults, match="--allow-partial") as err:
        build_report(jobs)
    assert gone.run_dir in str(err.value) and "'failed'" in str(err.value)
    rep = build_report(jobs, allow_partial=True)
    e = rep.entry("MMRL", "dtd", None)
    assert e.partial and e.metrics["novel"].n == 2 and e.value("novel") == pytest.approx(51.0)
    assert rep.entry("MMRL", AVERAGE, None).partial
    md = to_markdown(build_grid(rep))
    assert "51.00 ± 1.00†" in md and "† partial" in md and gone.run_dir in md
    rows = list(csv.DictReader(io.StringIO(to_csv(rep))))
    assert [r["partial"] for r in rows] == ["0", "1", "1"]


def test_csv_is_long_form_with_std_and_n_seeds(b2n_out):
    text = to_csv(build_report(b2n_jobs(b2n_out)))
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["trainer", "dataset", "base", "novel", "hm", "base_std", "novel_std", "n_seeds", "partial",
                       "flagged"]
    assert [r[:2] for r in rows[1:]] == [["MMRL", "EuroSAT"], ["MMRL", "DescribableTextures"], ["MMRL", "Average"]]
    assert float(rows[1][2]) == 92.0 and rows[1][7] == "3"
    seeds = list(csv.DictReader(io.StringIO(to_csv(build_report(b2n_jobs(b2n_out), ci95=True), per_seed=True))))
    assert seeds[0]["base_seed2"] == "92" and "base_ci95" in seeds[0]


def test_low_seeds_and_seeds_below_zero_shot_are_flagged(tmp_path):
    out = str(tmp_path / "o")
    for job in expand("fs", trainers=["MMRL", "ZeroshotCLIP"], datasets=["dtd"], seeds=[1, 2, 3], shots=[4],
                      root="", output=out):
        put(job.run_dir, {0: 45.0, 1: 70.0, 2: 71.0, 3: 40.0}[job.seed if job.shots else 0])
    rep = build_report(expand("fs", trainers=["MMRL", "ZeroshotCLIP"], datasets=["dtd"], seeds=[1, 2, 3],
                              shots=[4], root="", output=out))
    flags = [why for _, _, why in rep.entry("MMRL", "dtd", 4).flags]
    assert any("seed 3 = 40.00: more than 5 points below" in f for f in flags)
    assert any("seed 3 = 40.00: below zero-shot CLIP (45.00)" in f for f in flags)
    md = to_markdown(build_grid(rep))
    assert "‡" in md and "*4 shots*" in md and "CLIP (zero-shot)" in md and "ZeroshotCLIP" not in md
    rows = list(csv.DictReader(io.StringIO(to_csv(rep))))
    assert rows[0].keys() >= {"trainer", "dataset", "shots", "accuracy", "std", "n_seeds"}
    assert [(r["trainer"], r["shots"]) for r in rows] == [("MMRL", "4"), ("MMRL", "4"), ("ZeroshotCLIP", "0"),
                                                          ("ZeroshotCLIP", "0")]


def test_authors_run_dirs_are_read_from_log_txt_including_their_cd_layout(tmp_path):
    out = tmp_path / "output"
    cfg = "vit_b16_cross_datasets"
    for split, stem, acc in (("train_base", "imagenet", "72.1"), ("test_new", "dtd", "45.5")):
        d = out / "base2new" / split / stem / "shots_16" / "MMRL" / cfg / "seed1"
        d.mkdir(parents=True)
        (d / "log.txt").write_text(f"=> result\n* accuracy: 10.0%\n=> result\n* accuracy: {acc}%\n* error: 1%\n")
    rep = build_report(expand("cd", trainers=["MMRL"], datasets=["dtd"], seeds=[1], root="", output=str(out)))
    assert rep.entry("MMRL", "imagenet", None).value("accuracy") == 72.1  # the last result block wins
    assert rep.entry("MMRL", AVERAGE, None).value("accuracy") == 45.5  # the source is not in the Average
    assert rep.log_sourced and "rounds to 0.1" in to_markdown(build_grid(rep))


def test_published_numbers_beside_ours(b2n_out):
    rep = build_report(b2n_jobs(b2n_out))
    md = to_markdown(build_grid(rep, published=True))
    assert "MMRL Base pub." in md and "95.60" in md and "-3.60" in md  # EuroSAT base: 92.00 - 95.60
    assert "secondary sources" in md
    rows = list(csv.DictReader(io.StringIO(to_csv(rep, published=True))))
    assert rows[0]["published_hm"] == "87.21" and rows[1]["published_base"] == ""  # blank where unknown


def _cli(argv):
    from mmrl.cli import main
    return main(argv)


def test_cli_table_exit_codes_and_formats(b2n_out, capsys, tmp_path):
    assert _cli(["table", "--protocol", "b2n", "--output", b2n_out, "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("trainer,dataset,base,novel,hm")
    assert _cli(["table", "--protocol", "b2n", "--output", b2n_out, "--seeds", "1", "2", "3", "4"]) == 2
    err = capsys.readouterr().err
    assert "seed4" in err and "--allow-partial" in err
    save = tmp_path / "t.tex"
    assert _cli(["table", "--protocol", "b2n", "--output", b2n_out, "--seeds", "1", "2", "3", "4",
                 "--allow-partial", "--format", "latex", "--save", str(save)]) == 0
    assert "$^\\dagger$" in save.read_text()
    assert _cli(["table", "--protocol", "fs", "--output", b2n_out]) == 2
    assert "no fs runs" in capsys.readouterr().err
    assert Path(b2n_out).is_dir()


def test_unreadable_record_is_refused_not_read_from_log_txt(b2n_out):
    jobs = b2n_jobs(b2n_out)
    broken = Path(jobs[0].run_dir)
    (broken / "record.json").write_text('{"status": "comp')  # cut short
    (broken / "log.txt").write_text("=> result\n* accuracy: 99.9%\n")
    with pytest.raises(IncompleteResults) as err:
        build_report(jobs)
    assert f"{broken / 'record.json'} exists but cannot be read" in str(err.value)
    rep = build_report(jobs, allow_partial=True)
    e = rep.entry("MMRL", jobs[0].dataset, None)
    assert e.partial and 99.9 not in e.metrics[jobs[0].metric].values.values()


def test_cell_mixing_two_configs_is_refused(tmp_path):
    out = str(tmp_path / "output")
    jobs = b2n_jobs(out)
    for job in jobs:
        lr = 0.002 if (job.dataset, job.seed, job.metric) == ("eurosat", 2, "base") else 0.001
        write_record(job.run_dir, {"status": "complete", "config_hash": "x", "metrics": {"accuracy": 50.0},
                                   "config": {"SEED": job.seed, "OUTPUT_DIR": job.run_dir, "OPTIM": {"LR": lr}}})
    with pytest.raises(IncompleteResults, match=r"differ in OPTIM.LR 0.001 vs 0.002") as err:
        build_report(jobs)
    assert "seed2" in str(err.value)
    with pytest.raises(IncompleteResults):
        build_report(jobs, allow_partial=True)


def test_wide_tables_print_each_method_under_its_display_name_and_csv_under_its_registry_name(tmp_path):
    out = str(tmp_path / "o")
    jobs = b2n_jobs(out, trainers=("MMRLpp", "ZeroshotCLIP"))
    for job in jobs:
        put(job.run_dir, 70.0)
    rep = build_report(jobs)
    for text in (to_markdown(build_grid(rep)), to_latex(build_grid(rep))):
        assert "MMRL++" in text and "CLIP" in text
        assert "MMRLpp" not in text and "ZeroshotCLIP" not in text
    assert {r["trainer"] for r in csv.DictReader(io.StringIO(to_csv(rep)))} == {"MMRLpp", "ZeroshotCLIP"}


# baselines.md §8: the published B2N average of the config each baseline's sweep runs
SWEPT_B2N_PUBLISHED = [
    ("CoOp", "vit_b16_ctxv1", (82.69, 63.22, 71.66)),                   # 200 epochs
    ("CoCoOp", "vit_b16_c4_ep10_batch1_ctxv1", (80.47, 71.69, 75.83)),
    ("KgCoOp", "vit_b16_ep100_ctxv1", (80.73, 73.6, 77.0)),
    ("MaPLe", "vit_b16_c2_ep5_batch4_2ctx", (82.28, 75.14, 78.55)),
    ("IVLP", "vit_b16_c2_ep20_batch4_4+4ctx", (84.21, 71.79, 77.51)),   # 4+4 ctx, depth 9, 20 epochs
    ("PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx", (84.26, 76.10, 79.97)),
]


@pytest.mark.parametrize("trainer,cfg,want", SWEPT_B2N_PUBLISHED, ids=[t for t, _, _ in SWEPT_B2N_PUBLISHED])
def test_the_pub_column_beside_a_baseline_is_the_published_row_of_the_config_it_runs(trainer, cfg, want):
    from mmrl.results import published as pub
    from mmrl.sweep.plan import cfg_for
    assert cfg_for("b2n", trainer, "eurosat") == cfg
    table = pub.load("b2n")
    assert tuple(pub.lookup(table, trainer, AVERAGE, None, m) for m in ("base", "novel", "hm")) == want


def test_a_run_with_other_identity_flags_is_not_the_cells_result(tmp_path):
    """An evaluation made by hand with --allow-unfinished (or --load-epoch) at a sweep job's
    directory has the same config as the other seeds, but it is not the job's run."""
    out = str(tmp_path / "output")
    jobs = b2n_jobs(out)
    odd = next(j for j in jobs if (j.dataset, j.seed, j.metric) == ("eurosat", 2, "novel"))
    for job in jobs:
        ident = {"eval_only": job.role == "eval", "load_epoch": None}
        if job is odd:
            ident["allow_unfinished"] = True
        write_record(job.run_dir, {"status": "complete", "config_hash": "x", "identity": ident,
                                   "metrics": {"accuracy": 10.0 if job is odd else 50.0},
                                   "config": {"SEED": job.seed, "OPTIM": {"LR": 0.001}}})
    with pytest.raises(IncompleteResults, match="--allow-unfinished") as err:
        build_report(jobs)
    assert odd.run_dir in str(err.value)
    rep = build_report(jobs, allow_partial=True)
    st = rep.entry("MMRL", "eurosat", None).metrics["novel"]
    assert 2 not in st.values and st.mean == 50.0
    write_record(odd.run_dir, {"status": "complete", "config_hash": "x", "metrics": {"accuracy": 50.0},
                               "identity": {"eval_only": True, "load_epoch": 3},
                               "config": {"SEED": 2, "OPTIM": {"LR": 0.001}}})
    with pytest.raises(IncompleteResults, match="--load-epoch"):
        build_report(jobs)


def test_an_evaluation_of_a_training_rerun_since_is_not_the_cells_result(tmp_path):
    """Seed 2 was trained again after its novel evaluation: its Base is the new training's, its
    Novel the old one's, so its HM would mix two trainings (`mmrl status` calls it stale)."""
    import torch
    from mmrl.engine import checkpoint as ckpt
    from mmrl.engine.rundir import file_sha256
    out = str(tmp_path / "output")
    jobs = b2n_jobs(out)
    evaluated = {}
    for job in (j for j in jobs if j.role == "train"):
        path = ckpt.save_checkpoint(job.run_dir, folder="MultiModalRepresentationLearner", epoch=2, arch={},
                                    state_dict={"x": torch.full((1,), float(job.seed))})
        evaluated[job.run_dir] = {"path": str(path), "sha256": file_sha256(path), "epoch": 2}
    for job in jobs:
        write_record(job.run_dir, {"status": "complete", "config_hash": "x", "metrics": {"accuracy": 50.0},
                                   "checkpoint": evaluated.get(job.model_dir)})
    assert build_report(jobs)
    rerun = next(j for j in jobs if (j.dataset, j.seed, j.role) == ("eurosat", 2, "train"))
    ckpt.save_checkpoint(rerun.run_dir, folder="MultiModalRepresentationLearner", epoch=2, arch={},
                         state_dict={"x": torch.full((1,), 7.0)})
    with pytest.raises(IncompleteResults, match="its training was rerun since") as err:
        build_report(jobs)
    assert "test_new/eurosat/shots_16/MMRL/vit_b16/seed2" in str(err.value)


def test_published_average_is_left_out_when_a_dataset_has_no_result(tmp_path):
    """--allow-partial with every seed of one dataset missing: our Average covers 10 of the 11
    datasets, so it is not compared with the published 11-dataset Average (README, Table layouts)."""
    from mmrl.results import paper_render
    from mmrl.results.paper import build_paper
    out = str(tmp_path / "output")
    jobs = expand("b2n", trainers=["MMRL"], root="", output=out, seeds=[1])
    for job in jobs:
        if job.dataset != "dtd":
            put(job.run_dir, 80.0 if job.metric == "base" else 70.0)
    rep = build_report(jobs, allow_partial=True)
    avg = rep.entry("MMRL", AVERAGE, None)
    assert avg.partial and avg.value("base") == pytest.approx(80.0)
    rows = {r["dataset"]: r for r in csv.DictReader(io.StringIO(to_csv(rep, published=True)))}
    assert rows["EuroSAT"]["published_base"] == "95.6"  # a dataset's own published numbers stay
    assert rows["Average"]["published_base"] == "" and rows["Average"]["diff_hm"] == ""
    md = to_markdown(build_grid(rep, published=True))
    assert "85.68" not in md and "The published Average is left out" in md
    paper = paper_render.to_markdown(build_paper(rep, published=True))
    assert "85.68" not in paper and "95.60" in paper and "The published Average is left out" in paper


def test_a_cell_whose_seeds_ran_on_different_code_versions_is_named_in_the_footer(tmp_path):
    out = str(tmp_path / "output")
    jobs = b2n_jobs(out)
    for job in jobs:
        version = "0.4.0+def5678" if (job.dataset, job.seed, job.metric) == ("eurosat", 3, "novel") else "0.4.0+abc1234"
        write_record(job.run_dir, {"status": "complete", "config_hash": "x", "metrics": {"accuracy": 50.0},
                                   "code_version": version})
    rep = build_report(jobs)
    assert rep.mixed_versions == ["MMRL EuroSAT novel: 0.4.0+abc1234 (seeds 1 2), 0.4.0+def5678 (seed 3)"]
    for layout in ("wide", "paper"):
        assert any("different versions of the harness" in n and "0.4.0+def5678 (seed 3)" in n
                   for n in footnotes(rep, published=False, layout=layout))
    same = str(tmp_path / "same")
    for job in b2n_jobs(same):
        write_record(job.run_dir, {"status": "complete", "config_hash": "x", "metrics": {"accuracy": 50.0},
                                   "code_version": "0.4.0+abc1234"})
    rep = build_report(b2n_jobs(same))
    assert rep.mixed_versions == []
    assert not any("versions of the harness" in n for n in footnotes(rep, published=False))
