"""Food101: ``food-101/images/<class_name>/<id>.jpg``; 101 classes.

``meta/`` (the official train/test lists) is ignored, as in the reference; without
``split_zhou_Food101.json`` the 50/20/30 folder split is generated (names = folder names).
"""
from mmrl.datasets.base import JsonSplitDataset
from mmrl.datasets.registry import register_dataset


@register_dataset
class Food101(JsonSplitDataset):
    NAME, STEM, FOLDER = "Food101", "food101", "food-101"
    IMAGE_SUBDIR = "images"
