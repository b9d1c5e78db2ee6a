"""PNG figures: few-shot accuracy against shots, and base/novel/HM bars (matplotlib, Agg)."""
from __future__ import annotations

import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402

from mmrl.results import methods  # noqa: E402
from mmrl.results.aggregate import AVERAGE, Report  # noqa: E402
from mmrl.sweep import catalog  # noqa: E402
from mmrl.trainers import registry  # noqa: E402

log = logging.getLogger("mmrl.results")


def _name(stem: str) -> str:
    return "Average" if stem == AVERAGE else catalog.display_name(stem)


def plot_few_shot(report: Report, out_dir: Path) -> list[Path]:
    """One panel per dataset (and the average): accuracy against shots, one line per trainer."""
    shots = sorted(k for k in report.shots if k is not None)
    xs = {k: i + 1 for i, k in enumerate(shots)}  # even spacing; x = 0 is zero-shot CLIP
    stems = report.rows
    ncols = min(4, len(stems))
    nrows = math.ceil(len(stems) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.0 * nrows), squeeze=False)
    paths = []
    for ax, stem in zip(axes.flat, stems):
        _few_shot_panel(ax, report, stem, shots, xs)
    for ax in list(axes.flat)[len(stems):]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=10)
    fig.suptitle("Few-shot classification: accuracy (%) against shots per class", fontsize=13)
    fig.tight_layout(rect=(0, 0.05, 1, 0.96))
    paths.append(_save(fig, out_dir / "few_shot.png"))

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    _few_shot_panel(ax, report, AVERAGE, shots, xs)
    ax.legend(fontsize=9, loc="lower right")
    ax.set_title(f"Few-shot accuracy, average over {len([s for s in stems if s != AVERAGE])} dataset(s)")
    fig.tight_layout()
    paths.append(_save(fig, out_dir / "few_shot_average.png"))
    return paths


def _few_shot_panel(ax, report: Report, stem: str, shots: list[int], xs: dict[int, int]) -> None:
    for t in methods.row_order(report.trainers):
        color = methods.color(t)
        if not registry.trains(t):
            e = report.entry(t, stem, 0)
            if e is not None and e.value("accuracy") is not None:
                ax.axhline(e.value("accuracy"), color=color, ls="--", lw=1)
                ax.plot([0], [e.value("accuracy")], marker="*", ms=11, color=color, ls="none",
                        label=methods.zero_shot_label(t))
            continue
        pts = [(xs[k], report.entry(t, stem, k)) for k in shots]
        pts = [(x, e) for x, e in pts if e is not None and e.value("accuracy") is not None]
        if not pts:
            continue
        x = [p[0] for p in pts]
        y = [p[1].value("accuracy") for p in pts]
        err = [p[1].spread_of("accuracy") or 0.0 for p in pts]
        ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, color=color, label=methods.display_name(t))
    ax.set_xticks([0, *xs.values()], ["0", *map(str, shots)])
    ax.set_xlim(-0.4, len(shots) + 0.4)
    ax.set_title(_name(stem), fontsize=11, fontweight="bold" if stem == AVERAGE else "normal")
    ax.set_xlabel("shots per class")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)


def plot_b2n(report: Report, out_dir: Path) -> list[Path]:
    """Three panels (Base, Novel, HM): bars per dataset, one colour per trainer."""
    stems = report.rows
    trainers = methods.row_order(report.trainers)
    width = 0.8 / max(1, len(trainers))
    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, 0.9 * len(stems) * max(1, len(trainers)) + 2), 10), sharex=True)
    for ax, metric, title in zip(axes, ("base", "novel", "hm"), ("Base classes", "Novel classes", "Harmonic mean")):
        for i, t in enumerate(trainers):
            xs, ys, errs = [], [], []
            for j, stem in enumerate(stems):
                e = report.entry(t, stem, None)
                v = e.value(metric) if e else None
                if v is None:
                    continue
                xs.append(j + (i - (len(trainers) - 1) / 2) * width)
                ys.append(v)
                errs.append((e.spread_of(metric) or 0.0) if metric != "hm" else 0.0)
            bars = ax.bar(xs, ys, width=width * 0.95, yerr=errs, capsize=2, color=methods.color(t),
                          label=methods.display_name(t))
            if len(stems) <= 12:
                ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title, fontsize=11, loc="left")
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xticks(range(len(stems)), [_name(s) for s in stems], rotation=30, ha="right")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955), ncol=len(labels),
               frameon=False, fontsize=10)  # above the panels, never over a bar
    fig.suptitle("Base-to-novel generalisation (16 shots): mean over seeds", fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return [_save(fig, out_dir / "base2new.png")]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log.info("wrote %s", path)
    return path
