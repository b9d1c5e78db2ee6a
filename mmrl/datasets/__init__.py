"""The datasets: one module per dataset (registered by NAME and stem) and build_dataset."""
from mmrl.datasets.base import DatasetBase, DatasetSplits, JsonSplitDataset
from mmrl.datasets.build import build_dataset
from mmrl.datasets.registry import get_dataset_class, register_dataset, registered

__all__ = ["DatasetBase", "DatasetSplits", "JsonSplitDataset", "build_dataset", "get_dataset_class",
           "register_dataset", "registered"]
