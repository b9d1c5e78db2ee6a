"""Flowers102 (NAME ``OxfordFlowers``): ``oxford_flowers/jpg/image_XXXXX.jpg``; 102 classes.

Without ``split_zhou_OxfordFlowers.json``: labels (1-based) come from ``imagelabels.mat``, one
per image in image-number order, names from ``cat_to_name.json``. Images are grouped by label
in TRACKER order (first appearance in the .mat, not numeric order), then 50/20/30 per group.
"""
import json
import os

import numpy as np
from scipy.io import loadmat

from mmrl.data.items import Item
from mmrl.data.splits import Splits, split_by_label_groups
from mmrl.datasets.base import JsonSplitDataset
from mmrl.errors import DatasetError


class OxfordFlowers(JsonSplitDataset):

    def generate_split(self) -> Splits:
        mat = os.path.join(self.dataset_dir, "imagelabels.mat")
        try:
            labels = np.asarray(loadmat(mat)["labels"]).ravel()
        except (KeyError, ValueError, OSError) as e:
            raise DatasetError(f"Cannot read 'labels' from {mat} ({e}); re-download imagelabels.mat.") from e
        names_path = os.path.join(self.dataset_dir, "cat_to_name.json")
        with open(names_path, encoding="utf-8") as f:
            cat_to_name = json.load(f)
        items = []
        for i, lab in enumerate(labels):
            lab = int(lab)
            if str(lab) not in cat_to_name:
                raise DatasetError(f"{names_path} has no name for label {lab} (image {i + 1} in {mat}).")
            items.append(Item(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"), lab - 1, cat_to_name[str(lab)]))
        return split_by_label_groups(items)
