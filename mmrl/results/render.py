"""Render a :class:`Report` as markdown, LaTeX (booktabs) or long-form CSV."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from tabulate import tabulate

from mmrl.results import methods
from mmrl.results import published as pub
from mmrl.results.aggregate import AVERAGE, GAP, Entry, Report
from mmrl.sweep import catalog
from mmrl.trainers import registry

LABEL = {"base": "Base", "novel": "Novel", "hm": "HM", "accuracy": "Acc."}
TITLE = {"b2n": "Base-to-novel generalisation (16 shots; Base = seen classes, Novel = unseen classes)",
         "cd": "Cross-dataset transfer (train on {source}, 16 shots; test on other datasets)",
         "dg": "Domain generalisation (train on {source}, 16 shots; test on its variants)",
         "fs": "Few-shot classification (all classes)"}
PARTIAL, FLAG, NONE = "†", "‡", "—"
MAX_LISTED = 20


@dataclass
class Section:
    title: str | None
    groups: list[tuple[str, list[str]]]     # (trainer, sub-column labels)
    rows: list[list[str]]                   # first cell: the dataset label
    average_at: int | None = None           # index of the Average row


@dataclass
class Grid:
    title: str
    sections: list[Section]
    footnotes: list[str] = field(default_factory=list)


def _row_name(stem: str) -> str:
    return "Average" if stem == AVERAGE else catalog.display_name(stem)


def _pub_key(stem: str) -> str:
    return AVERAGE if stem == AVERAGE else catalog.display_name(stem)


_FULL = {"b2n": catalog.B2N_DATASETS, "fs": catalog.FS_DATASETS, "cd": catalog.CD_TARGETS, "dg": catalog.DG_TARGETS}


def comparable(report: Report, stem: str, trainer: str | None = None, shots: int | None = None) -> bool:
    """A published Average compares only with an Average over the same (full) dataset list, each
    dataset with a value (``trainer``'s Average at ``shots``; without a trainer: every Average)."""
    if stem != AVERAGE:
        return True
    if not set(_FULL[report.protocol]) <= set(report.rows):
        return False
    n = len([s for s in report.rows if s != AVERAGE and s not in report.excluded_from_average])
    avgs = [report.entry(trainer, AVERAGE, shots)] if trainer else \
        [e for (_, stem_, _), e in report.entries.items() if stem_ == AVERAGE]
    return all(e is None or e.datasets == n for e in avgs)


def _lookup(table, report: Report, trainer: str, stem: str, shots, metric: str):
    if not comparable(report, stem, trainer, shots):
        return None
    return pub.lookup(table, trainer, _pub_key(stem), shots, metric)


def _trainer_name(trainer: str, fs: bool) -> str:
    return methods.zero_shot_label(trainer) if fs and not registry.trains(trainer) else methods.display_name(trainer)


def markers(e: Entry, metric: str) -> str:
    """PARTIAL and/or FLAG for one cell. An HM inherits both from its Base and Novel; an Average
    inherits PARTIAL (a part missing seeds or datasets), not FLAG (flags name seeds of one dataset)."""
    st = e.metrics.get(metric)
    partial = e.partial if metric == "hm" or e.dataset == AVERAGE else (st is None or st.partial)
    flagged = any(m == metric for m, _, _ in e.flags) or (metric == "hm" and bool(e.flags))
    return (PARTIAL if partial else "") + (FLAG if flagged else "")


def _cell(e: Entry | None, metric: str) -> str:
    if e is None:
        return NONE
    v = e.value(metric)
    st = e.metrics.get(metric)
    text = NONE if v is None else f"{v:.2f}"
    if v is not None and st is not None and st.spread is not None and st.n > 1 and metric != "hm":
        text += f" ± {st.spread:.2f}"
    return text + markers(e, metric)


def build_grid(report: Report, *, published: bool = False, per_seed: bool = False, source: str = catalog.CD_SOURCE) -> Grid:
    table = pub.load(report.protocol) if published else {}
    with_pub = {t for t in report.trainers if pub.has_any(table, t)}  # no empty columns for the rest
    fs = report.protocol == "fs"
    sections = []
    for k in report.shots:
        groups = []
        for t in report.trainers:
            subs = []
            for c in report.columns:
                subs.append(LABEL[c])
                if per_seed and c != "hm" and registry.trains(t):
                    subs += [f"{LABEL[c]} s{s}" for s in report.seeds]
                if t in with_pub:
                    subs += [f"{LABEL[c]} pub.", f"{LABEL[c]} Δ"]
            groups.append((_trainer_name(t, fs), subs))
        rows, average_at = [], None
        for stem in report.rows:
            if stem == AVERAGE:
                average_at = len(rows)
            row = [_row_name(stem)]
            for t in report.trainers:
                e = report.entry(t, stem, k)
                for c in report.columns:
                    row.append(_cell(e, c))
                    if per_seed and c != "hm" and registry.trains(t):
                        st = e.metrics.get(c) if e else None
                        row += [f"{st.values[s]:.2f}" if st and s in st.values else NONE for s in report.seeds]
                    if t in with_pub:
                        p = _lookup(table, report, t, stem, k if fs else None, c)
                        ours = e.value(c) if e else None
                        row.append(f"{p:.2f}" if p is not None else "")
                        row.append(f"{ours - p:+.2f}" if p is not None and ours is not None else "")
            rows.append(row)
        title = (f"{k} shot" + ("s" if k != 1 else "")) if fs else None
        sections.append(Section(title, groups, rows, average_at))
    return Grid(TITLE[report.protocol].format(source=catalog.display_name(source)), sections,
                footnotes(report, published))


def footnotes(report: Report, published: bool, layout: str = "wide") -> list[str]:
    notes = []
    seeds = " ".join(map(str, report.seeds))
    if layout == "paper":
        notes.append(f"Mean over seeds {seeds} (spreads: --layout wide). Bold: best, underlined: second best of "
                     "each column among our rows (equal printed values share the mark; published rows are not "
                     "ranked).")
    elif report.ci95:
        notes.append(f"Mean ± 95% confidence interval (1.96 · population std / √n) over seeds {seeds}.")
    else:
        notes.append(f"Mean ± population std (ddof 0) over seeds {seeds}.")
    if report.protocol == "b2n":
        notes.append("HM of a dataset = harmonic mean of its seed-mean Base and Novel; Average row: Base and "
                     "Novel averaged over datasets, HM = harmonic mean of those two averages.")
    elif report.protocol in ("cd", "dg"):
        src = ", ".join(catalog.display_name(s) for s in report.excluded_from_average) or "the source"
        notes.append(f"Average over the target datasets ({src}, the training source, is not in it).")
    else:
        notes.append("Average over datasets per number of shots.")
    for t in [t for t in report.trainers if not registry.trains(t)]:
        notes.append(f"{methods.display_name(t)}: one evaluation per dataset (no training, no randomness)"
                     + ("; zero-shot, so the same numbers in every shot table." if layout == "paper"
                        and report.protocol == "fs" else "."))
    if report.missing:
        listed = report.missing[:MAX_LISTED]
        more = f" (+{len(report.missing) - MAX_LISTED} more)" if len(report.missing) > MAX_LISTED else ""
        notes.append(f"{PARTIAL} partial: fewer seeds (or datasets) than expected; missing runs: "
                     + "; ".join(listed) + more + ".")
    flags = [why for e in report.entries.values() for _, _, why in e.flags]
    if flags:
        notes.append(f"{FLAG} flagged seeds (more than {GAP:g} points below the other seeds, or below zero-shot "
                     "CLIP): " + "; ".join(flags) + ".")
    if report.mixed_versions:
        listed = report.mixed_versions[:MAX_LISTED]
        more = f" (+{len(report.mixed_versions) - MAX_LISTED} more)" if len(report.mixed_versions) > MAX_LISTED else ""
        notes.append("Seeds run by different versions of the harness (same config; check the changes between "
                     "them before comparing): " + "; ".join(listed) + more + ".")
    if report.log_sourced:
        notes.append("Some values were parsed from log.txt (runs without record.json), which rounds to 0.1.")
    if published:
        notes.append(("Δ = ours − published; " if layout == "wide" else "") + pub.note(report.protocol) + ".")
        if not comparable(report, AVERAGE) and any(k[1] == AVERAGE for k in pub.load(report.protocol)):
            notes.append("The published Average is left out: it covers all of the protocol's datasets, ours does not.")
    return notes


# ---------------------------------------------------------------------------------------------

def to_markdown(grid: Grid) -> str:
    out = [f"**{grid.title}**", ""]
    for sec in grid.sections:
        if sec.title:
            out += [f"*{sec.title}*", ""]
        headers = ["Dataset"] + [f"{t} {s}" for t, subs in sec.groups for s in subs]
        rows = [[f"**{r[0]}**", *r[1:]] if i == sec.average_at else r for i, r in enumerate(sec.rows)]
        out += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    out += [f"- {n}" for n in grid.footnotes]
    return "\n".join(out) + "\n"


_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
        "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
        "±": r"$\pm$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "—": "--", "Δ": r"$\Delta$",
        "−": "$-$", "√": r"$\sqrt{}$", "·": r"$\cdot$"}


def tex(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def to_latex(grid: Grid) -> str:
    out = [f"% {grid.title}", "% needs \\usepackage{booktabs}"]
    for sec in grid.sections:
        ncols = sum(len(subs) for _, subs in sec.groups)
        if sec.title:
            out.append(f"% {sec.title}")
        out.append("\\begin{tabular}{l" + "c" * ncols + "}")
        out.append("\\toprule")
        tops, rules, col = [], [], 2
        for t, subs in sec.groups:
            tops.append(f"\\multicolumn{{{len(subs)}}}{{c}}{{{tex(t)}}}")
            rules.append(f"\\cmidrule(lr){{{col}-{col + len(subs) - 1}}}")
            col += len(subs)
        out.append(" & ".join(["", *tops]) + " \\\\")
        out.append(" ".join(rules))
        out.append(" & ".join(["Dataset", *(tex(s) for _, subs in sec.groups for s in subs)]) + " \\\\")
        out.append("\\midrule")
        for i, row in enumerate(sec.rows):
            if i == sec.average_at:
                out.append("\\midrule")
            out.append(" & ".join(tex(c) for c in row) + " \\\\")
        out.append("\\bottomrule")
        out.append("\\end{tabular}")
        out.append("")
    return "\n".join(out + latex_footnotes(grid.footnotes)) + "\n"


def latex_footnotes(notes: list[str]) -> list[str]:
    return ["{\\footnotesize", *(tex(n) + " \\\\" for n in notes), "}"]


def num(v: float | None) -> str:
    """A CSV number: up to 4 decimals, no trailing zeros; blank when missing."""
    return "" if v is None else f"{v:.4f}".rstrip("0").rstrip(".")


def to_csv(report: Report, *, published: bool = False, per_seed: bool = False) -> str:
    """Long form: one row per (trainer, dataset[, shots]); the trainer column holds the registry name
    (what --trainer takes), machine-readable, not the display name."""
    table = pub.load(report.protocol) if published else {}
    fs = report.protocol == "fs"
    sp = "ci95" if report.ci95 else "std"
    metrics, cols = report.metrics, report.columns
    spread_cols = [f"{m}_{sp}" for m in metrics] if report.protocol == "b2n" else [sp]
    header = ["trainer", "dataset"] + (["shots"] if fs else []) + cols + spread_cols + ["n_seeds", "partial", "flagged"]
    if per_seed:
        header += [f"{m}_seed{s}" for m in metrics for s in report.seeds]
    if published:
        header += [f"published_{c}" for c in cols] + [f"diff_{c}" for c in cols]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for t in report.trainers:
        shots = [0] if (fs and not registry.trains(t)) else report.shots
        for k in shots:
            for stem in report.rows:
                e = report.entry(t, stem, k)
                if e is None:
                    continue
                row = [t, _row_name(stem)] + ([k] if fs else [])
                row += [num(e.value(c)) for c in cols]
                row += [num(e.spread_of(m)) for m in metrics]
                row += [e.n_seeds, int(e.partial), int(bool(e.flags))]
                if per_seed:
                    for m in metrics:
                        st = e.metrics.get(m)
                        row += [num(st.values.get(s)) if st else "" for s in report.seeds]
                if published:
                    ps = [_lookup(table, report, t, stem, k if fs else None, c) for c in cols]
                    row += [num(p) for p in ps]
                    row += [num(e.value(c) - p) if p is not None and e.value(c) is not None else ""
                            for c, p in zip(cols, ps)]
                w.writerow(row)
    return buf.getvalue()
