"""What is on disk under an output root, to pick defaults for ``status``, ``table`` and ``plot``.

Scans the run-directory scheme of :mod:`mmrl.sweep.plan` (and, for CD, the authors' layout
under base2new/ with CFG vit_b16_cross_datasets) for ``.../<stem>/shots_<K>/<T>/<CFG>/seed<S>``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mmrl.sweep import catalog
from mmrl.sweep.plan import DEFAULT_SEEDS, DEFAULT_SHOTS, check_protocol
from mmrl.trainers import registry

CD_CFG = "vit_b16_cross_datasets"
_PROTOCOL_DATASETS = {"b2n": catalog.B2N_DATASETS, "fs": catalog.FS_DATASETS, "cd": catalog.CD_TARGETS,
                      "dg": catalog.DG_TARGETS}
_SEED = re.compile(r"^seed(-?\d+)$")
_SHOTS = re.compile(r"^shots_(\d+)$")


@dataclass
class Found:
    trainers: set[str] = field(default_factory=set)
    stems: set[str] = field(default_factory=set)
    shots: set[int] = field(default_factory=set)
    seeds: set[int] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        return not self.stems and not self.sources


def _scan(tree: Path, cfg_filter=lambda cfg: True):
    """Yield (stem, shots, trainer, cfg, seed) for every seed dir under tree/<stem>/..."""
    if not tree.is_dir():
        return
    for seed_dir in tree.glob("*/shots_*/*/*/seed*"):
        if not seed_dir.is_dir():
            continue
        stem_dir, shots_dir, trainer_dir, cfg_dir = (seed_dir.parents[3], seed_dir.parents[2],
                                                     seed_dir.parents[1], seed_dir.parent)
        ms, mk = _SEED.match(seed_dir.name), _SHOTS.match(shots_dir.name)
        if not ms or not mk or stem_dir.name.startswith(".") or not cfg_filter(cfg_dir.name):
            continue
        yield stem_dir.name, int(mk.group(1)), trainer_dir.name, cfg_dir.name, int(ms.group(1))


def found_on_disk(output: str, protocol: str) -> Found:
    protocol = check_protocol(protocol)
    out, f = Path(output), Found()
    hits = []
    if protocol == "b2n":
        for split in ("train_base", "test_new", "test_base"):
            hits += list(_scan(out / "base2new" / split, lambda c: c != CD_CFG))
    elif protocol == "fs":
        hits += list(_scan(out / "few_shot"))
    else:
        targets = set(catalog.DG_TARGETS if protocol == "dg" else catalog.CD_TARGETS) | {catalog.DEMO}
        for stem, k, t, cfg, s in _scan(out / "cross_dataset" / "train"):
            f.sources.add(stem)
            f.trainers.add(t)
        for stem, k, t, cfg, s in _scan(out / "base2new" / "train_base", lambda c: c == CD_CFG):
            f.sources.add(stem)  # the authors' CD layout
            f.trainers.add(t)
        for tree, flt in ((out / "cross_dataset" / "test", lambda c: True),
                          (out / "base2new" / "test_new", lambda c: c == CD_CFG)):
            for stem, k, t, cfg, s in _scan(tree, flt):
                if stem in targets:
                    hits.append((stem, k, t, cfg, s))
    for stem, k, t, cfg, s in hits:
        f.stems.add(stem)
        f.shots.add(k)
        f.trainers.add(t)
        f.seeds.add(s)
    return f


def order_stems(stems) -> list[str]:
    known = {s: i for i, s in enumerate(catalog.KNOWN_STEMS)}
    return sorted(stems, key=lambda s: (known.get(s, len(known)), s))


@dataclass
class Selection:
    protocol: str
    trainers: list[str]
    datasets: list[str]
    seeds: list[int]
    shots: list[int]
    source: str
    demo_only: bool = False


def select(output: str, protocol: str, *, trainers=None, datasets=None, seeds=None, shots=None,
           source=None, whole_protocol: bool = False) -> Selection:
    """Fill unset choices from disk.  ``whole_protocol``: list every dataset/shot of the protocol
    as expected (for ``status``) unless only the demo dataset is on disk."""
    protocol = check_protocol(protocol)
    f = found_on_disk(output, protocol)
    on_disk = f.stems | f.sources
    demo_only = bool(on_disk) and on_disk <= {catalog.DEMO}
    if trainers is None:
        trainers = registry.order(f.trainers) if f.trainers else list(registry.default_sweep_trainers())
    if datasets is None:
        if demo_only:
            datasets = [catalog.DEMO]
        elif not f.stems:
            datasets = None  # expand() uses the protocol's list
        elif whole_protocol:  # the protocol's list, and the plug-in datasets that were run
            datasets = order_stems(set(_PROTOCOL_DATASETS[protocol]) | f.stems)
        else:
            datasets = order_stems(f.stems)
    if shots is None:
        on_disk = sorted(k for k in f.shots if k > 0)
        shots = on_disk if (on_disk and (demo_only or not whole_protocol)) else list(DEFAULT_SHOTS)
    if source is None:
        source = catalog.DEMO if demo_only or f.sources == {catalog.DEMO} else catalog.CD_SOURCE
    return Selection(protocol, list(trainers), list(datasets) if datasets is not None else None,
                     [int(s) for s in (seeds or DEFAULT_SEEDS)], [int(k) for k in shots], source, demo_only)
