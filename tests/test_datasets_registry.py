import random

import pytest

from mmrl.datasets import DatasetSpec, build_dataset, get_dataset_class, get_spec, register, registered
from mmrl.datatools.synthetic import write_synthetic_dataset
from mmrl.errors import DatasetError

# docs/protocol.md#datasets-split-files-and-names: folder, stem, NAME
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
    assert get_dataset_class(stem) is cls and get_spec(folder) is get_spec(name) is cls.SPEC
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


def test_a_new_json_dataset_is_one_spec(tmp_path):
    spec = register(DatasetSpec("ToyShapes", "toy_shapes", "toy-shapes", image_dir="images",
                                split_file="split_zhou_ToyShapes.json", template="a drawing of a {}.",
                                synthetic_classes=("circle", "square", "triangle")))

    assert get_dataset_class("toy_shapes").SPEC is spec and get_spec("toy-shapes") is spec
    write_synthetic_dataset("ToyShapes", tmp_path, n_per_class=10, with_split_json=False)
    random.seed(0)
    data = build_dataset("ToyShapes", tmp_path, num_shots=2, seed=0, fewshot_dir=tmp_path / "fs")
    assert data.classnames == ["circle", "square", "triangle"] and data.template == "a drawing of a {}."
    assert (tmp_path / "toy-shapes" / "split_zhou_ToyShapes.json").is_file()
    assert len(data.train_x) == 6 and len(data.val) == 6


def test_a_spec_requires_names():
    with pytest.raises(TypeError, match="stem"):
        DatasetSpec("Bad", "", "bad")
    with pytest.raises(DatasetError, match="clashes with 'EuroSAT'"):
        register(DatasetSpec("EuroSAT", "eurosat_copy", "eurosat-copy"))


def test_every_spec_agrees_with_its_dataset_yaml():
    """configs/datasets/<stem>.yaml exists for every spec and names the spec's DATASET.NAME; every
    dataset YAML belongs to a spec."""
    import yaml

    from mmrl.datasets.specs import SPECS as builtin
    from mmrl.sweep.catalog import dataset_yaml
    for spec in builtin:
        data = yaml.safe_load(dataset_yaml(spec.stem).read_text(encoding="utf-8"))
        assert data["DATASET"]["NAME"] == spec.name, spec.stem
    folder = dataset_yaml(builtin[0].stem).parent
    assert sorted(p.stem for p in folder.glob("*.yaml")) == sorted(s.stem for s in builtin)


@pytest.mark.slow
def test_a_run_imports_its_own_loader_and_no_tooling():
    import subprocess
    import sys
    code = ("import sys, mmrl.engine.run, mmrl.engine.trainer\n"
            "from mmrl.datasets import get_dataset_class\n"
            "get_dataset_class('eurosat')\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith(('mmrl.datasets.', 'mmrl.datatools')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "mmrl.datasets.eurosat" in out and "mmrl.datasets.caltech101" not in out
    assert not [m for m in out if m.startswith("mmrl.datatools")]
