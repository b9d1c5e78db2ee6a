"""ImageNet-Sketch: ``imagenet-sketch/images/<wnid>/*`` (1,000 folders) + classnames.txt. Test only.

The extracted folder must be called ``images/`` (rename ``sketch/`` if needed).
"""
from mmrl.datasets.imagenet import WnidFolderTestSet
from mmrl.datasets.registry import register_dataset


@register_dataset
class ImageNetSketch(WnidFolderTestSet):
    NAME, STEM, FOLDER = "ImageNetSketch", "imagenet_sketch", "imagenet-sketch"
    IMAGE_SUBDIR = "images"
