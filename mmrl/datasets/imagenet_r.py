"""ImageNet-R: ``imagenet-rendition/imagenet-r/<wnid>/*.jpg`` (200 folders + README.txt). Test only.

The 200-class subset is the set of wnid folders present (label = sorted index); it is
validated against mmrl/resources/imagenet_r_wnids.txt. Classification is 200-way.
"""
from mmrl.datasets.imagenet import WnidFolderTestSet
from mmrl.datasets.registry import register_dataset


@register_dataset
class ImageNetR(WnidFolderTestSet):
    NAME, STEM, FOLDER = "ImageNetR", "imagenet_r", "imagenet-rendition"
    IMAGE_SUBDIR = "imagenet-r"
    EXPECTED_WNIDS = "imagenet_r_wnids.txt"
