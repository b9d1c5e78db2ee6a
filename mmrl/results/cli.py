"""``mmrl table`` and ``mmrl plot``: the only functions here that print."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from mmrl.errors import ConfigError
from mmrl.sweep.plan import PROTOCOLS

EPILOG = """\
Values come from each run's record.json (complete runs made with the sweep's
--eval-only / --load-epoch / --allow-unfinished flags only), or from the last
"=> result" block of log.txt for run directories without a record (the authors' runs,
including their CD layout under base2new/).  Missing seeds refuse the table unless
--allow-partial, which marks those cells with a dagger.  `mmrl status` tells whether the
runs on disk still match the current configs.
"""


def _add_common(p: argparse.ArgumentParser, *, cross_domain: bool) -> None:
    """``cross_domain``: the command takes the cd/dg protocols, whose datasets are targets of a source."""
    p.add_argument("--output", default="output", help="results root (default: ./output)")
    p.add_argument("--trainer", "--trainers", dest="trainers", nargs="+", metavar="T",
                   help="default: the trainers found on disk")
    p.add_argument("--datasets", nargs="+", metavar="STEM", help="default: the datasets found on disk"
                                                                  + (" (cd/dg: the targets)" if cross_domain else ""))
    if cross_domain:
        p.add_argument("--source", default=None, help="cd/dg source dataset (default: imagenet)")
    else:
        p.set_defaults(source=None)
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="expected seeds (default: 1 2 3)")
    p.add_argument("--shots", nargs="+", type=int, default=None, help="fs shots (default: those on disk)")


def _report(args, protocol: str, *, allow_partial: bool, ci95: bool = False):
    from mmrl.results.aggregate import build_report
    from mmrl.sweep.discover import found_on_disk, select
    from mmrl.sweep.plan import expand
    if found_on_disk(args.output, protocol).empty and not args.datasets:
        raise ConfigError(f"no {protocol} runs under {args.output}/; run `mmrl sweep --protocol {protocol} "
                          f"--output {args.output}` first (or pass --output)")
    sel = select(args.output, protocol, trainers=args.trainers, datasets=args.datasets, seeds=args.seeds,
                 shots=args.shots, source=args.source)
    jobs = expand(protocol, trainers=sel.trainers, datasets=sel.datasets, seeds=sel.seeds, shots=sel.shots,
                  root="", output=args.output, source=sel.source)
    return build_report(jobs, ci95=ci95, allow_partial=allow_partial, source=sel.source), sel


def register_table(subparsers) -> None:
    p = subparsers.add_parser("table", help="paper tables (markdown, LaTeX, CSV) from the runs on disk",
                              description="Aggregate seeds into the paper's tables.", epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", required=True, choices=PROTOCOLS)
    p.add_argument("--format", choices=("md", "latex", "csv"), default="md")
    p.add_argument("--layout", choices=("wide", "paper"), default="wide",
                   help="wide: datasets as rows, a column group per trainer, mean ± spread (default); "
                        "paper: the papers' tables, methods as rows, means, best bold and second underlined")
    p.add_argument("--published", action="store_true",
                   help="wide: add the published numbers and our difference as columns; "
                        "paper: add a row per published source after each method")
    p.add_argument("--ci95", action="store_true", help="95%% confidence interval instead of the std (wide)")
    p.add_argument("--per-seed", action="store_true", help="one extra column per seed (wide)")
    p.add_argument("--allow-partial", action="store_true",
                   help="print cells with missing seeds (marked with a dagger) instead of refusing")
    p.add_argument("--save", default=None, metavar="FILE", help="also write the table to FILE")
    _add_common(p, cross_domain=True)
    p.set_defaults(func=cmd_table)


def cmd_table(args) -> int:
    if args.layout == "paper" and (args.ci95 or args.per_seed):
        raise ConfigError("--ci95 and --per-seed only apply to --layout wide: the paper layout prints means "
                          "(drop them, or use --layout wide)")
    report, sel = _report(args, args.protocol, allow_partial=args.allow_partial, ci95=args.ci95)
    text = _paper_text(report, args, sel.source) if args.layout == "paper" else _wide_text(report, args, sel.source)
    print(text, end="")
    if args.save:
        Path(args.save).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save).write_text(text)
    return 0


def _paper_text(report, args, source: str) -> str:
    from mmrl.results import paper_render
    from mmrl.results.paper import build_paper
    table = build_paper(report, published=args.published, source=source)
    render = {"md": paper_render.to_markdown, "latex": paper_render.to_latex, "csv": paper_render.to_csv}
    return render[args.format](table)


def _wide_text(report, args, source: str) -> str:
    from mmrl.results.render import build_grid, to_csv, to_latex, to_markdown
    if args.format == "csv":
        return to_csv(report, published=args.published, per_seed=args.per_seed)
    grid = build_grid(report, published=args.published, per_seed=args.per_seed, source=source)
    return to_markdown(grid) if args.format == "md" else to_latex(grid)


def register_plot(subparsers) -> None:
    p = subparsers.add_parser("plot", help="PNG figures: few-shot curves (fs) or base/novel/HM bars (b2n)",
                              description="Plot the runs on disk (cells with missing seeds are plotted "
                                          "from the seeds that exist).")
    p.add_argument("--protocol", required=True, choices=("fs", "b2n"))
    p.add_argument("--out", required=True, help="folder for the PNG files")
    _add_common(p, cross_domain=False)
    p.set_defaults(func=cmd_plot)


def cmd_plot(args) -> int:
    from mmrl.results.plots import plot_b2n, plot_few_shot
    report, _ = _report(args, args.protocol, allow_partial=True)
    out = Path(args.out)
    paths = plot_few_shot(report, out) if args.protocol == "fs" else plot_b2n(report, out)
    for p in paths:
        print(os.fspath(p))
    if report.missing:
        print(f"note: {len(report.missing)} run(s) missing; those points use the seeds that exist")
        for m in report.missing:  # a run that exists but was not read: say why (`mmrl status` lists the rest)
            if not m.endswith("(not run)"):
                print(f"  {m}")
    return 0
