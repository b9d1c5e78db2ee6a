"""UCF101 (mid-frames): ``ucf101/UCF-101-midframes/<Renamed_Action>/<video>.jpg``; 101 classes.

Without ``split_zhou_UCF101.json``: ``ucfTrainTestlist/classInd.txt`` (``<id> <Action>``,
label = id - 1) and ``trainlist01.txt`` / ``testlist01.txt``. An action name is cut into runs
that start with a capital letter, joined by "_" (``ApplyEyeMakeup`` -> ``Apply_Eye_Makeup``,
``YoYo`` -> ``Yo_Yo``); that is both the image folder and the class name.
trainlist01 -> 80/20 train/val, testlist01 -> test.
"""
import os
import re

from mmrl.data.fileio import numbered_lines
from mmrl.data.items import Item
from mmrl.data.splits import Splits, split_trainval
from mmrl.datasets.base import JsonSplitDataset
from mmrl.errors import DatasetError

_RUN = re.compile(r"[A-Z][^A-Z]*")
LISTS = "ucfTrainTestlist"


def rename_action(action: str) -> str:
    return "_".join(_RUN.findall(action))


class UCF101(JsonSplitDataset):

    def _read_list(self, fname: str, action2lab: dict[str, int]) -> list[Item]:
        path = os.path.join(self.dataset_dir, LISTS, fname)
        items = []
        for n, line in numbered_lines(path):
            action, video = line.split(" ")[0].split("/")
            if action not in action2lab:
                raise DatasetError(f"{path}:{n}: action {action!r} is not in classInd.txt.")
            renamed = rename_action(action)
            stem = os.path.splitext(video)[0]
            items.append(Item(os.path.join(self.image_dir, renamed, f"{stem}.jpg"), action2lab[action], renamed))
        return items

    def generate_split(self) -> Splits:
        action2lab = {}
        with open(os.path.join(self.dataset_dir, LISTS, "classInd.txt"), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    idx, action = line.strip().split(" ")
                    action2lab[action] = int(idx) - 1
        trainval = self._read_list("trainlist01.txt", action2lab)
        test = self._read_list("testlist01.txt", action2lab)
        train, val = split_trainval(trainval)
        return train, val, test
