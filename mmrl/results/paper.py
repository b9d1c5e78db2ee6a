"""The paper layouts of a :class:`Report`: methods as rows, means only, best bold and second
underlined per column.

- B2N: one block per dataset (Average first), columns Base / Novel / HM;
- CD / DG: one block, columns the source, the targets, then their Average;
- FS: one block per shot count, columns the datasets, then their Average; zero-shot CLIP
  (shots 0) is a row of every block.

With ``published``, each reproduced method is followed by one row per source of its published
numbers (mmrl/results/published/).  Only our rows are ranked: the published ones come from
other seeds and splits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from mmrl.results import methods
from mmrl.results import published as pub
from mmrl.results.aggregate import AVERAGE, Entry, Report
from mmrl.results.render import NONE, TITLE, comparable, footnotes, markers
from mmrl.sweep import catalog

OURS = "ours"
BEST, SECOND = "best", "second"
B2N_COLUMNS = (("base", "Base"), ("novel", "Novel"), ("hm", "HM"))


@dataclass
class Cell:
    value: float | None
    text: str                      # the printed value with its markers, or NONE
    mark: str = ""                 # BEST | SECOND | ""


@dataclass
class Row:
    method: str                    # display name
    source: str                    # OURS, or the published row's paper
    cells: list[Cell]
    n_seeds: int | None = None     # ours only: the fewest seeds behind any cell
    partial: bool = False
    flagged: bool = False

    @property
    def label(self) -> str:
        return self.method if self.source == OURS else f"{self.method} (published, {self.source})"


@dataclass
class Block:
    key: str                       # the CSV's block value: a dataset name, a shot count, or ""
    title: str | None
    columns: list[tuple[str, str]]  # (CSV name, printed label)
    rows: list[Row]


@dataclass
class PaperTable:
    protocol: str
    title: str
    blocks: list[Block]
    footnotes: list[str] = field(default_factory=list)

    @property
    def key_name(self) -> str | None:
        """The CSV column that tells the blocks apart."""
        return {"b2n": "dataset", "fs": "shots"}.get(self.protocol)


def shown(value: float) -> float:
    """The value as printed (2 decimals): ranks compare what the reader sees."""
    return float(f"{value:.2f}")


def mark_ranks(cells: list[Cell]) -> None:
    """Best -> BEST, second best -> SECOND; equal printed values share a mark, and the value
    after a tie for best is second.  Cells without a value get no mark."""
    ranked = sorted({shown(c.value) for c in cells if c.value is not None}, reverse=True)
    for c in cells:
        if c.value is not None:
            v = shown(c.value)
            c.mark = BEST if v == ranked[0] else SECOND if len(ranked) > 1 and v == ranked[1] else ""


def _our_cell(e: Entry | None, metric: str) -> Cell:
    if e is None:
        return Cell(None, NONE)
    v = e.value(metric)
    return Cell(v, (NONE if v is None else f"{v:.2f}") + markers(e, metric))


def _ours(trainer: str, entries: list[Entry | None], metrics: list[str]) -> Row:
    cells = [_our_cell(e, m) for e, m in zip(entries, metrics)]
    have = [e for e in entries if e is not None]
    return Row(methods.display_name(trainer), OURS, cells,
               n_seeds=min((e.n_seeds for e in have), default=0),
               partial=any(e.partial for e in have) or len(have) < len(entries),
               flagged=any(e.flags for e in have))


def _published(p: pub.Published, trainer: str, keys: list[tuple[str | None, int | None]],
               metrics: list[str]) -> Row | None:
    """The published row over ``keys`` (published dataset name, shots), None if it has no value there."""
    vals = [p.values.get(k, {}).get(m) for k, m in zip(keys, metrics)]
    if all(v is None for v in vals):
        return None
    return Row(methods.display_name(trainer), p.paper,
               [Cell(v, NONE if v is None else f"{v:.2f}") for v in vals])


def _pub_name(report: Report, stem: str, trainer: str, shots: int | None) -> str | None:
    """The published CSVs' dataset key; None for an Average over fewer datasets than the paper's."""
    if stem == AVERAGE:
        return AVERAGE if comparable(report, stem, trainer, shots) else None
    return catalog.display_name(stem)


def _block_rows(report: Report, trainers: list[str], stems: list[str], metrics: list[str],
                shots: int | None, entries: list[pub.Published]) -> list[Row]:
    rows = []
    for t in trainers:
        keys = [(_pub_name(report, s, t, shots), shots) for s in stems]
        rows.append(_ours(t, [report.entry(t, s, shots) for s in stems], metrics))
        for p in pub.for_trainer(entries, t):
            row = _published(p, t, keys, metrics)
            if row is not None:
                rows.append(row)
    ours = [r for r in rows if r.source == OURS]
    for j in range(len(metrics)):
        mark_ranks([r.cells[j] for r in ours])
    return rows


def _name(stem: str) -> str:
    return "Average" if stem == AVERAGE else catalog.display_name(stem)


def build_paper(report: Report, *, published: bool = False, source: str = catalog.CD_SOURCE) -> PaperTable:
    entries = pub.rows(report.protocol) if published else []
    trainers = methods.row_order(report.trainers)
    datasets = [s for s in report.rows if s != AVERAGE]
    average = [AVERAGE] if AVERAGE in report.rows else []
    blocks = []
    if report.protocol == "b2n":
        metrics = [m for m, _ in B2N_COLUMNS]
        for i, stem in enumerate(average + datasets):
            n = len(datasets)
            name = f"Average over {n} dataset{'s' if n != 1 else ''}" if stem == AVERAGE else _name(stem)
            title = (f"({chr(ord('a') + i)}) " if i < 26 else "") + name
            blocks.append(Block(_name(stem), title, list(B2N_COLUMNS),
                                _block_rows(report, trainers, [stem] * 3, metrics, None, entries)))
    elif report.protocol == "fs":
        stems = datasets + average
        for k in report.shots:
            title = f"{k} shot" + ("s" if k != 1 else "")
            blocks.append(Block(str(k), title, [(_name(s), _name(s)) for s in stems],
                                _block_rows(report, trainers, stems, ["accuracy"] * len(stems), k, entries)))
    else:  # cd, dg: the source first
        src = [s for s in datasets if s in report.excluded_from_average]
        stems = src + [s for s in datasets if s not in src] + average
        cols = [(_name(s), _name(s) + (" (source)" if s in src else "")) for s in stems]
        blocks.append(Block("", None, cols, _block_rows(report, trainers, stems, ["accuracy"] * len(stems), None,
                                                         entries)))
    return PaperTable(report.protocol, TITLE[report.protocol].format(source=catalog.display_name(source)), blocks,
                      footnotes(report, published, layout="paper"))
