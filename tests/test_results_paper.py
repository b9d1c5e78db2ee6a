"""Paper layouts from hand-made records: blocks, row order, best / second marks (ties, missing
cells), published rows per source, and the three formats."""
from __future__ import annotations

import csv
import io

import pytest

from mmrl.engine.rundir import write_record
from mmrl.results import methods, paper_render
from mmrl.results import published as pub
from mmrl.results.aggregate import AVERAGE, build_report, hm
from mmrl.results.paper import BEST, SECOND, Cell, build_paper, mark_ranks
from mmrl.sweep import catalog
from mmrl.sweep.plan import expand
from engine_helpers import stand_in_methods

ZS = "ZeroshotCLIP"


@pytest.fixture(autouse=True)
def more_trainers(monkeypatch):
    """Baselines the sweep does not know yet: the tables must not need to know them either."""
    stand_in_methods(monkeypatch, "CoOp", "IVLP")


def put(run_dir, acc):
    write_record(run_dir, {"status": "complete", "config_hash": "x", "metrics": {"accuracy": acc}})


def fill(out, protocol, value, **kw):
    """Write every job's record with value(job); None leaves the run missing."""
    jobs = expand(protocol, root="", output=out, **kw)
    for j in jobs:
        v = value(j)
        if v is not None:
            put(j.run_dir, v)
    return jobs


def cells(block, label):
    return next(r for r in block.rows if r.label == label).cells


def md_row(md, label):
    """The cells after the label of the first markdown table row starting with ``label``."""
    for line in md.splitlines():
        parts = [x.strip() for x in line.strip().strip("|").split("|")]
        if parts[0] == label:
            return parts[1:]
    raise AssertionError(f"no row {label!r}")


def marks(block, col):
    return {r.label: r.cells[col].mark for r in block.rows}


# ---------------------------------------------------------------------------------------------

def test_method_facts_live_in_one_place():
    assert [methods.display_name(t) for t in ("ZeroshotCLIP", "MMRLpp", "MaPLe", "NewThing")] == \
        ["CLIP", "MMRL++", "MaPLe", "NewThing"]
    assert methods.published_key("MMRLpp") == "MMRL++" and methods.published_key("ZeroshotCLIP") == "CLIP"
    assert methods.row_order(["MMRL", "Zed", "IVLP", "Alpha", ZS, "MMRLpp", "CoOp"]) == \
        [ZS, "CoOp", "IVLP", "MMRL", "MMRLpp", "Zed", "Alpha"]
    assert methods.color("MMRL") != methods.color("MMRLpp") and methods.color("Zed") is None


@pytest.mark.parametrize("values, expected", [
    ([90.0, 85.0, 70.0], [BEST, SECOND, ""]),
    ([80.0, 80.004, 75.0, None, 70.0], [BEST, BEST, SECOND, "", ""]),   # equal as printed: one rank
    ([90.0, 85.0, 85.0, 60.0], [BEST, SECOND, SECOND, ""]),
    ([None, 42.0], ["", BEST]),
    ([None, None], ["", ""]),
])
def test_best_and_second_by_printed_value(values, expected):
    row = [Cell(v, "") for v in values]
    mark_ranks(row)
    assert [c.mark for c in row] == expected


# B2N: (trainer, stem) -> (base, novel); None = that run is missing.
B2N = {(ZS, "eurosat"): (50.0, 60.0), (ZS, "dtd"): (50.0, 60.0),
       ("CoOp", "eurosat"): (90.0, 70.0), ("CoOp", "dtd"): (80.0, 65.0),
       ("MMRL", "eurosat"): (90.0, 80.0), ("MMRL", "dtd"): (85.0, None),
       ("MMRLpp", "eurosat"): (88.0, 80.004), ("MMRLpp", "dtd"): (70.0, 66.0)}


@pytest.fixture
def b2n_report(tmp_path):
    jobs = fill(str(tmp_path / "o"), "b2n", lambda j: B2N[(j.trainer, j.dataset)][j.metric == "novel"],
                trainers=["MMRLpp", "MMRL", ZS, "CoOp"], datasets=["eurosat", "dtd"], seeds=[1])
    return build_report(jobs, allow_partial=True)


def test_b2n_paper_blocks_rows_and_marks(b2n_report):
    t = build_paper(b2n_report, published=True)
    assert [b.title for b in t.blocks] == ["(a) Average over 2 datasets", "(b) EuroSAT", "(c) DescribableTextures"]
    assert all([label for _, label in b.columns] == ["Base", "Novel", "HM"] for b in t.blocks)
    avg, euro, dtd = t.blocks
    assert [r.label for r in avg.rows] == ["CLIP", "CoOp", "MMRL", "MMRL++"]  # paper order, not the runs' order
    # Our Average is over 2 datasets: the published 11-dataset averages are not put beside it.
    assert [r.label for r in euro.rows] == ["CLIP", "CoOp", "MMRL", "MMRL (published, MMRL)", "MMRL++"]
    assert any("published Average is left out" in n for n in t.footnotes)

    assert marks(euro, 0) == {"CLIP": "", "CoOp": BEST, "MMRL": BEST, "MMRL (published, MMRL)": "", "MMRL++": SECOND}
    assert marks(euro, 1) == {"CLIP": "", "CoOp": SECOND, "MMRL": BEST, "MMRL (published, MMRL)": "", "MMRL++": BEST}
    hms = {t_: hm(*B2N[(t_, "eurosat")]) for t_ in (ZS, "CoOp", "MMRL", "MMRLpp")}
    assert cells(euro, "MMRL")[2].value == pytest.approx(hms["MMRL"])
    assert marks(euro, 2)["MMRL"] == BEST and marks(euro, 2)["MMRL++"] == SECOND
    # MMRL's DTD novel run is missing: no value, no mark, and the others are ranked without it.
    assert cells(dtd, "MMRL")[1].value is None and cells(dtd, "MMRL")[2].value is None
    assert [marks(dtd, 1)[m] for m in ("MMRL", "MMRL++", "CoOp", "CLIP")] == ["", BEST, SECOND, ""]
    assert [marks(dtd, 2)[m] for m in ("MMRL", "CoOp", "MMRL++")] == ["", BEST, SECOND]
    # The Average: Base and Novel over datasets; MMRL's Novel covers one dataset, so it is partial.
    assert cells(avg, "MMRL")[0].value == pytest.approx(87.5) and cells(avg, "MMRL")[1].text == "80.00†"
    assert marks(avg, 0) == {"CLIP": "", "CoOp": SECOND, "MMRL": BEST, "MMRL++": ""}
    # Published numbers are shown as they are and never ranked.
    assert [c.text for c in cells(euro, "MMRL (published, MMRL)")] == ["95.60", "80.17", "87.21"]


def test_b2n_paper_markdown_latex_csv(b2n_report):
    t = build_paper(b2n_report, published=True)
    md = paper_render.to_markdown(t)
    assert md.index("*(a) Average over 2 datasets*") < md.index("*(b) EuroSAT*") < md.index("*(c) DescribableTextures*")
    euro_md = md[md.index("*(b) EuroSAT*"):md.index("*(c) DescribableTextures*")]
    assert md_row(euro_md, "MMRL++") == ["<u>88.00</u>", "**80.00**", "<u>83.81</u>"]
    assert md_row(euro_md, "MMRL (published, MMRL)") == ["95.60", "80.17", "87.21"]
    assert md_row(euro_md, "CoOp") == ["**90.00**", "<u>70.00</u>", "78.75"]
    tex = paper_render.to_latex(t)
    assert tex.count("\\begin{tabular}{lccc}") == 3 and tex.count("\\toprule") == 3 and "\\bottomrule" in tex
    assert "\\multicolumn{4}{c}{(b) EuroSAT} \\\\" in tex
    assert "MMRL++ & \\underline{88.00} & \\textbf{80.00} & \\underline{83.81} \\\\" in tex
    assert "MMRL & \\textbf{87.50$^\\dagger$} & \\textbf{80.00$^\\dagger$} & " in tex  # an Average with a gap
    rows = list(csv.DictReader(io.StringIO(paper_render.to_csv(t))))
    assert list(rows[0]) == ["dataset", "method", "source", "base", "base_mark", "novel", "novel_mark", "hm",
                             "hm_mark", "n_seeds", "partial", "flagged"]
    euro = {(r["method"], r["source"]): r for r in rows if r["dataset"] == "EuroSAT"}
    assert euro[("MMRL++", "ours")]["novel"] == "80.004" and euro[("MMRL++", "ours")]["novel_mark"] == "best"
    assert euro[("CoOp", "ours")]["base_mark"] == "best" and euro[("MMRL++", "ours")]["base_mark"] == "second"
    assert euro[("MMRL", "MMRL")]["hm"] == "87.21" and euro[("MMRL", "MMRL")]["n_seeds"] == ""
    avg_mmrl = next(r for r in rows if r["dataset"] == "Average" and r["method"] == "MMRL")
    assert avg_mmrl["partial"] == "1" and avg_mmrl["novel_mark"] == "best"


def test_b2n_published_rows_one_per_source_beside_a_full_average(tmp_path):
    ours = {ZS: (60.0, 70.0), "CoOp": (70.0, 60.0), "IVLP": (75.0, 65.0), "MMRL": (80.0, 70.0)}
    jobs = fill(str(tmp_path / "o"), "b2n", lambda j: ours[j.trainer][j.metric == "novel"],
                trainers=["MMRL", "IVLP", "CoOp", ZS], seeds=[1])
    t = build_paper(build_report(jobs), published=True)
    avg = t.blocks[0]
    assert avg.title == f"(a) Average over {len(catalog.B2N_DATASETS)} datasets"
    assert [r.label for r in avg.rows] == [
        "CLIP", "CLIP (published, MMRL)", "CoOp", "CoOp (published, MMRL)", "CoOp (published, KgCoOp README)",
        "IVLP", "IVLP (published, PromptSRC README)", "IVLP (published, MaPLe README)",
        "MMRL", "MMRL (published, MMRL)"]
    published = {(p.method, p.paper): p.values[(AVERAGE, None)] for p in pub.rows("b2n")}
    for r in avg.rows:
        if r.source != "ours":
            key = (methods.published_key({"CLIP": ZS}.get(r.method, r.method)), r.source)
            assert [c.value for c in r.cells] == [published[key][m] for m in ("base", "novel", "hm")]
            assert all(c.mark == "" for c in r.cells)  # higher than ours, still not ranked
    assert [c.text for c in cells(avg, "CoOp (published, KgCoOp README)")] == ["82.63", "67.99", "74.60"]
    assert [c.mark for c in cells(avg, "MMRL")] == [BEST, BEST, BEST]
    # Novel: MMRL and CLIP tie for best (70), so IVLP's 65 is second.
    assert [c.mark for c in cells(avg, "CLIP")] == ["", BEST, ""]
    assert [c.mark for c in cells(avg, "IVLP")] == [SECOND, SECOND, SECOND]
    assert not any("left out" in n for n in t.footnotes)
    # Without --published: our rows only.
    assert [r.label for r in build_paper(build_report(jobs)).blocks[0].rows] == ["CLIP", "CoOp", "IVLP", "MMRL"]


def test_cross_dataset_paper_layout_source_first_then_targets_and_their_average(tmp_path):
    acc = {(ZS, "imagenet"): 66.0, (ZS, "dtd"): 44.0, (ZS, "eurosat"): 48.0,
           ("MMRL", "imagenet"): 72.0, ("MMRL", "dtd"): 46.0, ("MMRL", "eurosat"): 53.0,
           ("CoOp", "imagenet"): 71.0, ("CoOp", "dtd"): 42.0, ("CoOp", "eurosat"): 45.0}
    jobs = fill(str(tmp_path / "o"), "cd", lambda j: acc[(j.trainer, j.dataset)],
                trainers=["MMRL", "CoOp", ZS], datasets=["dtd", "eurosat"], seeds=[1, 2])
    t = build_paper(build_report(jobs), published=True)
    (b,) = t.blocks
    assert b.columns == [("ImageNet", "ImageNet (source)"), ("DescribableTextures", "DescribableTextures"),
                         ("EuroSAT", "EuroSAT"), ("Average", "Average")]
    assert [r.label for r in b.rows] == ["CLIP", "CoOp", "MMRL", "MMRL (published, MMRL)"]
    assert cells(b, "MMRL")[3].value == pytest.approx((46.0 + 53.0) / 2)  # the source is not in the Average
    assert [marks(b, i)["MMRL"] for i in range(4)] == [BEST, BEST, BEST, BEST]
    assert [marks(b, i)["CoOp"] for i in range(4)] == [SECOND, "", "", ""]
    assert [marks(b, i)["CLIP"] for i in range(4)] == ["", SECOND, SECOND, SECOND]
    # The published row has the source only; its targets and Average were not found.
    assert [c.text for c in cells(b, "MMRL (published, MMRL)")] == ["72.03", "—", "—", "—"]
    rows = list(csv.reader(io.StringIO(paper_render.to_csv(t))))
    assert rows[0][:6] == ["method", "source", "ImageNet", "ImageNet_mark", "DescribableTextures",
                           "DescribableTextures_mark"]
    assert rows[3][:4] == ["MMRL", "ours", "72", "best"]
    assert "ImageNet (source) & DescribableTextures & EuroSAT & Average \\\\" in paper_render.to_latex(t)


def test_domain_generalisation_paper_layout(tmp_path):
    jobs = fill(str(tmp_path / "o"), "dg", lambda j: 50.0 + len(j.dataset) + (j.trainer == "MMRL"),
                trainers=[ZS, "MMRL"], seeds=[1])
    t = build_paper(build_report(jobs), published=True)
    (b,) = t.blocks
    names = [catalog.display_name(s) for s in (catalog.CD_SOURCE, *catalog.DG_TARGETS)]
    assert [name for name, _ in b.columns] == names + ["Average"]
    assert b.columns[0][1].endswith("(source)")
    assert [r.label for r in b.rows] == ["CLIP", "MMRL", "MMRL (published, MMRL)"]
    assert all(c.mark == BEST for c in cells(b, "MMRL")) and all(c.mark == SECOND for c in cells(b, "CLIP"))
    assert [c.text for c in cells(b, "MMRL (published, MMRL)")] == ["72.03", "64.47", "49.17", "51.20", "77.53", "—"]
    assert t.title.startswith("Domain generalisation (train on ImageNet")


def test_few_shot_paper_layout_a_table_per_shot_count_with_every_method(tmp_path):
    def acc(j):
        return {ZS: 40.0, "CoOp": 50.0 + j.shots, "MMRL": 45.0 + 2 * j.shots}[j.trainer] + (j.dataset == "dtd")
    jobs = fill(str(tmp_path / "o"), "fs", acc, trainers=["MMRL", ZS, "CoOp"], datasets=["eurosat", "dtd"],
                shots=[1, 8], seeds=[1, 2])
    t = build_paper(build_report(jobs))
    assert [b.title for b in t.blocks] == ["1 shot", "8 shots"] and [b.key for b in t.blocks] == ["1", "8"]
    for b in t.blocks:
        assert [name for name, _ in b.columns] == ["EuroSAT", "DescribableTextures", "Average"]
        assert [r.label for r in b.rows] == ["CLIP", "CoOp", "MMRL"]
        assert [c.value for c in cells(b, "CLIP")] == [40.0, 41.0, 40.5]  # zero-shot: the same in every block
    one, eight = t.blocks
    assert [c.mark for c in cells(one, "CoOp")] == [BEST] * 3 and [c.mark for c in cells(one, "MMRL")] == [SECOND] * 3
    assert [c.mark for c in cells(eight, "MMRL")] == [BEST] * 3 and cells(eight, "MMRL")[2].value == 61.5
    assert any("same numbers in every shot table" in n for n in t.footnotes)
    rows = list(csv.DictReader(io.StringIO(paper_render.to_csv(t))))
    assert [(r["shots"], r["method"]) for r in rows] == [(k, m) for k in ("1", "8") for m in ("CLIP", "CoOp", "MMRL")]
    assert rows[0]["n_seeds"] == "1" and rows[1]["n_seeds"] == "2"


def test_every_published_value_has_its_provenance_and_sources():
    with open(pub.DATA_DIR / "sources.csv", newline="") as f:
        sources = {r["source_id"] for r in csv.DictReader(f)}
    with open(pub.DATA_DIR / "provenance.csv", newline="") as f:
        prov = {(r["file"], r["paper"], r["method"]): r["sources"].split(";") for r in csv.DictReader(f)}
    for protocol, file in pub.FILES.items():
        for p in pub.rows(protocol):
            assert (file, p.paper, p.method) in prov, f"{file}: no provenance for {p.method} from {p.paper}"
            assert set(prov[(file, p.paper, p.method)]) <= sources


def _cli(argv):
    from mmrl.cli import main
    return main(argv)


def test_cli_layout_flag(b2n_report, tmp_path, capsys):
    out = str(tmp_path / "o")
    assert _cli(["table", "--protocol", "b2n", "--output", out, "--layout", "paper", "--allow-partial",
                 "--published"]) == 0
    md = capsys.readouterr().out
    assert "*(a) Average over 2 datasets*" in md and "| Method" in md and "MMRL (published, MMRL)" in md
    assert _cli(["table", "--protocol", "b2n", "--output", out, "--layout", "paper", "--allow-partial",
                 "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("dataset,method,source,base,base_mark,")
    assert _cli(["table", "--protocol", "b2n", "--output", out, "--allow-partial"]) == 0  # wide stays the default
    assert "| Dataset" in capsys.readouterr().out
    assert _cli(["table", "--protocol", "b2n", "--output", out, "--layout", "paper", "--per-seed"]) == 2
    assert "--layout wide" in capsys.readouterr().err


def test_an_average_over_one_dataset_is_titled_in_the_singular(tmp_path):
    jobs = fill(str(tmp_path / "o"), "b2n", lambda j: 70.0, trainers=["MMRL"], datasets=["eurosat"], seeds=[1])
    assert build_paper(build_report(jobs)).blocks[0].title == "(a) Average over 1 dataset"
