"""StanfordCars: ``stanford_cars/cars_{train,test}/*.jpg`` + the devkit .mat files; 196 classes.

Split paths are relative to the dataset folder itself (``cars_train/00001.jpg``), unlike every
other dataset. Without ``split_zhou_StanfordCars.json``: the ``annotations`` struct arrays
(``fname``, 1-based ``class``) give the labels, ``class_names`` in cars_meta.mat the names, with
the trailing year moved to the front (``AM General Hummer SUV 2000`` ->
``2000 AM General Hummer SUV``); train annotations -> 80/20 train/val, test -> test.
"""
import os

import numpy as np
from scipy.io import loadmat

from mmrl.data.items import Item
from mmrl.data.splits import Splits, split_trainval
from mmrl.datasets.base import JsonSplitDataset
from mmrl.errors import DatasetError


def _scalar(value):
    """First element of a MATLAB field however scipy nested it."""
    return np.asarray(value).ravel()[0]


def year_first(name: str) -> str:
    words = name.split(" ")
    return " ".join([words[-1], *words[:-1]])


def read_class_names(meta_path: str) -> list[str]:
    try:
        names = loadmat(meta_path)["class_names"].ravel()
    except (KeyError, ValueError, OSError) as e:
        raise DatasetError(f"Cannot read 'class_names' from {meta_path} ({e}); re-extract the devkit.") from e
    return [year_first(str(_scalar(n))) for n in names]


def read_car_annotations(anno_path: str, image_folder: str, dataset_dir: str, names: list[str]) -> list[Item]:
    try:
        annos = loadmat(anno_path)["annotations"].ravel()
    except (KeyError, ValueError, OSError) as e:
        raise DatasetError(f"Cannot read 'annotations' from {anno_path} ({e}); re-download it.") from e
    items = []
    for a in annos:
        fname = str(_scalar(a["fname"]))
        label = int(_scalar(a["class"])) - 1
        if not 0 <= label < len(names):
            raise DatasetError(f"{anno_path}: {fname} has class {label + 1}, outside cars_meta.mat's "
                               f"{len(names)} class names.")
        items.append(Item(os.path.join(dataset_dir, image_folder, fname), label, names[label]))
    return items


class StanfordCars(JsonSplitDataset):
    IMAGE_FOLDERS = ("cars_train", "cars_test")

    def generate_split(self) -> Splits:
        d = self.dataset_dir
        names = read_class_names(os.path.join(d, "devkit", "cars_meta.mat"))
        trainval = read_car_annotations(os.path.join(d, "devkit", "cars_train_annos.mat"), "cars_train", d, names)
        test = read_car_annotations(os.path.join(d, "cars_test_annos_withlabels.mat"), "cars_test", d, names)
        train, val = split_trainval(trainval)
        return train, val, test
