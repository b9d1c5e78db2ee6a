"""Render a :class:`PaperTable` as markdown, LaTeX (booktabs) or CSV, with its best / second
marks: **bold** / <u>underline</u> in markdown, \\textbf / \\underline in LaTeX, and a
``<column>_mark`` column (``best`` | ``second`` | empty) after each value column in CSV."""
from __future__ import annotations

import csv
import io

from tabulate import tabulate

from mmrl.results.paper import BEST, OURS, SECOND, Cell, PaperTable
from mmrl.results.render import latex_footnotes, num, tex

_MD = {BEST: "**{}**", SECOND: "<u>{}</u>", "": "{}"}
_TEX = {BEST: "\\textbf{{{}}}", SECOND: "\\underline{{{}}}", "": "{}"}


def to_markdown(table: PaperTable) -> str:
    out = [f"**{table.title}**", ""]
    for b in table.blocks:
        if b.title:
            out += [f"*{b.title}*", ""]
        headers = ["Method"] + [label for _, label in b.columns]
        rows = [[r.label] + [_MD[c.mark].format(c.text) for c in r.cells] for r in b.rows]
        out += [tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True), ""]
    out += [f"- {n}" for n in table.footnotes]
    return "\n".join(out) + "\n"


def _tex_cell(c: Cell) -> str:
    return _TEX[c.mark].format(tex(c.text))


def to_latex(table: PaperTable) -> str:
    out = [f"% {table.title}", "% needs \\usepackage{booktabs}"]
    for b in table.blocks:
        ncols = len(b.columns)
        out.append("\\begin{tabular}{l" + "c" * ncols + "}")
        out.append("\\toprule")
        if b.title:
            out.append(f"\\multicolumn{{{ncols + 1}}}{{c}}{{{tex(b.title)}}} \\\\")
            out.append("\\midrule")
        out.append(" & ".join(["Method", *(tex(label) for _, label in b.columns)]) + " \\\\")
        out.append("\\midrule")
        for r in b.rows:
            out.append(" & ".join([tex(r.label), *map(_tex_cell, r.cells)]) + " \\\\")
        out.append("\\bottomrule")
        out.append("\\end{tabular}")
        out.append("")
    return "\n".join(out + latex_footnotes(table.footnotes)) + "\n"


def to_csv(table: PaperTable) -> str:
    """One CSV row per table row: [block key,] method, source (``ours`` or the published
    row's paper), then per column its value and its mark; n_seeds / partial / flagged for ours."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    lead = [table.key_name] if table.key_name else []
    cols = [x for name, _ in table.blocks[0].columns for x in (name, f"{name}_mark")]  # the same in every block
    w.writerow(lead + ["method", "source"] + cols + ["n_seeds", "partial", "flagged"])
    for b in table.blocks:
        for r in b.rows:
            ours = r.source == OURS
            row = ([b.key] if lead else []) + [r.method, r.source]
            row += [x for c in r.cells for x in (num(c.value), c.mark)]
            row += [r.n_seeds, int(r.partial), int(r.flagged)] if ours else ["", "", ""]
            w.writerow(row)
    return buf.getvalue()
