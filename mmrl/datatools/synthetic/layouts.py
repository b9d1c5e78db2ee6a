"""The layout writers, by name: a dataset spec's ``synthetic`` names the one that writes its real
on-disk layout (a few real class names, the loaders' traps included)."""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from mmrl.data.items import Item
from mmrl.data.resources import read_lines, read_tsv_map
from mmrl.data.splits import split_by_label_groups, split_groups, split_trainval
from mmrl.datasets.registry import get_dataset_class
from mmrl.datatools.synthetic.base import SyntheticContext, savemat, sizes, write_lines

WRITERS: dict[str, Callable[[SyntheticContext], None]] = {}


def _writer(fn: Callable[[SyntheticContext], None]) -> Callable[[SyntheticContext], None]:
    WRITERS[fn.__name__] = fn
    return fn


def _folder_dataset(ctx: SyntheticContext, image_dir: Path, folders: Sequence[str], file_name: Callable[[str, int], str],
                    renames: dict[str, str] | None = None, ignored: Sequence[str] = ()) -> None:
    """``image_dir/<folder>/<file>`` + the reference 50/20/30 split (labels = sorted folders)."""
    renames = renames or {}
    ordered = sorted(folders)
    groups = []
    for folder in ordered:
        label = ordered.index(folder)
        group = []
        for i in range(ctx.n_per_class):
            p = image_dir / folder / file_name(folder, i)
            ctx.image(p, label, len(ordered), i)
            group.append(Item(str(p), label, renames.get(folder, folder)))
        groups.append(group)
    for k, folder in enumerate(ignored):  # present on disk, never part of the dataset
        for i in range(3):
            ctx.image(image_dir / folder / file_name(folder, i), len(ordered) + k, len(ordered) + len(ignored), i)
    ctx.split_json(*split_groups(groups, rng=ctx.rng), prefix=image_dir)


EUROSAT_FOLDERS = tuple(read_tsv_map("eurosat_folder_to_classname.tsv"))


@_writer
def eurosat(ctx: SyntheticContext) -> None:
    folders = ctx.names(EUROSAT_FOLDERS, 10)
    _folder_dataset(ctx, ctx.dataset_dir / "2750", folders, lambda f, i: f"{f}_{i + 1}.jpg",
                    renames=read_tsv_map("eurosat_folder_to_classname.tsv"))


@_writer
def folders(ctx: SyntheticContext) -> None:
    """A split-JSON dataset of ``<image_dir>/<class>/`` folders (e.g. a user's dataset): the spec's
    ``synthetic_classes`` and its loader's renames and ignored folders."""
    loader = get_dataset_class(ctx.spec.name)
    names = ctx.names(ctx.spec.synthetic_classes, len(ctx.spec.synthetic_classes) or 5)
    image_dir = ctx.dataset_dir / ctx.spec.image_dir if ctx.spec.image_dir else ctx.dataset_dir
    _folder_dataset(ctx, image_dir, names, lambda f, i: f"{f}_{i + 1:04d}.jpg",
                    renames=dict(loader.SPLIT_RENAMES), ignored=tuple(loader.SPLIT_IGNORED))


CALTECH_FOLDERS = ("accordion", "airplanes", "Faces", "Leopards", "anchor", "Motorbikes", "ant", "barrel",
                   "bass", "beaver", "binocular", "bonsai")


@_writer
def caltech101(ctx: SyntheticContext) -> None:
    folders = ctx.names(CALTECH_FOLDERS, 8)
    _folder_dataset(ctx, ctx.dataset_dir / "101_ObjectCategories", folders, lambda f, i: f"image_{i + 1:04d}.jpg",
                    renames=read_tsv_map("caltech101_folder_renames.tsv"),
                    ignored=read_lines("caltech101_ignored_folders.txt"))


DTD_CLASSES = ("banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked",
               "crosshatched", "crystalline")


@_writer
def dtd(ctx: SyntheticContext) -> None:
    _folder_dataset(ctx, ctx.dataset_dir / "images", ctx.names(DTD_CLASSES, 6), lambda f, i: f"{f}_{i + 1:04d}.jpg")
    write_lines(ctx.dataset_dir / "labels" / "train1.txt", ["banded/banded_0001.jpg"])  # ignored by the loader


FOOD_CLASSES = ("apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beef_tartare", "beet_salad",
                "beignets", "bibimbap", "bread_pudding", "breakfast_burrito")


@_writer
def food101(ctx: SyntheticContext) -> None:
    classes = ctx.names(FOOD_CLASSES, 6)
    ids = iter(ctx.rng.sample(range(100000, 4000000), len(classes) * ctx.n_per_class))
    names = {(c, i): f"{next(ids)}.jpg" for c in sorted(classes) for i in range(ctx.n_per_class)}
    _folder_dataset(ctx, ctx.dataset_dir / "images", classes, lambda f, i: names[(f, i)])
    write_lines(ctx.dataset_dir / "meta" / "classes.txt", sorted(classes))  # ignored by the loader


# (image stem prefix, class id 1..37, species 1 = cat / 2 = dog, breed id within species)
PET_BREEDS = (("Abyssinian", 1, 1, 1), ("american_bulldog", 2, 2, 1), ("american_pit_bull_terrier", 3, 2, 2),
              ("basset_hound", 4, 2, 3), ("beagle", 5, 2, 4), ("Bengal", 6, 1, 2), ("Birman", 7, 1, 3),
              ("Bombay", 8, 1, 4), ("boxer", 9, 2, 5), ("British_Shorthair", 10, 1, 5))


@_writer
def oxford_pets(ctx: SyntheticContext) -> None:
    breeds = PET_BREEDS[: ctx.n_classes or 6]
    if ctx.n_classes and ctx.n_classes > len(PET_BREEDS):
        raise ValueError(f"synthetic OxfordPets has at most {len(PET_BREEDS)} classes")
    n_trainval, _ = sizes(ctx.n_per_class)
    lines: dict[str, list[str]] = {"trainval": [], "test": []}
    trainval, test = [], []
    for stem, cid, species, bid in breeds:
        for i in range(ctx.n_per_class):
            name = f"{stem}_{i + 1}"
            path = ctx.dataset_dir / "images" / f"{name}.jpg"
            ctx.image(path, cid - 1, len(breeds), i)
            which = "trainval" if i < n_trainval else "test"
            lines[which].append(f"{name} {cid} {species} {bid}")
            (trainval if which == "trainval" else test).append(Item(str(path), cid - 1, stem.lower()))
    for which, rows in lines.items():
        write_lines(ctx.dataset_dir / "annotations" / f"{which}.txt", sorted(rows))
    train, val = split_trainval(trainval, rng=ctx.rng)
    ctx.split_json(train, val, test, prefix=ctx.dataset_dir / "images")


CAR_NAMES = ("AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Acura TL Sedan 2012", "Acura TL Type-S 2008",
             "Acura TSX Sedan 2012", "Acura Integra Type R 2001", "Acura ZDX Hatchback 2012",
             "Aston Martin V8 Vantage Convertible 2012")


def _car_annos(rows: list[tuple[str, int]]) -> np.ndarray:
    dt = [("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"), ("bbox_y2", "O"), ("class", "O"), ("fname", "O")]
    arr = np.zeros((1, len(rows)), dtype=dt)
    for k, (fname, cls) in enumerate(rows):
        box = [np.array([[v]], dtype=np.uint16) for v in (1, 1, 30, 30)]
        arr[0, k] = (*box, np.array([[cls]], dtype=np.uint8), np.array([fname]))
    return arr


@_writer
def stanford_cars(ctx: SyntheticContext) -> None:
    names = ctx.names(CAR_NAMES, 6, prefix="Car Model")
    names = [n if n[-4:].isdigit() else f"{n} 2012" for n in names]
    n_trainval, n_test = sizes(ctx.n_per_class)
    out: dict[str, list[Item]] = {}
    for folder, count in (("cars_train", n_trainval), ("cars_test", n_test)):
        labels = [lab for lab in range(len(names)) for _ in range(count)]
        ctx.rng.shuffle(labels)  # classes interleave in file order, as in the real annotations
        rows, items = [], []
        for k, lab in enumerate(labels):
            fname = f"{k + 1:05d}.jpg"
            ctx.image(ctx.dataset_dir / folder / fname, lab, len(names), k + (0 if folder == "cars_train" else 10**5))
            rows.append((fname, lab + 1))
            words = names[lab].split(" ")
            items.append(Item(str(ctx.dataset_dir / folder / fname), lab, " ".join([words[-1], *words[:-1]])))
        out[folder] = items
        anno = (ctx.dataset_dir / "devkit" / "cars_train_annos.mat" if folder == "cars_train"
                else ctx.dataset_dir / "cars_test_annos_withlabels.mat")
        savemat(anno, {"annotations": _car_annos(rows)})
    meta = np.empty((1, len(names)), dtype=object)
    for k, n in enumerate(names):
        meta[0, k] = n
    savemat(ctx.dataset_dir / "devkit" / "cars_meta.mat", {"class_names": meta})
    train, val = split_trainval(out["cars_train"], rng=ctx.rng)
    ctx.split_json(train, val, out["cars_test"], prefix=ctx.dataset_dir)


FLOWER_NAMES = ("pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "english marigold",
                "tiger lily", "moon orchid", "bird of paradise", "monkshood", "globe thistle", "snapdragon",
                "colt's foot")


@_writer
def oxford_flowers(ctx: SyntheticContext) -> None:
    names = ctx.names(FLOWER_NAMES, 6, prefix="flower")
    n = len(names)
    # Non-ascending first appearance (the real imagelabels.mat starts with label 77): the
    # split generator must group by first appearance, not by label value.
    first = [n - k // 2 if k % 2 == 0 else 1 + k // 2 for k in range(n)]
    rest = [lab for lab in range(1, n + 1) for _ in range(ctx.n_per_class - 1)]
    ctx.rng.shuffle(rest)
    labels = first + rest
    items = []
    counters = [0] * (n + 1)
    for i, lab in enumerate(labels):
        path = ctx.dataset_dir / "jpg" / f"image_{i + 1:05d}.jpg"
        ctx.image(path, lab - 1, n, counters[lab])
        counters[lab] += 1
        items.append(Item(str(path), lab - 1, names[lab - 1]))
    savemat(ctx.dataset_dir / "imagelabels.mat", {"labels": np.array([labels], dtype=np.uint8)})
    (ctx.dataset_dir / "cat_to_name.json").write_text(
        json.dumps({str(k + 1): name for k, name in enumerate(names)}, indent=1), encoding="utf-8")
    ctx.split_json(*split_by_label_groups(items, rng=ctx.rng), prefix=ctx.dataset_dir / "jpg")


AIRCRAFT_VARIANTS = ("707-320", "727-200", "737-200", "A300B4", "BAE 146-200", "Cessna 172", "DC-10", "F-16A/B",
                     "Falcon 900", "Gulfstream IV", "Saab 340", "Yak-42")


@_writer
def fgvc_aircraft(ctx: SyntheticContext) -> None:
    variants = ctx.names(AIRCRAFT_VARIANTS, 8, prefix="Variant")
    n_train = round(ctx.n_per_class * 0.5)
    n_val = round(ctx.n_per_class * 0.2)
    ids = iter(ctx.rng.sample(range(1000000, 2400000), len(variants) * ctx.n_per_class))
    rows: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    for lab, variant in enumerate(variants):
        for i in range(ctx.n_per_class):
            image_id = f"{next(ids):07d}"
            ctx.image(ctx.dataset_dir / "images" / f"{image_id}.jpg", lab, len(variants), i)
            which = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            rows[which].append((image_id, variant))
    write_lines(ctx.dataset_dir / "variants.txt", variants)
    for which, lst in rows.items():  # sorted by image id, so classes interleave as in the real lists
        write_lines(ctx.dataset_dir / f"images_variant_{which}.txt", [f"{i} {v}" for i, v in sorted(lst)])


SUN_KEYS = ("a/abbey", "a/apartment_building/outdoor", "b/badlands", "b/bakery/shop", "c/cafeteria", "d/dam",
            "f/forest/broadleaf", "h/highway")


@_writer
def sun397(ctx: SyntheticContext) -> None:
    keys = ctx.names(SUN_KEYS, 6, prefix="z/zone")
    n_trainval, _ = sizes(ctx.n_per_class)
    lists: dict[str, list[str]] = {"Training_01": [], "Testing_01": []}
    trainval, test = [], []
    for lab, key in enumerate(keys):
        name = " ".join(reversed(key.split("/")[1:]))
        for i in range(ctx.n_per_class):
            rel = f"{key}/sun_{ctx.rng.getrandbits(64):016x}.jpg"
            path = ctx.dataset_dir / "SUN397" / rel
            ctx.image(path, lab, len(keys), i)
            which = "Training_01" if i < n_trainval else "Testing_01"
            lists[which].append(f"/{rel}")
            (trainval if which == "Training_01" else test).append(Item(str(path), lab, name))
    write_lines(ctx.dataset_dir / "ClassName.txt", [f"/{k}" for k in keys])
    for which, lines in lists.items():
        write_lines(ctx.dataset_dir / f"{which}.txt", lines)
    train, val = split_trainval(trainval, rng=ctx.rng)
    ctx.split_json(train, val, test, prefix=ctx.dataset_dir / "SUN397")


UCF_ACTIONS = ("ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam", "YoYo",
               "BandMarching", "BaseballPitch", "Basketball", "BasketballDunk")


@_writer
def ucf101(ctx: SyntheticContext) -> None:
    n = ctx.n_classes or 6
    actions = list(UCF_ACTIONS[:n]) + [f"DoThing{k:03d}" for k in range(len(UCF_ACTIONS), n)]
    n_trainval, n_test = sizes(ctx.n_per_class)
    lines: dict[str, list[str]] = {"trainlist01": [], "testlist01": []}
    trainval, test = [], []
    for lab, action in enumerate(actions):
        renamed = "_".join(re.findall(r"[A-Z][^A-Z]*", action))
        for i in range(ctx.n_per_class):
            # groups g01-g07 are the official test groups, g08-g25 train
            group, clip = (8 + i // 4, 1 + i % 4) if i < n_trainval else (1 + (i - n_trainval) // 4, 1 + i % 4)
            video = f"v_{action}_g{group:02d}_c{clip:02d}"
            path = ctx.dataset_dir / "UCF-101-midframes" / renamed / f"{video}.jpg"
            ctx.image(path, lab, len(actions), i)
            if i < n_trainval:
                lines["trainlist01"].append(f"{action}/{video}.avi {lab + 1}")
                trainval.append(Item(str(path), lab, renamed))
            else:
                lines["testlist01"].append(f"{action}/{video}.avi")
                test.append(Item(str(path), lab, renamed))
    lists = ctx.dataset_dir / "ucfTrainTestlist"
    write_lines(lists / "classInd.txt", [f"{k + 1} {a}" for k, a in enumerate(actions)])
    for which, rows in lines.items():
        write_lines(lists / f"{which}.txt", rows)
    train, val = split_trainval(trainval, rng=ctx.rng)
    ctx.split_json(train, val, test, prefix=ctx.dataset_dir / "UCF-101-midframes")


def _spread(wnids: Sequence[str], n: int) -> list[str]:
    """n wnids spread over the list (sorted, so label order = list order)."""
    step = max(1, len(wnids) // n)
    return sorted(wnids[k * step] for k in range(n))


def _classnames_txt(ctx: SyntheticContext) -> None:
    write_lines(ctx.dataset_dir / "classnames.txt", read_lines("imagenet_classnames_wnid.txt"))


@_writer
def imagenet(ctx: SyntheticContext) -> None:
    wnids = _spread(read_lines("imagenet_wnids.txt"), ctx.n_classes or 6)
    n_val = max(2, ctx.n_per_class // 4)
    val_counter = 0
    for lab, wnid in enumerate(wnids):
        for i in range(ctx.n_per_class):
            ctx.image(ctx.dataset_dir / "images" / "train" / wnid / f"{wnid}_{i + 1}.JPEG", lab, len(wnids), i)
        for i in range(n_val):
            val_counter += 1
            ctx.image(ctx.dataset_dir / "images" / "val" / wnid / f"ILSVRC2012_val_{val_counter:08d}.JPEG",
                      lab, len(wnids), 1000 + i)
    _classnames_txt(ctx)


def _wnid_test_set(file_name: Callable[[int], str], readme: bool):
    """A test-only variant: ``<image_dir>/<wnid>/`` folders for wnids of the spec's class list."""
    def write(ctx: SyntheticContext) -> None:
        wnids = _spread(read_lines(ctx.spec.class_list), ctx.n_classes or 6)
        for lab, wnid in enumerate(wnids):
            for i in range(ctx.n_per_class):
                ctx.image(ctx.dataset_dir / ctx.spec.image_dir / wnid / file_name(i), lab, len(wnids), i)
        if readme:
            write_lines(ctx.dataset_dir / ctx.spec.image_dir / "README.txt", ["class folders are wnids"])
        _classnames_txt(ctx)
    return write


@_writer
def imagenetv2(ctx: SyntheticContext) -> None:
    n = ctx.n_classes or 6
    for lab in range(n):
        for i in range(ctx.n_per_class):
            name = f"{np.random.default_rng([ctx.seed, lab, i]).integers(1 << 62):016x}.jpeg"
            ctx.image(ctx.dataset_dir / "imagenetv2-matched-frequency-format-val" / str(lab) / name, lab, n, i)
    _classnames_txt(ctx)


WRITERS["imagenet_sketch"] = _wnid_test_set(lambda i: f"sketch_{i + 1}.JPEG", readme=False)
WRITERS["imagenet_a"] = _wnid_test_set(lambda i: f"0.{i:06d}.jpg", readme=True)
WRITERS["imagenet_r"] = _wnid_test_set(lambda i: f"art_{i + 1}.jpg", readme=True)
