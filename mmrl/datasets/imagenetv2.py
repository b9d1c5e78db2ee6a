"""ImageNetV2 (matched frequency): ``imagenetv2/imagenetv2-matched-frequency-format-val/<0..999>/*``.

Label = the integer folder name; class name = that line of classnames.txt in FILE order (the
published classnames.txt is in sorted-wnid order). Test only.
"""
import os

from mmrl.datasets.imagenet import WnidFolderTestSet, class_folders, dataset_classnames, folder_items
from mmrl.errors import DatasetError


class ImageNetV2(WnidFolderTestSet):

    def load(self):
        self.check_dataset_dir()
        self.require(self.IMAGE_SUBDIR)
        names = list(dataset_classnames(self).values())
        folders = class_folders(self.image_dir)
        bad = [f for f in folders if not f.isdigit()]
        if bad:
            raise DatasetError(f"{self.image_dir} must hold integer class folders 0..999; found {bad[:10]}.")
        labels = sorted(int(f) for f in folders)
        gaps = sorted(set(range(len(labels))) - set(labels))
        if gaps or (labels and labels[-1] >= len(names)):
            raise DatasetError(f"{self.image_dir}: class folders must be 0..N-1 with N <= {len(names)} "
                               f"(missing {gaps[:10]}, largest {labels[-1] if labels else None}); re-extract it.")
        test = []
        for label in labels:
            test += folder_items(os.path.join(self.image_dir, str(label)), label, names[label])
        return test, None, test
