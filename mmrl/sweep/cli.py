"""``mmrl sweep`` and ``mmrl status``: the only functions here that print."""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from collections import Counter
from pathlib import Path

from mmrl.errors import ConfigError, MMRLError
from mmrl.sweep import catalog
from mmrl.sweep.plan import DEFAULT_SEEDS, DEFAULT_SHOTS, PROTOCOLS, Job, chains, check_config_files, expand
from mmrl.trainers import registry

LAYOUT = """\
run directories (the authors' scheme; <T> trainer, <CFG> config stem):
  b2n  <output>/base2new/train_base/<dataset>/shots_16/<T>/<CFG>/seed<S>   (train on base classes)
       <output>/base2new/test_new/<dataset>/shots_16/<T>/<CFG>/seed<S>     (eval on new classes)
  fs   <output>/few_shot/<dataset>/shots_<K>/<T>/<CFG>/seed<S>
  cd   <output>/cross_dataset/train/<source>/shots_16/<T>/<CFG>/seed<S>   (train, --source imagenet)
  +dg  <output>/cross_dataset/test/<target>/shots_16/<T>/<CFG>/seed<S>    (eval)
Unlike the authors' scripts, cross-dataset / domain-generalisation runs get their own
cross_dataset/ tree instead of reusing base2new/train_base and base2new/test_new; dg
(ImageNet -> V2, Sketch, A, R) shares the cd training.  A method that trains nothing
(zero-shot CLIP) runs once (first seed), eval-only, under shots_0 (b2n: test_base/ and test_new/).

A complete run (record.json complete, same config hash) is skipped; a failed or killed one
resumes; a run whose config changed (or whose training was rerun since) is moved to
<parent>/.history/ and rerun.  A lock per run directory keeps two sweeps off the same job.
"""


def _add_selection(p: argparse.ArgumentParser, *, defaults: bool) -> None:
    default = list(registry.default_sweep_trainers())
    p.add_argument("--trainer", "--trainers", dest="trainers", nargs="+", metavar="T",
                   default=default if defaults else None,
                   help="%s (default: %s)" % (", ".join(registry.names()),
                                              " ".join(default) if defaults else "the trainers found on disk"))
    p.add_argument("--datasets", nargs="+", metavar="STEM",
                   help="dataset stems (configs/datasets/<stem>.yaml); for cd/dg the target datasets "
                        "(default: the protocol's datasets)")
    p.add_argument("--source", default=None, help="cd/dg source dataset (default: imagenet)")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="default: " + " ".join(map(str, DEFAULT_SEEDS)))
    p.add_argument("--shots", nargs="+", type=int, default=None,
                   help="fs shots (default: " + " ".join(map(str, DEFAULT_SHOTS)) + ")")
    p.add_argument("--output", default="output", help="results root (default: ./output)")
    p.add_argument("--opts", nargs="+", default=[], metavar="KEY VALUE",
                   help="extra config opts for every job, after the protocol's own (they change the config hash)")


def register_sweep(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep", help="run a whole protocol (b2n, cd, dg, fs): skip complete runs, resume or rerun the rest",
        description="Expand a protocol into train.py jobs and run them.", epilog=LAYOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", required=True, choices=PROTOCOLS)
    _add_selection(p, defaults=True)
    p.add_argument("--root", default=None, help="dataset root (default: $DATA; neither: the demo dataset)")
    p.add_argument("--executor", choices=("local", "gpus", "slurm", "print"), default="local",
                   help="local: one job after another; gpus: one job per free GPU; slurm: submitit job "
                        "arrays; print: the commands and an sbatch array script (default: local)")
    p.add_argument("--gpus", default=None, help="gpus executor: GPU ids as CUDA_VISIBLE_DEVICES takes them, e.g. "
                                                "0,1,2,3; within CUDA_VISIBLE_DEVICES when it is set (default: all visible)")
    p.add_argument("--command", default=None,
                   help='how to start one run (default: $MMRL_TRAIN_COMMAND or "python -m mmrl train")')
    s = p.add_argument_group("slurm / print")
    s.add_argument("--partition", default=None)
    s.add_argument("--timeout-min", type=int, default=24 * 60, help="per array task (default: 1440)")
    s.add_argument("--parallel", type=int, default=16, help="array parallelism cap (default: 16)")
    s.add_argument("--cpus-per-task", type=int, default=None)
    s.add_argument("--mem-gb", type=float, default=None)
    s.add_argument("--slurm-param", action="append", default=[], metavar="KEY=VALUE",
                   help="more submitit slurm_* parameters, e.g. account=myproj, mail-type=END, "
                        "exclusive=true (repeatable)")
    s.add_argument("--cluster", default="slurm", choices=("slurm", "local"),
                   help="submitit cluster (default: slurm; local runs the arrays on this machine)")
    s.add_argument("--wait", action="store_true", help="slurm: wait for the arrays and print the summary")
    s.add_argument("--script", default=None, help="print: where to write the sbatch script "
                                                  "(default: <output>/sweep_<protocol>.sbatch)")
    p.add_argument("--chain", type=int, default=None, help=argparse.SUPPRESS)  # one array task of the script
    p.set_defaults(func=cmd_sweep)


def _resolve_inputs(args) -> tuple[list[Job], list[str]]:
    from mmrl.sweep.dataroot import resolve_data_root
    if args.shots and args.protocol != "fs":
        raise ConfigError(f"--shots applies to --protocol fs only; {args.protocol} runs use 16 shots (or none). "
                          f"Leave --shots out.")
    if Path(args.output).exists() and not Path(args.output).is_dir():
        raise ConfigError(f"--output {args.output} is a file; pass the folder the run directories go under.")
    root = resolve_data_root(args.root)
    datasets, source = args.datasets, args.source or catalog.CD_SOURCE
    if root.demo:
        if datasets and set(datasets) != {catalog.DEMO}:
            raise ConfigError(f"--datasets {' '.join(datasets)} needs the real data: pass --root /path/to/datasets "
                              "or export DATA=/path/to/datasets")
        datasets, source = [catalog.DEMO], catalog.DEMO
        print(f"note: {root.note}")
    jobs = expand(args.protocol, trainers=args.trainers, datasets=datasets,
                  seeds=args.seeds or DEFAULT_SEEDS, shots=args.shots or DEFAULT_SHOTS, root=root.path,
                  output=args.output, extra_opts=args.opts, source=source)
    check_config_files(jobs)
    # The arguments that rebuild this exact plan (for the sbatch script's --chain tasks).
    again = ["--protocol", args.protocol, "--trainer", *args.trainers, "--root", root.path,
             "--output", args.output, "--source", source,
             "--seeds", *map(str, args.seeds or DEFAULT_SEEDS)]
    if args.protocol == "fs":  # the only protocol that takes --shots
        again += ["--shots", *map(str, args.shots or DEFAULT_SHOTS)]
    if datasets:
        again += ["--datasets", *datasets]
    if args.opts:
        again += ["--opts", *args.opts]
    if args.command:
        again += ["--command", args.command]
    return jobs, again


def _short(text: str, n: int = 100) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _progress(total: int):
    done = [0]

    def show(o) -> None:
        done[0] += 1
        took = f"{o.seconds:7.1f}s" if o.seconds else " " * 8
        extra = f"  ({_short(o.detail)})" if o.detail and o.action != "skipped" else ""
        print(f"[{done[0]:>4}/{total}] {o.action:<9} {took}  {o.job.run_dir}{extra}", flush=True)
    return show


def _summary(outcomes) -> int:
    counts = Counter(o.action for o in outcomes)
    print("\n=== sweep summary: " + ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) + " ===")
    problems = [o for o in outcomes if o.problem]
    for o in problems:
        print(f"\n{o.action.upper()}: {o.job.label}\n  dir: {o.job.run_dir}\n  why: {o.detail}")
        if o.log:
            print(f"  log: {o.log}")
        if o.tail:
            print("  last lines of its output:")
            for line in o.tail:
                print(f"    | {line}")
    elsewhere = [o for o in outcomes if o.action == "elsewhere"]
    if elsewhere:
        print(f"\n{len(elsewhere)} job(s) are running in another sweep; run this sweep again later for them.")
    if problems:
        print(f"\n{len(problems)} job(s) did not complete; fix the cause and run the same sweep again "
              "(complete runs are skipped, failed ones resume).")
    return 1 if problems else 0


def _runner(args):
    from mmrl.sweep.runner import CommandRunner, default_command
    prefix = tuple(shlex.split(args.command)) if args.command else default_command()
    return CommandRunner(prefix=prefix, cwd=os.getcwd())


def _states(jobs):
    from mmrl.sweep.state import JobState, inspect
    out = {}
    for j in jobs:
        try:
            out[j.id] = inspect(j)
        except MMRLError as e:
            out[j.id] = JobState("failed", "run", f"cannot resolve its config: {e}")
    return out


def cmd_sweep(args) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    jobs, again = _resolve_inputs(args)
    runner = _runner(args)
    if args.chain is not None:
        groups = chains(jobs)
        if not 0 <= args.chain < len(groups):
            raise ConfigError(f"--chain {args.chain}: this plan has chains 0..{len(groups) - 1}")
        jobs = groups[args.chain]
        args.executor = "local"
    print(f"sweep {args.protocol}: {len(jobs)} jobs, executor {args.executor}, output {args.output}")

    if args.executor == "print":
        return _print_plan(args, jobs, runner, again)
    if args.executor == "slurm":
        return _slurm(args, jobs, runner)
    if args.executor == "gpus":
        from mmrl.sweep.executors import detect_gpus, run_gpu_pool
        gpus = detect_gpus(args.gpus)
        print(f"GPUs: {', '.join(gpus) if gpus else 'none'}")
        outcomes = run_gpu_pool(jobs, runner, gpus, progress=_progress(len(jobs)))
    else:
        from mmrl.sweep.executors import run_local
        outcomes = run_local(jobs, runner, progress=_progress(len(jobs)))
    return _summary(outcomes)


def _pending_chains(jobs) -> tuple[list[int], list[list[Job]], dict]:
    states = _states(jobs)
    groups = chains(jobs)

    def pending(g: list[Job]) -> bool:
        if g[0].role == "train" and states[g[0].id].action == "elsewhere":
            return False  # its evaluations could only wait for the sweep that holds the training
        return any(states[j.id].action not in ("skip", "elsewhere") for j in g)
    idx = [i for i, g in enumerate(groups) if pending(g)]
    return idx, [groups[i] for i in idx], states


def _print_plan(args, jobs, runner, again) -> int:
    from mmrl.sweep.printer import command_lines, exports, sbatch_script
    idx, pending, states = _pending_chains(jobs)
    lines = command_lines([j for chain in pending for j in chain], runner.prefix, states)
    print(f"# {len(lines)} command(s) to run, in order (complete runs left out); cwd {os.getcwd()}")
    for line in (exports() if lines else []) + lines:
        print(line)
    if not idx:
        print("# nothing to run: every job is complete or running elsewhere")
        return 0
    script = Path(args.script or Path(args.output) / f"sweep_{args.protocol}.sbatch")
    logs = Path(args.output).resolve() / ".slurm"
    text = sbatch_script(idx, again, cwd=os.getcwd(), python=sys.executable, parallelism=args.parallel,
                         timeout_min=args.timeout_min, log_dir=str(logs), name=f"mmrl-{args.protocol}",
                         partition=args.partition, cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb)
    script.parent.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    script.write_text(text)
    print(f"# sbatch array script ({len(idx)} task(s), one per training chain): {script}")
    print(f"#   submit with: sbatch {shlex.quote(str(script))}")
    return 0


def _slurm_value(text: str):
    """Numbers as numbers (submitit computes with some, e.g. nodes), true as a bare sbatch flag."""
    if text.lower() == "true":
        return True
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _slurm_extra(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--slurm-param {pair!r} must look like KEY=VALUE (e.g. account=myproj)")
        k, v = pair.split("=", 1)
        out[k.strip().replace("-", "_")] = _slurm_value(v.strip())  # sbatch's spelling (mail-type) too
    return out


def _slurm(args, jobs, runner) -> int:
    from mmrl.sweep import slurm
    _, todo, _ = _pending_chains(jobs)
    if not todo:
        print("nothing to submit: every job is complete or running elsewhere (run this sweep again once "
              "the other sweeps are done)")
        return 0
    opts = slurm.SlurmOptions(folder=str(Path(args.output) / ".submitit"), cluster=args.cluster,
                              parallelism=args.parallel, timeout_min=args.timeout_min, partition=args.partition,
                              cpus_per_task=args.cpus_per_task, mem_gb=args.mem_gb,
                              name=f"mmrl-{args.protocol}", extra=_slurm_extra(args.slurm_param))
    submitted = slurm.submit(todo, runner, opts)
    for job, chain in zip(submitted, todo):
        print(f"submitted {job.job_id}: {chain[0].run_dir} (+{len(chain) - 1} eval)")
    if not args.wait:
        print(f"{len(submitted)} array task(s) submitted; logs under {opts.folder}; check with "
              f"`mmrl status --protocol {args.protocol} --output {args.output}`")
        return 0
    outcomes = slurm.wait(submitted, todo)
    show = _progress(len(outcomes))
    for o in outcomes:
        show(o)
    return _summary(outcomes)


# ---------------------------------------------------------------------------------------------
# status

def register_status(subparsers) -> None:
    p = subparsers.add_parser(
        "status", help="per cell (trainer x dataset x shots x seed): complete, running, failed, missing, stale",
        description="Report the state of every run of a protocol; exit status 1 unless all are complete.",
        epilog=LAYOUT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", nargs="+", choices=PROTOCOLS, default=None,
                   help="default: every protocol with runs under --output")
    _add_selection(p, defaults=False)
    p.add_argument("--root", default=None, help=argparse.SUPPRESS)  # not part of a run's identity
    p.add_argument("--problems", action="store_true", help="list only the cells that are not complete")
    p.set_defaults(func=cmd_status)


_WORST = ("failed", "stale", "running", "missing", "complete")


def _cells(jobs, states):
    """Group jobs into cells; the cell's state is its worst job's."""
    cells: dict[tuple, list] = {}
    for j in jobs:
        cells.setdefault((j.trainer, j.dataset, j.shots, j.seed), []).append(j)
    rows = []
    for (trainer, stem, shots, seed), js in cells.items():
        worst = min((states[j.id] for j in js), key=lambda st: _WORST.index(st.state))
        parts = []
        for j in js:
            st = states[j.id]
            if st.state in ("complete", "missing"):
                continue  # say what is wrong, not what is fine or merely not done yet
            what = j.role + (f" ({'new' if j.metric == 'novel' else j.metric})" if j.metric != "accuracy" else "")
            if j.protocol in ("cd", "dg") and j.role == "train":
                what += f" on {j.dataset}"
            parts.append(f"{what}: {st.state}" + (f" ({_short(st.detail, 80)})" if st.detail else ""))
        why = "; ".join(parts)
        rows.append((trainer, stem, shots, seed, worst.state, why))
    return rows


def cmd_status(args) -> int:
    from tabulate import tabulate

    from mmrl.sweep.discover import found_on_disk, select
    # dg shares cd's trainings: list it by default only when some dg target was evaluated
    protocols = args.protocol or [p for p in PROTOCOLS if (found_on_disk(args.output, p).stems if p == "dg"
                                                           else not found_on_disk(args.output, p).empty)]
    if not protocols:
        print(f"no runs under {args.output}/ (looked for base2new/, cross_dataset/, few_shot/); "
              f"start one with `mmrl sweep --protocol b2n`")
        return 1
    total: Counter = Counter()
    for protocol in protocols:
        sel = select(args.output, protocol, trainers=args.trainers, datasets=args.datasets, seeds=args.seeds,
                     shots=args.shots, source=args.source, whole_protocol=True)
        jobs = expand(protocol, trainers=sel.trainers, datasets=sel.datasets, seeds=sel.seeds, shots=sel.shots,
                      root=args.root or os.environ.get("DATA", ""), output=args.output, extra_opts=args.opts,
                      source=sel.source)
        rows = _cells(jobs, _states(jobs))
        counts = Counter(r[4] for r in rows)
        total.update(counts)
        shown = [r for r in rows if r[4] != "complete"] if args.problems else rows
        print(f"== {protocol}: " + ", ".join(f"{counts[s]} {s}" for s in _WORST[::-1] if counts[s]) + " ==")
        if shown:
            print(tabulate([(t, d, k, s, st, why) for t, d, k, s, st, why in shown],
                           headers=["trainer", "dataset", "shots", "seed", "state", "detail"]))
        print()
    bad = sum(n for s, n in total.items() if s != "complete")
    print(f"{sum(total.values()) - bad} of {sum(total.values())} cell(s) complete")
    return 1 if bad else 0
