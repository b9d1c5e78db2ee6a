"""Seeds -> mean and spread per (trainer, dataset[, shots]), the HM rules, the Average row.

Rules (stated in every table's footer):
- spread is the population std over seeds (ddof 0, like the authors' aggregator) or, with
  ``ci95``, 1.96 * std / sqrt(n);
- B2N: a dataset's HM is the harmonic mean of its seed-mean Base and Novel; the Average row's
  Base and Novel are means over datasets and its HM is the HM of those two averages;
- CD / DG: the Average is over the target datasets (the ImageNet source is not in it);
- a cell with missing seeds is refused unless ``allow_partial`` (then marked);
- a cell whose seeds were run with different configs (other than SEED) is always refused;
- a cell whose seeds were run by different versions of the harness is named in a footnote (the
  config hash leaves the version out, so a fix does not force every finished run to be redone);
- a seed more than ``GAP`` points below the median of the other seeds, or below zero-shot
  CLIP on the same dataset and metric, is flagged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import median

from mmrl.config import changed_keys
from mmrl.errors import IncompleteResults
from mmrl.results.collect import read_job
from mmrl.sweep import catalog
from mmrl.sweep.plan import Job
from mmrl.trainers import registry

GAP = 5.0
AVERAGE = "average"


def hm(base: float | None, novel: float | None) -> float | None:
    if base is None or novel is None:
        return None
    return 0.0 if base + novel == 0 else 2.0 * base * novel / (base + novel)


def spread(values: list[float], ci95: bool) -> float:
    n = len(values)
    if n == 0:
        return float("nan")
    m = sum(values) / n
    std = math.sqrt(sum((v - m) ** 2 for v in values) / n)  # population std (ddof 0)
    return 1.96 * std / math.sqrt(n) if ci95 else std


@dataclass
class Stat:
    values: dict[int, float]             # seed -> accuracy
    expected: list[int]
    mean: float | None = None
    spread: float | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def partial(self) -> bool:
        return self.n < len(self.expected)


@dataclass
class Entry:
    trainer: str
    dataset: str                         # stem, or AVERAGE
    shots: int | None
    metrics: dict[str, Stat | None] = field(default_factory=dict)
    hm: float | None = None
    partial: bool = False
    flags: list[tuple[str, int, str]] = field(default_factory=list)   # (metric, seed, why)
    datasets: int | None = None          # Average row: how many datasets it averages with every metric
    min_seeds: int | None = None         # Average row: the fewest seeds behind any of them

    def value(self, metric: str) -> float | None:
        if metric == "hm":
            return self.hm
        st = self.metrics.get(metric)
        return st.mean if st else None

    def spread_of(self, metric: str) -> float | None:
        st = self.metrics.get(metric)
        return st.spread if st else None

    @property
    def n_seeds(self) -> int:
        if self.min_seeds is not None:
            return self.min_seeds
        ns = [st.n for st in self.metrics.values() if st is not None]
        return min(ns) if ns else 0


@dataclass
class Report:
    protocol: str
    trainers: list[str]
    rows: list[str]                      # dataset stems in table order (+ AVERAGE last)
    shots: list[int | None]              # table sections: [None] except for fs
    metrics: list[str]                   # base, novel (hm is derived) | accuracy
    entries: dict[tuple[str, str, int | None], Entry]
    seeds: list[int]
    ci95: bool = False
    missing: list[str] = field(default_factory=list)
    log_sourced: bool = False
    excluded_from_average: tuple[str, ...] = ()
    mixed_versions: list[str] = field(default_factory=list)   # "<cell>: <version> (seeds), ..."

    @property
    def columns(self) -> list[str]:
        return self.metrics + (["hm"] if self.protocol == "b2n" else [])

    def entry(self, trainer: str, stem: str, shots: int | None) -> Entry | None:
        if not registry.trains(trainer) and shots is not None:
            shots = 0  # zero-shot CLIP is one column in every few-shot section
        return self.entries.get((trainer, stem, shots))


def _shots_key(job: Job) -> int | None:
    return job.shots if job.protocol == "fs" else None


def build_report(jobs: list[Job], *, ci95: bool = False, allow_partial: bool = False,
                 source: str | None = None) -> Report:
    """Aggregate the runs of ``jobs`` (one protocol's expansion).

    ``source``: the CD/DG training dataset, kept out of the Average (default: the dataset of
    the CD/DG training jobs)."""
    if not jobs:
        raise IncompleteResults("no runs selected")
    protocol = jobs[0].protocol
    metrics = ["base", "novel"] if protocol == "b2n" else ["accuracy"]
    cells: dict[tuple, Stat] = {}
    missing: list[str] = []
    configs: dict[tuple, tuple[str, dict]] = {}   # cell -> (first run dir, its config)
    mixed: list[str] = []
    versions: dict[tuple, dict[str, list[int]]] = {}   # cell -> code version -> seeds
    log_sourced = False
    trainers, rows, shots = [], [], []
    for job in jobs:
        key = (job.trainer, job.dataset, _shots_key(job), job.metric)
        cell = cells.setdefault(key, Stat({}, []))
        cell.expected.append(job.seed)
        got = read_job(job)
        if got.value is None:
            missing.append(f"{got.path} ({got.source})")
        else:
            cell.values[job.seed] = got.value
            log_sourced |= got.source == "log"
        if got.record is not None:
            version = str(got.record.get("code_version") or "unknown")
            versions.setdefault(key, {}).setdefault(version, []).append(job.seed)
        if got.config is not None:
            first = configs.setdefault(key, (got.path, got.config))
            diff = changed_keys(first[1], got.config, ignore=("SEED",))
            if diff:
                shown = ", ".join(f"{k} {a!r} vs {b!r}" for k, a, b in diff[:4])
                mixed.append(f"{got.path} and {first[0]} differ in {shown}")
        for lst, x in ((trainers, job.trainer), (rows, job.dataset)):
            if x not in lst:
                lst.append(x)
        k = _shots_key(job)
        if k not in shots and not (not registry.trains(job.trainer) and k is not None):
            shots.append(k)
    if mixed:
        raise IncompleteResults(
            f"{len(mixed)} run(s) were made with another config than the other seeds of their cell, so their mean "
            f"would mix two experiments:\n  " + "\n  ".join(mixed)
            + "\nrerun them with one config (`mmrl status` shows which runs are stale for the current one)")
    if missing and not allow_partial:
        raise IncompleteResults(
            f"{len(missing)} run(s) have no result, so their cells would average fewer seeds:\n  "
            + "\n  ".join(missing)
            + "\nrun the sweep again to complete them (`mmrl status` says why), or pass --allow-partial "
              "to print the table with those cells marked")
    if not shots:
        shots = [0] if protocol == "fs" else [None]
    for st in cells.values():
        if st.values:
            vals = list(st.values.values())
            st.mean, st.spread = sum(vals) / len(vals), spread(vals, ci95)

    entries: dict[tuple, Entry] = {}
    for (trainer, stem, k, metric), st in cells.items():
        e = entries.setdefault((trainer, stem, k), Entry(trainer, stem, k))
        e.metrics[metric] = st if st.values else None
        e.partial |= st.partial
    for e in entries.values():
        for m in metrics:
            e.metrics.setdefault(m, None)
        if protocol == "b2n":
            e.hm = hm(e.value("base"), e.value("novel"))

    excluded: tuple[str, ...] = ()
    if protocol in ("cd", "dg"):
        src = source or next((j.dataset for j in jobs if j.role == "train"), None)
        excluded = (src,) if src else ()
    report = Report(protocol, trainers, [r for r in rows], shots, metrics, entries, sorted({j.seed for j in jobs}),
                    ci95, missing, log_sourced, excluded, _mixed_versions(versions))
    _flag(report)
    _averages(report)
    return report


def _mixed_versions(versions: dict[tuple, dict[str, list[int]]]) -> list[str]:
    out = []
    for (trainer, stem, k, metric), by_version in versions.items():
        if len(by_version) > 1:
            cell = " ".join(x for x in (trainer, catalog.display_name(stem), f"{k}-shot" if k is not None else "",
                                        metric if metric != "accuracy" else "") if x)
            out.append(f"{cell}: " + ", ".join(f"{v} (seed{'s' if len(s) > 1 else ''} {' '.join(map(str, s))})"
                                               for v, s in by_version.items()))
    return out


def _flag(report: Report) -> None:
    floor_by = next((t for t in report.trainers if not registry.trains(t)), None)  # zero-shot: the floor
    for e in list(report.entries.values()):
        if not registry.trains(e.trainer):
            continue
        zs = report.entry(floor_by, e.dataset, e.shots) if floor_by else None
        for metric, st in e.metrics.items():
            if st is None:
                continue
            floor = zs.value(metric) if zs else None
            for seed, v in sorted(st.values.items()):
                others = [x for s, x in st.values.items() if s != seed]
                name = catalog.display_name(e.dataset)
                what = f"{e.trainer} {name}" + (f" {e.shots}-shot" if e.shots is not None else "") + \
                       (f" {metric}" if metric != "accuracy" else "") + f" seed {seed} = {v:.2f}"
                if others and v < median(others) - GAP:
                    e.flags.append((metric, seed, f"{what}: more than {GAP:g} points below the other seeds "
                                                  f"(median {median(others):.2f})"))
                if floor is not None and v < floor:
                    e.flags.append((metric, seed, f"{what}: below zero-shot CLIP ({floor:.2f})"))


def _averages(report: Report) -> None:
    stems = [s for s in report.rows if s not in report.excluded_from_average]
    if not stems:
        return  # e.g. a CD run on the demo dataset alone: its source, no targets
    for trainer in report.trainers:
        for k in report.shots:
            if not registry.trains(trainer) and k is not None and k != report.shots[0]:
                continue
            kk = 0 if (not registry.trains(trainer) and k is not None) else k
            present = [report.entries.get((trainer, s, kk)) for s in stems]
            avg = Entry(trainer, AVERAGE, kk)
            have = [e for e in present if e is not None]
            for m in report.metrics:
                means = [e.value(m) for e in have if e.value(m) is not None]
                # No seed values and no spread: the Average is over datasets, not seeds.
                avg.metrics[m] = Stat({}, [], sum(means) / len(means), None) if means else None
                avg.partial |= len(means) < len(stems) or any(e.partial for e in have)
            avg.datasets = sum(all(e.value(m) is not None for m in report.metrics) for e in have)
            avg.min_seeds = min((e.n_seeds for e in have), default=0)
            if report.protocol == "b2n":
                avg.hm = hm(avg.value("base"), avg.value("novel"))  # HM of the averages, not the mean of HMs
            if any(st is not None for st in avg.metrics.values()):
                report.entries[(trainer, AVERAGE, kk)] = avg
    if AVERAGE not in report.rows:
        report.rows.append(AVERAGE)
