"""The spec of every built-in dataset (see :mod:`mmrl.datasets.spec`): the only home of its facts,
besides its YAML (configs/datasets/<stem>.yaml) and its loader module's code.

Sources (protocol §11): checksums are recorded only where published (none of the sources
publishes one, so ``sha256`` is None everywhere). Sizes: protocol §12. The order is the
paper tables' order (ImageNet first), which the sweep and the tables follow.
"""
from __future__ import annotations

from mmrl.datasets.spec import DatasetSpec, PrepareStep, Source
from mmrl.demo import world


def _split_json(name: str, stem: str, folder: str, *, split_id: str, sources: tuple[Source, ...],
                prepare: tuple[PrepareStep, ...], image_dir: str = "images", required: tuple[str, ...] = (),
                **facts) -> DatasetSpec:
    """A B2N / FS / CD dataset with CoOp's split file ``split_zhou_<NAME>.json`` (on Google Drive as
    ``split_id``): needed to load, fetched and placed by prepare's last step."""
    split = f"split_zhou_{name}.json"
    return DatasetSpec(
        name, stem, folder, image_dir=image_dir, split_file=split, benchmarks=("b2n", "fs", "cd"),
        required=(*(required or (f"{image_dir}/",)), split), sources=(*sources, _drive(split, split_id)),
        prepare=(*prepare, PrepareStep((split,), (split,), "place")), **facts)


def _drive(file: str, gid: str, note: str = "") -> Source:
    return Source(file=file, gdrive_id=gid, note=note)


CLASSNAMES = _drive("classnames.txt", "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF",
                    note="CoOp's ImageNet classnames.txt; the four variants use a copy of it")

_OX = "https://www.robots.ox.ac.uk/~vgg/data"
_CARS_PAGE = "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (offline; look for a mirror of the same files)"
_SUN_PAGE = "https://vision.princeton.edu/projects/2010/SUN/ (offline; look for a mirror of the same files)"

def _imagenet_variant(name: str, stem: str, folder: str, classes: int, test: int, image_dir: str,
                      class_list: str, archive: Source, images_line: str) -> DatasetSpec:
    """A test-only ImageNet variant: ``<image_dir>/<wnid>/*`` plus a copy of ImageNet's classnames.txt."""
    return DatasetSpec(
        name, stem, folder, num_classes=classes, test=test, image_dir=image_dir, test_only=True,
        class_list=class_list, required=(f"{image_dir}/", "classnames.txt"), sources=(archive, CLASSNAMES),
        loader="mmrl.datasets.imagenet:WnidFolderTestSet", benchmarks=("dg",),
        prepare=(PrepareStep((f"{image_dir}/",), (archive.file,), "extract", (image_dir,)),
                 PrepareStep(("classnames.txt",), (), "classnames")),
        classnames_from="imagenet", synthetic=stem,
        layout=f"""{folder}/
  {images_line}
  classnames.txt                      (copy of imagenet/classnames.txt)""")


SPECS: tuple[DatasetSpec, ...] = (
    DatasetSpec(
        "ImageNet", "imagenet", "imagenet", num_classes=1000, train=1_281_167, val=None, test=50_000,
        image_dir="images", split_file=None, val_is_test=True, class_list="imagenet_wnids.txt",
        required=("images/train/", "images/val/", "classnames.txt"),
        sources=(
            Source("ILSVRC2012_img_train.tar", needs_login=True, page="https://image-net.org/download-images.php",
                   note="ILSVRC2012 training images (one tar per class inside)"),
            Source("ILSVRC2012_img_val.tar", needs_login=True, page="https://image-net.org/download-images.php",
                   note="ILSVRC2012 validation images (flat; sorted into wnid folders by prepare)"),
            Source("ILSVRC2012_devkit_t12.tar.gz", needs_login=True, page="https://image-net.org/download-images.php",
                   note="val ground truth; or give a val-labels file '<image> <wnid>' / LOC_val_solution.csv"),
            CLASSNAMES,
        ),
        loader="mmrl.datasets.imagenet:ImageNet", benchmarks=("b2n", "fs", "cd_source"),
        prepare=(PrepareStep(("classnames.txt",), (), "classnames"),
                 PrepareStep(("images/train/",), ("ILSVRC2012_img_train.tar",), "imagenet_train"),
                 PrepareStep(("images/val/",), ("ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz"),
                             "imagenet_val"),
                 PrepareStep(("images/val/",), ("ILSVRC2012_img_val.tar",), "imagenet_val", option="val_labels")),
        synthetic="imagenet", verify_parts=(("train", "train"), ("test", "val")),
        layout="""imagenet/
  classnames.txt                      <wnid> <class name> per line (1000 lines)
  images/train/<wnid>/*.JPEG          1000 folders, 1,281,167 images
  images/val/<wnid>/*.JPEG            1000 folders, 50,000 images (sorted by wnid)"""),
    _split_json(
        "Caltech101", "caltech101", "caltech-101", num_classes=100, train=4128, val=1649, test=2465,
        image_dir="101_ObjectCategories",
        sources=(
            Source("101_ObjectCategories.tar.gz",
                   url="http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
                   note="the host has moved since CoOp; if it fails, fetch the same archive from data.caltech.edu"),
        ),
        loader="mmrl.datasets.caltech101:Caltech101", split_id="1hyarUivQE36mY6jSomru6Fjd-JzwcCzN",
        prepare=(PrepareStep(("101_ObjectCategories/",), ("101_ObjectCategories.tar.gz",), "extract",
                             ("101_ObjectCategories",)),),
        synthetic="caltech101",
        layout="""caltech-101/
  101_ObjectCategories/<category>/image_XXXX.jpg
  split_zhou_Caltech101.json"""),
    _split_json(
        "OxfordPets", "oxford_pets", "oxford_pets", num_classes=37, train=2944, val=736, test=3669,
        image_dir="images",
        raw=("annotations/trainval.txt", "annotations/test.txt"),
        sources=(
            Source("images.tar.gz", url=f"{_OX}/pets/data/images.tar.gz"),
            Source("annotations.tar.gz", url=f"{_OX}/pets/data/annotations.tar.gz"),
        ),
        loader="mmrl.datasets.oxford_pets:OxfordPets", split_id="1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs",
        prepare=(PrepareStep(("images/",), ("images.tar.gz",), "extract", ("images",)),
                 PrepareStep(("annotations/",), ("annotations.tar.gz",), "extract", ("annotations",), optional=True)),
        synthetic="oxford_pets",
        layout="""oxford_pets/
  images/<Breed_Name>_<n>.jpg
  annotations/trainval.txt, annotations/test.txt
  split_zhou_OxfordPets.json"""),
    _split_json(
        "StanfordCars", "stanford_cars", "stanford_cars", num_classes=196, train=6509, val=1635, test=8041,
        image_dir="", split_prefix="",
        required=("cars_train/", "cars_test/",),
        raw=("devkit/cars_train_annos.mat", "devkit/cars_meta.mat", "cars_test_annos_withlabels.mat"),
        sources=(
            Source("cars_train.tgz", url="http://ai.stanford.edu/~jkrause/car196/cars_train.tgz", dead=True,
                   page=_CARS_PAGE),
            Source("cars_test.tgz", url="http://ai.stanford.edu/~jkrause/car196/cars_test.tgz", dead=True,
                   page=_CARS_PAGE),
            Source("car_devkit.tgz", url="https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz", dead=True,
                   page=_CARS_PAGE),
            Source("cars_test_annos_withlabels.mat",
                   url="http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat", dead=True,
                   page=_CARS_PAGE),
        ),
        loader="mmrl.datasets.stanford_cars:StanfordCars", split_id="1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT",
        prepare=(PrepareStep(("cars_train/",), ("cars_train.tgz",), "extract", ("cars_train",)),
                 PrepareStep(("cars_test/",), ("cars_test.tgz",), "extract", ("cars_test",)),
                 PrepareStep(("devkit/",), ("car_devkit.tgz",), "extract", ("devkit",), optional=True),
                 PrepareStep(("cars_test_annos_withlabels.mat",), ("cars_test_annos_withlabels.mat",), "place",
                             optional=True)),
        synthetic="stanford_cars",
        layout="""stanford_cars/
  cars_train/00001.jpg ...            8,144 images
  cars_test/00001.jpg ...             8,041 images
  devkit/cars_train_annos.mat, devkit/cars_meta.mat
  cars_test_annos_withlabels.mat
  split_zhou_StanfordCars.json        (paths start with cars_train/ or cars_test/)"""),
    _split_json(
        "OxfordFlowers", "oxford_flowers", "oxford_flowers", num_classes=102, train=4093, val=1633, test=2463,
        image_dir="jpg",
        raw=("imagelabels.mat", "cat_to_name.json"),
        sources=(
            Source("102flowers.tgz", url=f"{_OX}/flowers/102/102flowers.tgz"),
            Source("imagelabels.mat", url=f"{_OX}/flowers/102/imagelabels.mat"),
            _drive("cat_to_name.json", "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"),
        ),
        loader="mmrl.datasets.oxford_flowers:OxfordFlowers", split_id="1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT",
        prepare=(PrepareStep(("jpg/",), ("102flowers.tgz",), "extract", ("jpg",)),
                 PrepareStep(("imagelabels.mat",), ("imagelabels.mat",), "place", optional=True),
                 PrepareStep(("cat_to_name.json",), ("cat_to_name.json",), "place", optional=True)),
        synthetic="oxford_flowers",
        layout="""oxford_flowers/
  jpg/image_00001.jpg ...             8,189 images
  imagelabels.mat, cat_to_name.json
  split_zhou_OxfordFlowers.json""",
        aliases=("Flowers102",)),
    _split_json(
        "Food101", "food101", "food-101", num_classes=101, train=50_500, val=20_200, test=30_300,
        image_dir="images",
        sources=(
            Source("food-101.tar.gz", url="http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
                   page="https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
                   note="extracted directly under the data root (it contains food-101/)"),
        ),
        # meta/ (the official train/test lists) is ignored, as in the reference: the generic loader
        split_id="1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl",
        prepare=(PrepareStep(("images/",), ("food-101.tar.gz",), "extract", ("food-101", True)),),
        synthetic="food101",
        layout="""food-101/
  images/<class_name>/<id>.jpg        101 folders x 1,000 images
  split_zhou_Food101.json"""),
    DatasetSpec(
        "FGVCAircraft", "fgvc_aircraft", "fgvc_aircraft", num_classes=100, train=3334, val=3333, test=3333,
        image_dir="images", split_file=None,
        required=("images/", "variants.txt", "images_variant_train.txt", "images_variant_val.txt",
                  "images_variant_test.txt"),
        sources=(
            Source("fgvc-aircraft-2013b.tar.gz",
                   url=f"{_OX}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                   note="only its data/ folder is kept, renamed to fgvc_aircraft/"),
        ),
        loader="mmrl.datasets.fgvc_aircraft:FGVCAircraft", benchmarks=("b2n", "fs", "cd"),
        prepare=(PrepareStep(("images/", "variants.txt", "images_variant_train.txt", "images_variant_val.txt",
                              "images_variant_test.txt"), ("fgvc-aircraft-2013b.tar.gz",), "extract_contents",
                             ("fgvc-aircraft-2013b/data",)),),
        synthetic="fgvc_aircraft", verify="variant_lists", split_where="images_variant_*.txt",
        layout="""fgvc_aircraft/                        (= fgvc-aircraft-2013b/data/ renamed)
  images/<id>.jpg
  variants.txt
  images_variant_train.txt, images_variant_val.txt, images_variant_test.txt"""),
    _split_json(
        "SUN397", "sun397", "sun397", num_classes=397, train=15_880, val=3970, test=19_850,
        image_dir="SUN397",
        raw=("ClassName.txt", "Training_01.txt", "Testing_01.txt"),
        sources=(
            Source("SUN397.tar.gz", url="http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz", dead=True,
                   page=_SUN_PAGE),
            Source("Partitions.zip", url="https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip",
                   dead=True, page=_SUN_PAGE),
        ),
        loader="mmrl.datasets.sun397:SUN397", split_id="1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq",
        prepare=(PrepareStep(("SUN397/",), ("SUN397.tar.gz",), "extract", ("SUN397",)),
                 PrepareStep(("ClassName.txt", "Training_01.txt", "Testing_01.txt"), ("Partitions.zip",),
                             "extract_flat", ("ClassName.txt", "Training_01.txt", "Testing_01.txt"), optional=True)),
        synthetic="sun397",
        layout="""sun397/
  SUN397/<letter>/<name>[/<sub>]/sun_*.jpg
  ClassName.txt, Training_01.txt, Testing_01.txt     (from Partitions.zip)
  split_zhou_SUN397.json"""),
    _split_json(
        "DescribableTextures", "dtd", "dtd", num_classes=47, train=2820, val=1128, test=1692,
        image_dir="images",
        sources=(
            Source("dtd-r1.0.1.tar.gz", url=f"{_OX}/dtd/download/dtd-r1.0.1.tar.gz",
                   note="extracted under the data root (it contains dtd/)"),
        ),
        # the official labels/ splits and imdb/ are ignored (protocol): the generic loader
        split_id="1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x",
        prepare=(PrepareStep(("images/",), ("dtd-r1.0.1.tar.gz",), "extract", ("dtd", True)),),
        synthetic="dtd",
        layout="""dtd/
  images/<texture>/<texture>_XXXX.jpg 47 folders x 120 images
  split_zhou_DescribableTextures.json""",
        aliases=("DTD",)),
    _split_json(
        "EuroSAT", "eurosat", "eurosat", num_classes=10, train=13_500, val=5400, test=8100,
        image_dir="2750",
        sources=(
            Source("EuroSAT.zip", url="http://madm.dfki.de/files/sentinel/EuroSAT.zip",
                   note="extracted into eurosat/ (gives 2750/); the host may have moved"),
        ),
        loader="mmrl.datasets.eurosat:EuroSAT", split_id="1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o",
        prepare=(PrepareStep(("2750/",), ("EuroSAT.zip",), "extract", ("2750",)),),
        synthetic="eurosat",
        layout="""eurosat/
  2750/<ClassFolder>/<ClassFolder>_<n>.jpg   10 folders, 27,000 images
  split_zhou_EuroSAT.json"""),
    _split_json(
        "UCF101", "ucf101", "ucf101", num_classes=101, train=7639, val=1898, test=3783,
        image_dir="UCF-101-midframes",
        raw=("ucfTrainTestlist/classInd.txt", "ucfTrainTestlist/trainlist01.txt",
             "ucfTrainTestlist/testlist01.txt"),
        sources=(
            _drive("UCF-101-midframes.zip", "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O",
                   note="middle frame of every video, prepared by the CoOp authors"),
        ),
        loader="mmrl.datasets.ucf101:UCF101", split_id="1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y",
        prepare=(PrepareStep(("UCF-101-midframes/",), ("UCF-101-midframes.zip",), "extract", ("UCF-101-midframes",)),
                 PrepareStep(("UCF-101-midframes/",), (), "midframes_from_videos", option="videos")),
        synthetic="ucf101",
        layout="""ucf101/
  UCF-101-midframes/<Renamed_Action>/<video stem>.jpg   e.g. Apply_Eye_Makeup/v_ApplyEyeMakeup_g08_c01.jpg
  split_zhou_UCF101.json"""),
    DatasetSpec(
        "ImageNetV2", "imagenetv2", "imagenetv2", num_classes=1000, train=None, val=None, test=10_000,
        image_dir="imagenetv2-matched-frequency-format-val", split_file=None, test_only=True,
        required=("imagenetv2-matched-frequency-format-val/", "classnames.txt"),
        sources=(
            Source("imagenetv2-matched-frequency.tar.gz",
                   url="https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
                   page="https://github.com/modestyachts/ImageNetV2"),
            CLASSNAMES,
        ),
        loader="mmrl.datasets.imagenetv2:ImageNetV2", benchmarks=("dg",),
        prepare=(PrepareStep(("imagenetv2-matched-frequency-format-val/",), ("imagenetv2-matched-frequency.tar.gz",),
                             "extract", ("imagenetv2-matched-frequency-format-val",)),
                 PrepareStep(("classnames.txt",), (), "classnames")),
        classnames_from="imagenet", synthetic="imagenetv2", numbered_classes=True,
        layout="""imagenetv2/
  imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg   10,000 images
  classnames.txt                      (copy of imagenet/classnames.txt)"""),
    _imagenet_variant(
        "ImageNetSketch", "imagenet_sketch", "imagenet-sketch", 1000, 50_889, "images", "imagenet_wnids.txt",
        Source("ImageNet-Sketch.zip", page="https://github.com/HaohanWang/ImageNet-Sketch",
               note="no stable direct link is recorded; get the zip from the project page "
                    "(its top folder, e.g. sketch/, becomes images/)"),
        "images/<wnid>/*.JPEG                1000 folders, 50,889 images (rename the extracted folder to images/)"),
    _imagenet_variant(
        "ImageNetA", "imagenet_a", "imagenet-adversarial", 200, 7500, "imagenet-a", "imagenet_a_wnids.txt",
        Source("imagenet-a.tar", url="https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
               page="https://github.com/hendrycks/natural-adv-examples",
               note="download link from the project README (not in CoOp's list)"),
        "imagenet-a/<wnid>/*.jpg             200 folders, 7,500 images (+ README.txt)"),
    _imagenet_variant(
        "ImageNetR", "imagenet_r", "imagenet-rendition", 200, 30_000, "imagenet-r", "imagenet_r_wnids.txt",
        Source("imagenet-r.tar", url="https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
               page="https://github.com/hendrycks/imagenet-r",
               note="download link from the project README (not in CoOp's list)"),
        "imagenet-r/<wnid>/*.jpg             200 folders, 30,000 images (+ README.txt)"),
    DatasetSpec(
        world.DATASET_NAME, "demo", world.FOLDER, loader="mmrl.datasets.demo:Demo", image_dir="images",
        split_file=world.SPLIT_FILE, required=("images/", world.SPLIT_FILE), template=world.TEMPLATE,
        builtin_demo=True,
        layout=f"""{world.FOLDER}/   (generated by mmrl.demo.world.ensure_demo_dataset)
  images/<colour>_<pattern>_<shape>/<n>.png
  {world.SPLIT_FILE}"""),
)
