"""ImageNet-A: ``imagenet-adversarial/imagenet-a/<wnid>/*.jpg`` (200 folders + README.txt). Test only.

The 200-class subset is the set of wnid folders present (label = sorted index); it is
validated against mmrl/resources/imagenet_a_wnids.txt. Classification is 200-way.
"""
from mmrl.datasets.imagenet import WnidFolderTestSet
from mmrl.datasets.registry import register_dataset


@register_dataset
class ImageNetA(WnidFolderTestSet):
    NAME, STEM, FOLDER = "ImageNetA", "imagenet_a", "imagenet-adversarial"
    IMAGE_SUBDIR = "imagenet-a"
    EXPECTED_WNIDS = "imagenet_a_wnids.txt"
