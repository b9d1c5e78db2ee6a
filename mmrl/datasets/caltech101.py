"""Caltech101: ``caltech-101/101_ObjectCategories/<category>/image_XXXX.jpg``; 100 classes.

Without ``split_zhou_Caltech101.json``: reference 50/20/30 folder split, ignoring
``BACKGROUND_Google`` and ``Faces_easy``. Labels follow the CASE-SENSITIVE sort of the folder
names (``Faces``, ``Leopards``, ``Motorbikes`` come first); the renames (airplanes -> airplane,
Faces -> face, ...) are applied after labelling.
"""
from mmrl.data.resources import read_lines, read_tsv_map
from mmrl.datasets.base import JsonSplitDataset


class Caltech101(JsonSplitDataset):
    SPLIT_IGNORED = read_lines("caltech101_ignored_folders.txt")
    SPLIT_RENAMES = read_tsv_map("caltech101_folder_renames.tsv")
