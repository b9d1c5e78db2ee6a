"""OxfordPets: ``oxford_pets/images/<Breed_Name>_<n>.jpg`` + ``annotations/{trainval,test}.txt``.

Without ``split_zhou_OxfordPets.json``: annotation lines ``<stem> <class id 1..37> <species>
<breed id>``; label = class id - 1; class name = the stem minus its last ``_<n>``, lower-cased;
trainval -> 80/20 train/val (reference rule), test.txt -> test. 37 classes.
"""
import os

from mmrl.data.fileio import numbered_lines
from mmrl.data.items import Item
from mmrl.data.splits import Splits, split_trainval
from mmrl.datasets.base import JsonSplitDataset
from mmrl.errors import DatasetError


def read_pet_annotations(path: str, image_dir: str) -> list[Item]:
    items = []
    for n, line in numbered_lines(path):
        if line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2:
            raise DatasetError(f"{path}:{n}: expected '<image> <class id> <species> <breed id>', got {line!r}")
        stem, class_id = parts[0], int(parts[1])
        breed = stem.rsplit("_", 1)[0].lower()
        items.append(Item(os.path.join(image_dir, f"{stem}.jpg"), class_id - 1, breed))
    return items


class OxfordPets(JsonSplitDataset):

    def generate_split(self) -> Splits:
        ann = os.path.join(self.dataset_dir, "annotations")
        trainval = read_pet_annotations(os.path.join(ann, "trainval.txt"), self.image_dir)
        test = read_pet_annotations(os.path.join(ann, "test.txt"), self.image_dir)
        train, val = split_trainval(trainval)
        return train, val, test
