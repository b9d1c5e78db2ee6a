"""The whole data pipeline against a straightforward re-enactment of the reference's procedure.

For every dataset on its synthetic real layout, ``build_dataset`` after ``random.seed(S)`` must
give the same (train_x, val, test) items, in the same order, with the same labels and class
names, as the reference procedure written out below from docs (protocol.md §3-§5), and must
leave the Python RNG in the same state (same random calls, in the same order).

The re-enactment is deliberately naive: one function per reference rule, no shared code with
mmrl.data. The one documented deviation it adopts is ImageNet's sorted order inside a class
folder (protocol §4.3: the reference's os.listdir order is filesystem dependent).
"""
from __future__ import annotations

import json
import math
import os
import random
import re

import pytest
from scipy.io import loadmat

from mmrl.datasets import build_dataset
from mmrl.datatools.synthetic import write_synthetic_dataset

IGNORED_CALTECH = ["BACKGROUND_Google", "Faces_easy"]
RENAMES = {
    "caltech101": {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"},
    "eurosat": {"AnnualCrop": "Annual Crop Land", "Forest": "Forest",
                "HerbaceousVegetation": "Herbaceous Vegetation Land", "Highway": "Highway or Road",
                "Industrial": "Industrial Buildings", "Pasture": "Pasture Land",
                "PermanentCrop": "Permanent Crop Land", "Residential": "Residential Buildings", "River": "River",
                "SeaLake": "Sea or Lake"},
}
# stem -> (folder, image dir, split file or None, split prefix relative to the folder)
LAYOUT = {
    "imagenet": ("imagenet", "images", None, "images"),
    "caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json", "101_ObjectCategories"),
    "oxford_pets": ("oxford_pets", "images", "split_zhou_OxfordPets.json", "images"),
    "stanford_cars": ("stanford_cars", "", "split_zhou_StanfordCars.json", ""),
    "oxford_flowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json", "jpg"),
    "food101": ("food-101", "images", "split_zhou_Food101.json", "images"),
    "fgvc_aircraft": ("fgvc_aircraft", "images", None, "images"),
    "sun397": ("sun397", "SUN397", "split_zhou_SUN397.json", "SUN397"),
    "dtd": ("dtd", "images", "split_zhou_DescribableTextures.json", "images"),
    "eurosat": ("eurosat", "2750", "split_zhou_EuroSAT.json", "2750"),
    "ucf101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json", "UCF-101-midframes"),
    "imagenetv2": ("imagenetv2", "imagenetv2-matched-frequency-format-val", None, ""),
    "imagenet_sketch": ("imagenet-sketch", "images", None, ""),
    "imagenet_a": ("imagenet-adversarial", "imagenet-a", None, ""),
    "imagenet_r": ("imagenet-rendition", "imagenet-r", None, ""),
}
TEST_ONLY = {"imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"}
ODD_CLASSES = 7   # an odd class count tells ceil(n/2) base classes from floor


# -- the reference procedure, rule by rule -------------------------------------------------------

def nohidden(path):
    return [f for f in os.listdir(path) if not f.startswith(".")]


def ref_read_json(path, prefix):
    with open(path) as f:
        obj = json.load(f)
    return tuple([(os.path.join(prefix, p), int(y), c) for p, y, c in obj[k]] for k in ("train", "val", "test"))


def ref_trainval(trainval, p_val=0.2):
    tracker = {}
    for idx, (_, y, _) in enumerate(trainval):
        tracker.setdefault(y, []).append(idx)
    train, val = [], []
    for idxs in tracker.values():
        n_val = round(len(idxs) * p_val)
        assert n_val > 0
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def ref_cut_50_20_30(images, label, name, out):
    random.shuffle(images)
    n = len(images)
    n_train, n_val = round(n * 0.5), round(n * 0.2)
    assert n_train > 0 and n_val > 0 and n - n_train - n_val > 0
    for lst, part in zip(out, (images[:n_train], images[n_train:n_train + n_val], images[n_train + n_val:])):
        lst.extend((p, label, name) for p in part)


def ref_folder_split(image_dir, ignored=(), renames=None):
    cats = sorted(c for c in nohidden(image_dir) if c not in ignored)
    out = ([], [], [])
    for label, cat in enumerate(cats):
        images = [os.path.join(image_dir, cat, im) for im in nohidden(os.path.join(image_dir, cat))]
        ref_cut_50_20_30(images, label, (renames or {}).get(cat, cat), out)
    return out


def lines(path):
    with open(path) as f:
        return [ln.strip() for ln in f.readlines()]


def ref_generate(stem, ddir, image_dir):
    if stem in ("caltech101", "dtd", "eurosat", "food101"):
        return ref_folder_split(image_dir, IGNORED_CALTECH if stem == "caltech101" else (), RENAMES.get(stem))
    if stem == "oxford_pets":
        def read(name):
            out = []
            for ln in lines(os.path.join(ddir, "annotations", name)):
                imname, label, _, _ = ln.split(" ")
                out.append((os.path.join(image_dir, imname + ".jpg"), int(label) - 1,
                            "_".join(imname.split("_")[:-1]).lower()))
            return out
        train, val = ref_trainval(read("trainval.txt"))
        return train, val, read("test.txt")
    if stem == "stanford_cars":
        meta = loadmat(os.path.join(ddir, "devkit", "cars_meta.mat"))["class_names"][0]

        def read(folder, anno):
            annos = loadmat(anno)["annotations"][0]
            out = []
            for a in annos:
                label = int(a["class"][0, 0]) - 1
                words = str(meta[label][0]).split(" ")
                out.append((os.path.join(ddir, folder, str(a["fname"][0])), label,
                            " ".join([words[-1]] + words[:-1])))
            return out
        train, val = ref_trainval(read("cars_train", os.path.join(ddir, "devkit", "cars_train_annos.mat")))
        return train, val, read("cars_test", os.path.join(ddir, "cars_test_annos_withlabels.mat"))
    if stem == "oxford_flowers":
        labels = loadmat(os.path.join(ddir, "imagelabels.mat"))["labels"][0]
        with open(os.path.join(ddir, "cat_to_name.json")) as f:
            names = json.load(f)
        tracker = {}
        for i, lab in enumerate(labels):
            tracker.setdefault(int(lab), []).append(os.path.join(image_dir, f"image_{i + 1:05d}.jpg"))
        out = ([], [], [])
        for lab, paths in tracker.items():
            ref_cut_50_20_30(paths, lab - 1, names[str(lab)], out)
        return out
    if stem == "sun397":
        cname2lab = {c[1:]: i for i, c in enumerate(lines(os.path.join(ddir, "ClassName.txt")))}

        def read(name):
            out = []
            for ln in lines(os.path.join(ddir, name)):
                rel = ln[1:]
                key = os.path.dirname(rel)
                out.append((os.path.join(image_dir, rel), cname2lab[key], " ".join(key.split("/")[1:][::-1])))
            return out
        train, val = ref_trainval(read("Training_01.txt"))
        return train, val, read("Testing_01.txt")
    if stem == "ucf101":
        lists = os.path.join(ddir, "ucfTrainTestlist")
        cname2lab = {}
        for ln in lines(os.path.join(lists, "classInd.txt")):
            label, action = ln.split(" ")
            cname2lab[action] = int(label) - 1

        def read(name):
            out = []
            for ln in lines(os.path.join(lists, name)):
                action, filename = ln.split(" ")[0].split("/")
                renamed = "_".join(re.findall("[A-Z][^A-Z]*", action))
                out.append((os.path.join(image_dir, renamed, filename.replace(".avi", ".jpg")),
                            cname2lab[action], renamed))
            return out
        train, val = ref_trainval(read("trainlist01.txt"))
        return train, val, read("testlist01.txt")
    raise AssertionError(stem)


def ref_imagenet_names(ddir):
    names = {}
    for ln in lines(os.path.join(ddir, "classnames.txt")):
        parts = ln.split(" ")
        names[parts[0]] = " ".join(parts[1:])
    return names


def ref_wnid_folders(folder, names, ignore_files=()):
    folders = sorted(f for f in nohidden(folder) if f not in ignore_files)
    return [(os.path.join(folder, w, im), label, names[w])
            for label, w in enumerate(folders) for im in sorted(nohidden(os.path.join(folder, w)))]


def ref_load(stem, root):
    folder, image_sub, split_file, prefix_sub = LAYOUT[stem]
    ddir = os.path.join(root, folder)
    image_dir = os.path.join(ddir, image_sub) if image_sub else ddir
    if stem == "imagenet":
        names = ref_imagenet_names(ddir)
        return (ref_wnid_folders(os.path.join(image_dir, "train"), names), None,
                ref_wnid_folders(os.path.join(image_dir, "val"), names))
    if stem in ("imagenet_sketch", "imagenet_a", "imagenet_r"):
        test = ref_wnid_folders(image_dir, ref_imagenet_names(ddir), ignore_files=("README.txt",))
        return test, None, test
    if stem == "imagenetv2":
        names = list(ref_imagenet_names(ddir).values())
        test = [(os.path.join(image_dir, str(lab), im), lab, names[lab])
                for lab in range(len(os.listdir(image_dir)))
                for im in sorted(nohidden(os.path.join(image_dir, str(lab))))]
        return test, None, test
    if stem == "fgvc_aircraft":
        cname2lab = {c: i for i, c in enumerate(lines(os.path.join(ddir, "variants.txt")))}

        def read(name):
            out = []
            for ln in lines(os.path.join(ddir, name)):
                parts = ln.split(" ")
                cname = " ".join(parts[1:])
                out.append((os.path.join(image_dir, parts[0] + ".jpg"), cname2lab[cname], cname))
            return out
        return tuple(read(f"images_variant_{s}.txt") for s in ("train", "val", "test"))
    split_path = os.path.join(ddir, split_file)
    if os.path.exists(split_path):
        return ref_read_json(split_path, os.path.join(ddir, prefix_sub) if prefix_sub else ddir)
    return ref_generate(stem, ddir, image_dir)


def ref_fewshot(items, k):
    if k < 1:
        return items
    tracker = {}
    for it in items:
        tracker.setdefault(it[1], []).append(it)
    out = []
    for group in tracker.values():
        out.extend(random.sample(group, k) if len(group) >= k else group)
    return out


def ref_subsample(*lists, mode):
    if mode == "all":
        return lists
    labels = sorted({it[1] for it in lists[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if mode == "base" else labels[m:]
    relabel = {y: i for i, y in enumerate(selected)}
    return tuple([(p, relabel[y], c) for p, y, c in lst if y in relabel] for lst in lists)


def ref_build(stem, root, k, seed, mode):
    """(train_x, val, test, classnames) of one reference run, and the Python RNG state after it."""
    random.seed(seed)
    train, val, test = ref_load(stem, root)
    if stem in TEST_ONLY:
        train_x, val = test, None
    elif stem == "imagenet":
        train = ref_fewshot(train, k)
        train_x, test = ref_subsample(train, test, mode=mode)
        val = test
    else:
        if k >= 1:
            train = ref_fewshot(train, k)
            val = ref_fewshot(val, min(k, 4))
        train_x, val, test = ref_subsample(train, val, test, mode=mode)
    lab2cname = {y: c for _, y, c in train_x}
    classnames = [lab2cname[y] for y in sorted(lab2cname)]
    return (train_x, val, test, classnames), random.getstate()


def ours(stem, root, k, seed, mode, fewshot_dir):
    random.seed(seed)
    d = build_dataset(stem, root, num_shots=k, seed=seed, subsample=mode, fewshot_dir=fewshot_dir)

    def tup(lst):
        return None if lst is None else [(it.impath, it.label, it.classname) for it in lst]
    return (tup(d.train_x), tup(d.val), tup(d.test), d.classnames), random.getstate()


# -- the comparisons ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("reference")
    for stem in LAYOUT:
        write_synthetic_dataset(stem, root, n_classes=ODD_CLASSES, n_per_class=40 if stem == "imagenet" else 32)
    return root


def _remove_split(root, stem):
    folder, _, split_file, _ = LAYOUT[stem]
    if split_file and os.path.exists(os.path.join(root, folder, split_file)):
        os.remove(os.path.join(root, folder, split_file))


@pytest.mark.parametrize("stem", sorted(LAYOUT))
def test_same_items_and_rng_as_reference_with_published_split(synthetic_root, tmp_path, stem):
    n = 0
    for seed in (1, 2, 3):
        for k in (1, 4, 16):
            for mode in ("all", "base", "new"):
                if stem in TEST_ONLY and mode != "all":
                    continue
                got = ours(stem, synthetic_root, k, seed, mode, tmp_path / f"fs{n}")
                want = ref_build(stem, str(synthetic_root), k, seed, mode)
                assert got[0] == want[0], (stem, seed, k, mode)
                assert got[1] == want[1], f"{stem} seed {seed} K {k} {mode}: Python RNG consumed differently"
                n += 1


@pytest.mark.parametrize("stem", sorted(set(LAYOUT) - TEST_ONLY - {"imagenet", "fgvc_aircraft"}))
def test_same_items_and_rng_as_reference_when_the_split_is_generated(tmp_path, stem):
    root = tmp_path / "data"
    write_synthetic_dataset(stem, root, n_classes=ODD_CLASSES, with_split_json=False)
    for n, (seed, k, mode) in enumerate([(1, 16, "base"), (2, 4, "new"), (3, 1, "all"), (2, 20, "all")]):
        _remove_split(root, stem)
        got = ours(stem, root, k, seed, mode, tmp_path / f"fs{n}")
        _remove_split(root, stem)
        want = ref_build(stem, str(root), k, seed, mode)
        assert got[0] == want[0], (stem, seed, k, mode)
        assert got[1] == want[1], f"{stem} seed {seed} K {k} {mode}: Python RNG consumed differently"


@pytest.mark.parametrize("stem", ["eurosat", "stanford_cars"])
def test_interleaved_split_json_is_sampled_in_tracker_order(tmp_path, stem):
    """A published list is sampled class by class in first-appearance order, never sorted."""
    root = tmp_path / "data"
    write_synthetic_dataset(stem, root)
    folder, _, split_file, _ = LAYOUT[stem]
    path = os.path.join(root, folder, split_file)
    with open(path) as f:
        obj = json.load(f)
    shuffler = random.Random(7)
    for key in ("train", "val", "test"):
        shuffler.shuffle(obj[key])
    with open(path, "w") as f:
        json.dump(obj, f)
    first = list(dict.fromkeys(y for _, y, _ in obj["train"]))
    assert first != sorted(first)   # the trap is set
    for n, (seed, k, mode) in enumerate([(1, 16, "all"), (2, 2, "base"), (3, 8, "new")]):
        got = ours(stem, root, k, seed, mode, tmp_path / f"fs{n}")
        want = ref_build(stem, str(root), k, seed, mode)
        assert got == want, (stem, seed, k, mode)


@pytest.mark.parametrize("yaml_name", ["vit_b16", "vit_b16_imagenet", "vit_b16_few_shot", "vit_b16_cross_datasets"])
def test_transforms_of_the_mmrl_yamls_equal_the_reference_pipelines_bitwise(yaml_name):
    """protocol §6.2/§6.3: RandomResizedCrop(224, scale (0.5, 1), bicubic) -> flip -> ToTensor ->
    CLIP Normalize for training; shorter side to 224 bicubic -> center crop 224 -> ToTensor ->
    Normalize for testing. Same torch seed -> the same crops and flips -> equal tensors."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision import transforms as T

    from mmrl.config import get_default_config
    from mmrl.data.transforms import build_test_transform, build_train_transform

    cfg = get_default_config()
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "..", "configs", "trainers", "MMRL",
                                     f"{yaml_name}.yaml"))
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    bicubic = T.InterpolationMode.BICUBIC
    ref_train = T.Compose([T.RandomResizedCrop((224, 224), scale=(0.5, 1), ratio=(3 / 4, 4 / 3),
                                               interpolation=bicubic),
                           T.RandomHorizontalFlip(p=0.5), T.ToTensor(), T.Normalize(mean, std)])
    ref_test = T.Compose([T.Resize(224, interpolation=bicubic), T.CenterCrop((224, 224)), T.ToTensor(),
                          T.Normalize(mean, std)])
    ours_train, ours_test = build_train_transform(cfg), build_test_transform(cfg)
    rng = np.random.default_rng(0)
    for h, w in ((97, 301), (480, 333), (64, 64)):
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        assert torch.equal(ours_test(img), ref_test(img))
        for seed in range(6):
            torch.manual_seed(seed)
            got = ours_train(img)
            after = torch.get_rng_state()
            torch.manual_seed(seed)
            assert torch.equal(got, ref_train(img)), (h, w, seed)
            assert torch.equal(after, torch.get_rng_state())   # same torch RNG draws


@pytest.mark.parametrize("stem", ["imagenet", "oxford_flowers", "sun397"])
def test_a_stored_subset_serves_every_mode_like_the_reference_cache(synthetic_root, tmp_path, stem):
    """The few-shot file drawn by one run (e.g. B2N base) is what a later run of the same (K, seed)
    reads for another mode, consuming no Python RNG, as with the reference's shot_K-seed_S.pkl."""
    ours(stem, synthetic_root, 16, 2, "base", tmp_path)
    for mode in ("new", "all", "base"):
        got = ours(stem, synthetic_root, 16, 2, mode, tmp_path)
        want, _ = ref_build(stem, str(synthetic_root), 16, 2, mode)
        random.seed(2)
        assert got == (want, random.getstate()), mode
