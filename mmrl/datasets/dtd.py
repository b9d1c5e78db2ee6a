"""DTD: ``dtd/images/<texture>/<texture>_XXXX.jpg``; 47 classes.

The official ``labels/`` splits and ``imdb/`` are ignored (protocol); without
``split_zhou_DescribableTextures.json`` the reference 50/20/30 folder split is generated.
"""
from mmrl.datasets.base import JsonSplitDataset
from mmrl.datasets.registry import register_dataset


@register_dataset
class DescribableTextures(JsonSplitDataset):
    NAME, STEM, FOLDER = "DescribableTextures", "dtd", "dtd"
    IMAGE_SUBDIR = "images"
