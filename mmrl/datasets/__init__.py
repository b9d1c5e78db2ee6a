"""The datasets: one spec per dataset (:mod:`mmrl.datasets.specs`), the loaders, build_dataset."""
from mmrl.datasets.base import DatasetBase, DatasetSplits, JsonSplitDataset
from mmrl.datasets.build import build_dataset
from mmrl.datasets.registry import all_specs, get_dataset_class, get_spec, register, registered
from mmrl.datasets.spec import DatasetSpec

__all__ = ["DatasetBase", "DatasetSpec", "DatasetSplits", "JsonSplitDataset", "all_specs", "build_dataset",
           "get_dataset_class", "get_spec", "register", "registered"]
