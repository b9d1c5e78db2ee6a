"""Protocol -> jobs: the authors' run-directory scheme and train.py arguments.

One job is one ``train.py`` invocation writing one run directory.  Layout
(docs/protocol.md#run-directories-and-aggregation; ``<out>`` is the output root, ``<T>`` the
trainer, ``<CFG>`` the trainer config stem):

    B2N   train  <out>/base2new/train_base/<stem>/shots_16/<T>/<CFG>/seed<S>
          eval   <out>/base2new/test_new/<stem>/shots_16/<T>/<CFG>/seed<S>   (--model-dir = train)
    FS           <out>/few_shot/<stem>/shots_<K>/<T>/<CFG>/seed<S>
    CD/DG train  <out>/cross_dataset/train/<source>/shots_16/<T>/<CFG>/seed<S>
          eval   <out>/cross_dataset/test/<target>/shots_16/<T>/<CFG>/seed<S>

Deviation from the authors: their CD runs reuse the base2new/train_base and test_new trees
(told apart only by the CFG component); ours get their own
cross_dataset/ tree so a B2N aggregation never picks them up.  DG (ImageNet -> V2, Sketch,
A, R) shares the CD training.  A target equal to the source is not evaluated again (the
training's end-of-training test is that number), so the demo dataset alone gives trainings only.

A method that trains nothing (zero-shot CLIP) has no randomness, so it runs once (the first
seed), eval-only, with its config and ``shots_0``: B2N into test_base/ and test_new/, CD/DG into
cross_dataset/test/ (the source included), FS into few_shot/<stem>/shots_0/.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mmrl.config import config_file
from mmrl.errors import ConfigError
from mmrl.sweep import catalog
from mmrl.trainers import registry

PROTOCOLS = ("b2n", "cd", "dg", "fs")
TASKS = {"b2n": "B2N", "cd": "CD", "dg": "CD", "fs": "FS"}
DEFAULT_SEEDS = (1, 2, 3)
DEFAULT_SHOTS = (1, 2, 4, 8, 16)


@dataclass(frozen=True)
class Job:
    protocol: str
    trainer: str
    dataset: str             # stem of the dataset this run reports on (the table row)
    shots: int               # 0 for a method that trains nothing
    seed: int
    cfg: str
    role: str                # "train" (trains, then tests) or "eval" (--eval-only)
    metric: str              # what its accuracy is in the tables: base | novel | accuracy
    run_dir: str             # as passed to --output-dir
    argv: tuple[str, ...]    # train.py arguments
    after: tuple[str, ...] = ()   # run_dirs of the jobs that must complete first
    model_dir: str | None = None
    cost: float = 1.0        # rough relative cost (largest first on a GPU pool)

    @property
    def id(self) -> str:
        return self.run_dir

    @property
    def label(self) -> str:
        what = {"base": "base", "novel": "new", "accuracy": ""}[self.metric]
        shots = f" {self.shots}-shot" if self.protocol == "fs" else ""
        return " ".join(x for x in (self.trainer, self.dataset + shots, what, f"seed{self.seed}",
                                    "train" if self.role == "train" else "eval") if x)


def check_protocol(protocol: str) -> str:
    p = protocol.lower()
    if p not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)} "
                          "(b2n = base-to-novel, cd = cross-dataset, dg = domain generalisation, fs = few-shot)")
    return p


def cfg_for(protocol: str, trainer: str, stem: str, shots: int = 16) -> str:
    """The trainer config stem (docs/protocol.md#configs-per-task; the demo dataset has its own)."""
    return registry.get(trainer).config_stem(protocol, stem, demo=stem == catalog.DEMO, shots=shots)


def _absolute(path: Path) -> str:
    """Absolute, so that a job runs from any working directory (a SLURM node, another shell)."""
    return str(path.resolve())


def trainer_config_file(trainer: str, cfg: str) -> str:
    return _absolute(config_file("trainers", registry.get(trainer).config_folder(), f"{cfg}.yaml"))


def check_config_files(jobs: list[Job]) -> None:
    """Refuse, before any job starts, a plan whose config files are missing (else every job of
    that trainer or dataset would fail on it)."""
    plugin = "for a plug-in put it in a folder and set MMRL_CONFIGS to that folder (which needs only your own files)"
    for job in jobs:
        path = job.argv[job.argv.index("--dataset-config-file") + 1]
        if not os.path.isfile(path):
            raise ConfigError(f"unknown dataset {job.dataset!r} (--datasets / --source): no config file {path}. "
                              f"The shipped stems are {', '.join(catalog.KNOWN_STEMS)}; {plugin}.")
        path = job.argv[job.argv.index("--config-file") + 1]
        if not os.path.isfile(path):
            raise ConfigError(f"--trainers {job.trainer} has no config file {path}; write it, or {plugin}.")


def run_dir(output: str, *parts: str) -> str:
    return os.path.join(output, *parts)


def _argv(root: str, seed: int, trainer: str, stem: str, cfg: str, out_dir: str,
          model_dir: str | None, eval_only: bool, opts: list[str]) -> tuple[str, ...]:
    argv = (["--root", root] if root else []) + ["--seed", str(seed), "--trainer", trainer,
            "--dataset-config-file", _absolute(catalog.dataset_yaml(stem)),
            "--config-file", trainer_config_file(trainer, cfg), "--output-dir", out_dir]
    if model_dir:
        argv += ["--model-dir", model_dir]
    if eval_only:
        argv += ["--eval-only"]
    return tuple(argv + opts)


@functools.lru_cache(maxsize=None)  # one read per file, not per job
def _epochs(config_file: str) -> int:
    """OPTIM.MAX_EPOCH of a trainer config file (1 when it cannot be read: only orders jobs)."""
    try:
        return int(((yaml.safe_load(Path(config_file).read_text()) or {}).get("OPTIM") or {}).get("MAX_EPOCH", 1))
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return 1


def _cost(stem: str, shots: int, train: bool, config_file: str) -> float:
    classes, test = catalog.sizes(stem)
    if not train:
        return float(test)
    return 3.0 * classes * shots * _epochs(config_file) + test  # forward+backward ~ 3 test forwards


@dataclass
class _Builder:
    protocol: str
    root: str
    output: str
    extra: list[str] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)

    def add(self, *, trainer: str, stem: str, shots: int, seed: int, cfg: str, role: str, metric: str,
            out_dir: str, opts: list[str], model_dir: str | None = None, eval_only: bool = False) -> Job:
        job = Job(protocol=self.protocol, trainer=trainer, dataset=stem, shots=shots, seed=seed, cfg=cfg,
                  role=role, metric=metric, run_dir=out_dir,
                  argv=_argv(self.root, seed, trainer, stem, cfg, out_dir, model_dir, eval_only,
                             opts + self.extra),
                  after=(model_dir,) if model_dir else (), model_dir=model_dir,
                  cost=_cost(stem, shots, role == "train" and not eval_only, trainer_config_file(trainer, cfg)))
        self.jobs.append(job)
        return job


# Keys the plan sets per job and names its run directories after: from --opts they would make a
# run whose directory says otherwise (2 shots under shots_16), which the tables would then read.
PLAN_KEYS = {"DATASET.NUM_SHOTS": "--shots (few-shot protocol)", "DATASET.SUBSAMPLE_CLASSES": "--protocol",
             "TASK": "--protocol", "SEED": "--seeds", "OUTPUT_DIR": "--output", "DATASET.ROOT": "--root",
             "TRAINER.NAME": "--trainers", "DATASET.NAME": "--datasets"}


def _check_opts(trainers, opts: list[str]) -> None:
    """--opts keys and value types, checked once here instead of failing in every job."""
    from mmrl.config.layers import ConfigBuilder
    for key in opts[::2]:
        if str(key).upper() in PLAN_KEYS:
            raise ConfigError(f"--opts {key}: the sweep sets {str(key).upper()} for each job and names its run "
                              f"directory after it; use {PLAN_KEYS[str(key).upper()]} instead.")
    for t in trainers:
        try:
            ConfigBuilder(t).merge_opts(opts)
        except ConfigError as e:
            raise ConfigError(f"--opts {' '.join(opts)}: {str(e).removeprefix('cli opts: ')}") from None


def expand(protocol: str, *, trainers=None, datasets=None, seeds=DEFAULT_SEEDS,
           shots=DEFAULT_SHOTS, root: str = "", output: str = "output", extra_opts=(),
           source: str = catalog.CD_SOURCE) -> list[Job]:
    """All jobs of a protocol, each training before the evaluations that load its checkpoint.

    ``datasets`` are the B2N/FS datasets, or the CD/DG targets (the source trains once per seed).
    ``extra_opts`` (KEY VALUE ...) go after the protocol's own opts, so they win.
    """
    protocol = check_protocol(protocol)
    trainers = registry.default_sweep_trainers() if trainers is None else trainers
    for t in trainers:
        registry.get(t)  # known, else a ConfigError listing the registered ones
    if len(extra_opts) % 2:
        raise ConfigError(f"--opts must be KEY VALUE pairs; got an odd list: {list(extra_opts)}")
    _check_opts(trainers, list(extra_opts))
    negative = [s for s in seeds if int(s) < 0]
    if negative:
        raise ConfigError(f"--seeds {' '.join(map(str, negative))}: a negative seed leaves the run unseeded; pass "
                          f"seeds >= 0 (the protocol's are {' '.join(map(str, DEFAULT_SEEDS))}).")
    if protocol == "fs" and any(int(k) < 1 for k in shots):
        raise ConfigError(f"--shots {' '.join(map(str, shots))}: few-shot runs need K >= 1 shots per class "
                          f"(the protocol's are {' '.join(map(str, DEFAULT_SHOTS))}).")
    if datasets is None:
        datasets = {"b2n": catalog.B2N_DATASETS, "fs": catalog.FS_DATASETS,
                    "cd": catalog.CD_TARGETS, "dg": catalog.DG_TARGETS}[protocol]
    # a value listed twice (--seeds 1 1) is one run directory: one job, else two would race for it
    trainers, datasets = list(dict.fromkeys(trainers)), list(dict.fromkeys(datasets))
    seeds, shots = list(dict.fromkeys(int(s) for s in seeds)), list(dict.fromkeys(int(k) for k in shots))
    b = _Builder(protocol, root, output, list(extra_opts))
    task = TASKS[protocol]
    for trainer in trainers:
        if not registry.get(trainer).trains:
            _zero_shot(b, trainer, datasets, seeds[:1], task, source)
        elif protocol == "b2n":
            _b2n(b, trainer, datasets, seeds)
        elif protocol == "fs":
            _fs(b, trainer, datasets, seeds, shots)
        else:
            _cd(b, trainer, datasets, seeds, source)
    return b.jobs


def _b2n(b: _Builder, trainer: str, datasets: list[str], seeds: list[int]) -> None:
    method = registry.get(trainer)
    for stem in datasets:
        cfg = cfg_for("b2n", trainer, stem)
        pin, pin_test = method.sweep_pins("b2n", "train", stem), method.sweep_pins("b2n", "eval", stem)
        for seed in seeds:
            tail = [stem, "shots_16", trainer, cfg, f"seed{seed}"]
            train_dir = run_dir(b.output, "base2new", "train_base", *tail)
            b.add(trainer=trainer, stem=stem, shots=16, seed=seed, cfg=cfg, role="train", metric="base",
                  out_dir=train_dir,
                  opts=["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base", *pin, "TASK", "B2N"])
            b.add(trainer=trainer, stem=stem, shots=16, seed=seed, cfg=cfg, role="eval", metric="novel",
                  out_dir=run_dir(b.output, "base2new", "test_new", *tail), model_dir=train_dir, eval_only=True,
                  opts=["DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new", *pin_test, "TASK", "B2N"])


def _fs(b: _Builder, trainer: str, datasets: list[str], seeds: list[int], shots: list[int]) -> None:
    method = registry.get(trainer)
    for stem in datasets:
        for k in shots:  # the authors' order: shots outer, seeds inner
            cfg = cfg_for("fs", trainer, stem, k)
            for seed in seeds:
                b.add(trainer=trainer, stem=stem, shots=k, seed=seed, cfg=cfg, role="train", metric="accuracy",
                      out_dir=run_dir(b.output, "few_shot", stem, f"shots_{k}", trainer, cfg, f"seed{seed}"),
                      opts=["DATASET.NUM_SHOTS", str(k), *method.sweep_pins("fs", "train", stem), "TASK", "FS"])


def _cd(b: _Builder, trainer: str, targets: list[str], seeds: list[int], source: str) -> None:
    cfg = cfg_for(b.protocol, trainer, source)
    method = registry.get(trainer)
    pin, pin_test = method.sweep_pins(b.protocol, "train", source), method.sweep_pins(b.protocol, "eval", source)
    for seed in seeds:
        train_dir = run_dir(b.output, "cross_dataset", "train", source, "shots_16", trainer, cfg, f"seed{seed}")
        b.add(trainer=trainer, stem=source, shots=16, seed=seed, cfg=cfg, role="train", metric="accuracy",
              out_dir=train_dir, opts=["DATASET.NUM_SHOTS", "16", *pin, "TASK", "CD"])
        for target in targets:
            if target == source:  # the training's own end-of-training test already is this result
                continue
            b.add(trainer=trainer, stem=target, shots=16, seed=seed, cfg=cfg, role="eval", metric="accuracy",
                  out_dir=run_dir(b.output, "cross_dataset", "test", target, "shots_16", trainer, cfg, f"seed{seed}"),
                  model_dir=train_dir, eval_only=True,
                  opts=["DATASET.NUM_SHOTS", "16", *pin_test, "TASK", "CD"])


def _zero_shot(b: _Builder, trainer: str, datasets: list[str], seeds: list[int], task: str, source: str) -> None:
    rows: list[tuple[str, str, list[str]]] = []  # (stem, metric, path prefix)
    if b.protocol == "b2n":
        for stem in datasets:
            rows.append((stem, "base", ["base2new", "test_base", stem]))
            rows.append((stem, "novel", ["base2new", "test_new", stem]))
    elif b.protocol == "fs":
        rows = [(stem, "accuracy", ["few_shot", stem]) for stem in datasets]
    else:
        stems = [source] + [t for t in datasets if t != source]
        rows = [(stem, "accuracy", ["cross_dataset", "test", stem]) for stem in stems]
    for stem, metric, prefix in rows:
        cfg = cfg_for(b.protocol, trainer, stem)
        opts = (["DATASET.SUBSAMPLE_CLASSES", metric if metric == "base" else "new"] if b.protocol == "b2n" else [])
        for seed in seeds:
            b.add(trainer=trainer, stem=stem, shots=0, seed=seed, cfg=cfg, role="eval", metric=metric,
                  out_dir=run_dir(b.output, *prefix, "shots_0", trainer, cfg, f"seed{seed}"), eval_only=True,
                  opts=opts + ["TASK", task])


def chains(jobs: list[Job]) -> list[list[Job]]:
    """Group jobs into chains: a training followed by the evaluations that need it.

    Used where dependencies cannot be expressed (a SLURM array task, a line of a script).
    """
    by_id = {j.id: j for j in jobs}
    out: dict[str, list[Job]] = {}
    for j in jobs:
        root = j.after[0] if j.after and j.after[0] in by_id else j.id
        out.setdefault(root, []).append(j)
    return list(out.values())
