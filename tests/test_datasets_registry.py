import random

import pytest

from mmrl.datasets import JsonSplitDataset, build_dataset, get_dataset_class, register_dataset, registered
from mmrl.datatools.synthetic import write_synthetic_dataset
from mmrl.errors import DatasetError

# protocol §3.3: folder, stem, NAME
TABLE = [("imagenet", "imagenet", "ImageNet"), ("caltech-101", "caltech101", "Caltech101"),
         ("oxford_pets", "oxford_pets", "OxfordPets"), ("stanford_cars", "stanford_cars", "StanfordCars"),
         ("oxford_flowers", "oxford_flowers", "OxfordFlowers"), ("food-101", "food101", "Food101"),
         ("fgvc_aircraft", "fgvc_aircraft", "FGVCAircraft"), ("sun397", "sun397", "SUN397"),
         ("dtd", "dtd", "DescribableTextures"), ("eurosat", "eurosat", "EuroSAT"), ("ucf101", "ucf101", "UCF101"),
         ("imagenetv2", "imagenetv2", "ImageNetV2"), ("imagenet-sketch", "imagenet_sketch", "ImageNetSketch"),
         ("imagenet-adversarial", "imagenet_a", "ImageNetA"), ("imagenet-rendition", "imagenet_r", "ImageNetR")]


@pytest.mark.parametrize("folder, stem, name", TABLE)
def test_name_table(folder, stem, name):
    cls = get_dataset_class(name)
    assert get_dataset_class(stem) is cls
    assert (cls.FOLDER, cls.STEM, cls.NAME) == (folder, stem, name)
    assert cls.TEST_ONLY == (name in {"ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"})


def test_all_fifteen_registered():
    assert {n for _, _, n in TABLE} <= set(registered())


@pytest.mark.parametrize("typo, hint", [("EuroSet", "EuroSAT"), ("eurosat2", "EuroSAT"), ("EUROSAT", "EuroSAT"),
                                        ("Caltech", "Caltech101"), ("imagenet-a", "ImageNetA")])
def test_unknown_name_suggests_closest(typo, hint):
    with pytest.raises(DatasetError) as e:
        get_dataset_class(typo)
    assert f"did you mean {hint!r}" in str(e.value).replace("Did", "did")


def test_a_new_json_dataset_is_one_class(tmp_path):
    @register_dataset
    class Toy(JsonSplitDataset):
        NAME, STEM, FOLDER = "ToyShapes", "toy_shapes", "toy-shapes"
        IMAGE_SUBDIR = "images"
        TEMPLATE = "a drawing of a {}."
        SYNTHETIC_CLASSES = ("circle", "square", "triangle")

    assert get_dataset_class("toy_shapes") is Toy
    write_synthetic_dataset("ToyShapes", tmp_path, n_per_class=10, with_split_json=False)
    random.seed(0)
    data = build_dataset("ToyShapes", tmp_path, num_shots=2, seed=0, fewshot_dir=tmp_path / "fs")
    assert data.classnames == ["circle", "square", "triangle"] and data.template == "a drawing of a {}."
    assert (tmp_path / "toy-shapes" / "split_zhou_ToyShapes.json").is_file()
    assert len(data.train_x) == 6 and len(data.val) == 6


def test_register_requires_names():
    with pytest.raises(TypeError, match="STEM"):
        @register_dataset
        class Bad(JsonSplitDataset):
            NAME, FOLDER = "Bad", "bad"
