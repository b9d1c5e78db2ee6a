"""EuroSAT: ``eurosat/2750/<ClassFolder>/<ClassFolder>_<n>.jpg``; 10 classes.

Without ``split_zhou_EuroSAT.json`` the reference 50/20/30 folder split is generated with the
folder -> class-name renames (label order = sorted folder names).
"""
from mmrl.data.resources import read_tsv_map
from mmrl.datasets.base import JsonSplitDataset


class EuroSAT(JsonSplitDataset):
    SPLIT_RENAMES = read_tsv_map("eurosat_folder_to_classname.tsv")
