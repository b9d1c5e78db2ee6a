"""What each of the 15 datasets should look like on disk, and where its files come from.

One :class:`DatasetManifest` per dataset (layout, sources, published sizes),
keyed by DATASET.NAME, with lookup by stem or folder too. ``verify`` checks a folder
against it; ``prepare`` fetches its sources. Checksums are recorded only where published
(none of the §11 sources publishes one, so ``sha256`` is None everywhere for now).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from mmrl.errors import DatasetError

GDRIVE_VIEW = "https://drive.google.com/file/d/{}/view?usp=sharing"


@dataclass(frozen=True)
class Source:
    """One downloadable file. ``file`` is also its name on a mirror (``<mirror>/<file>``)."""

    file: str
    url: str | None = None          # official HTTP(S) location
    gdrive_id: str | None = None    # Google Drive file id (fetched with gdown)
    sha256: str | None = None       # only when published; never guessed
    needs_login: bool = False       # e.g. ImageNet: registration on image-net.org
    dead: bool = False              # host known to be gone (StanfordCars, SUN397 mirrors)
    page: str = ""                  # where a person can get it by hand
    note: str = ""

    @property
    def automatic(self) -> bool:
        """Can be fetched without a person (given network)."""
        return bool(self.url or self.gdrive_id) and not (self.needs_login or self.dead)

    @property
    def where(self) -> str:
        """A human pointer to the file, for manual steps."""
        if self.gdrive_id:
            return GDRIVE_VIEW.format(self.gdrive_id)
        return self.url or self.page or "(no public source recorded)"


@dataclass(frozen=True)
class DatasetManifest:
    name: str                       # DATASET.NAME
    stem: str                       # config stem
    folder: str                     # folder under DATASET.ROOT
    num_classes: int
    train: int | None               # published split sizes; None = not applicable
    val: int | None
    test: int
    image_dir: str                  # relative to folder: where class folders / images live
    split_json: str | None          # file name inside folder; None = no split JSON used
    required: tuple[str, ...]       # relative to folder; trailing "/" = directory; needed to load
    raw: tuple[str, ...] = ()       # only needed to regenerate a split without the JSON
    sources: tuple[Source, ...] = ()
    split_prefix: str | None = None  # split JSON paths relative to this (default image_dir)
    test_only: bool = False         # ImageNet variants
    val_is_test: bool = False       # ImageNet: val = test
    class_list: str | None = None   # resource file listing the expected class folders, in label order
    layout: str = ""                # the target tree, for manual steps
    aliases: tuple[str, ...] = field(default=())

    @property
    def prefix(self) -> str:
        return self.image_dir if self.split_prefix is None else self.split_prefix

    def source(self, file: str) -> Source:
        for s in self.sources:
            if s.file == file:
                return s
        raise KeyError(f"{self.name} has no source {file!r}")

    def sizes(self) -> dict[str, int | None]:
        return {"classes": self.num_classes, "train": self.train, "val": self.val, "test": self.test}


def _drive(file: str, gid: str, note: str = "") -> Source:
    return Source(file=file, gdrive_id=gid, note=note)


CLASSNAMES = _drive("classnames.txt", "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF",
                    note="CoOp's ImageNet classnames.txt; the four variants use a copy of it")

_OX = "https://www.robots.ox.ac.uk/~vgg/data"
_CARS_PAGE = "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (offline; look for a mirror of the same files)"
_SUN_PAGE = "https://vision.princeton.edu/projects/2010/SUN/ (offline; look for a mirror of the same files)"

_MANIFESTS: tuple[DatasetManifest, ...] = (
    DatasetManifest(
        "ImageNet", "imagenet", "imagenet", 1000, 1_281_167, None, 50_000,
        image_dir="images", split_json=None, val_is_test=True, class_list="imagenet_wnids.txt",
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
        layout="""imagenet/
  classnames.txt                      <wnid> <class name> per line (1000 lines)
  images/train/<wnid>/*.JPEG          1000 folders, 1,281,167 images
  images/val/<wnid>/*.JPEG            1000 folders, 50,000 images (sorted by wnid)"""),
    DatasetManifest(
        "Caltech101", "caltech101", "caltech-101", 100, 4128, 1649, 2465,
        image_dir="101_ObjectCategories", split_json="split_zhou_Caltech101.json",
        required=("101_ObjectCategories/", "split_zhou_Caltech101.json"),
        sources=(
            Source("101_ObjectCategories.tar.gz",
                   url="http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",
                   note="the host has moved since CoOp; if it fails, fetch the same archive from data.caltech.edu"),
            _drive("split_zhou_Caltech101.json", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN"),
        ),
        layout="""caltech-101/
  101_ObjectCategories/<category>/image_XXXX.jpg
  split_zhou_Caltech101.json"""),
    DatasetManifest(
        "OxfordPets", "oxford_pets", "oxford_pets", 37, 2944, 736, 3669,
        image_dir="images", split_json="split_zhou_OxfordPets.json",
        required=("images/", "split_zhou_OxfordPets.json"),
        raw=("annotations/trainval.txt", "annotations/test.txt"),
        sources=(
            Source("images.tar.gz", url=f"{_OX}/pets/data/images.tar.gz"),
            Source("annotations.tar.gz", url=f"{_OX}/pets/data/annotations.tar.gz"),
            _drive("split_zhou_OxfordPets.json", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs"),
        ),
        layout="""oxford_pets/
  images/<Breed_Name>_<n>.jpg
  annotations/trainval.txt, annotations/test.txt
  split_zhou_OxfordPets.json"""),
    DatasetManifest(
        "StanfordCars", "stanford_cars", "stanford_cars", 196, 6509, 1635, 8041,
        image_dir="", split_prefix="", split_json="split_zhou_StanfordCars.json",
        required=("cars_train/", "cars_test/", "split_zhou_StanfordCars.json"),
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
            _drive("split_zhou_StanfordCars.json", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT"),
        ),
        layout="""stanford_cars/
  cars_train/00001.jpg ...            8,144 images
  cars_test/00001.jpg ...             8,041 images
  devkit/cars_train_annos.mat, devkit/cars_meta.mat
  cars_test_annos_withlabels.mat
  split_zhou_StanfordCars.json        (paths start with cars_train/ or cars_test/)"""),
    DatasetManifest(
        "OxfordFlowers", "oxford_flowers", "oxford_flowers", 102, 4093, 1633, 2463,
        image_dir="jpg", split_json="split_zhou_OxfordFlowers.json",
        required=("jpg/", "split_zhou_OxfordFlowers.json"),
        raw=("imagelabels.mat", "cat_to_name.json"),
        sources=(
            Source("102flowers.tgz", url=f"{_OX}/flowers/102/102flowers.tgz"),
            Source("imagelabels.mat", url=f"{_OX}/flowers/102/imagelabels.mat"),
            _drive("cat_to_name.json", "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"),
            _drive("split_zhou_OxfordFlowers.json", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
        ),
        layout="""oxford_flowers/
  jpg/image_00001.jpg ...             8,189 images
  imagelabels.mat, cat_to_name.json
  split_zhou_OxfordFlowers.json""",
        aliases=("Flowers102",)),
    DatasetManifest(
        "Food101", "food101", "food-101", 101, 50_500, 20_200, 30_300,
        image_dir="images", split_json="split_zhou_Food101.json",
        required=("images/", "split_zhou_Food101.json"),
        sources=(
            Source("food-101.tar.gz", url="http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
                   page="https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
                   note="extracted directly under the data root (it contains food-101/)"),
            _drive("split_zhou_Food101.json", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl"),
        ),
        layout="""food-101/
  images/<class_name>/<id>.jpg        101 folders x 1,000 images
  split_zhou_Food101.json"""),
    DatasetManifest(
        "FGVCAircraft", "fgvc_aircraft", "fgvc_aircraft", 100, 3334, 3333, 3333,
        image_dir="images", split_json=None,
        required=("images/", "variants.txt", "images_variant_train.txt", "images_variant_val.txt",
                  "images_variant_test.txt"),
        sources=(
            Source("fgvc-aircraft-2013b.tar.gz",
                   url=f"{_OX}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                   note="only its data/ folder is kept, renamed to fgvc_aircraft/"),
        ),
        layout="""fgvc_aircraft/                        (= fgvc-aircraft-2013b/data/ renamed)
  images/<id>.jpg
  variants.txt
  images_variant_train.txt, images_variant_val.txt, images_variant_test.txt"""),
    DatasetManifest(
        "SUN397", "sun397", "sun397", 397, 15_880, 3970, 19_850,
        image_dir="SUN397", split_json="split_zhou_SUN397.json",
        required=("SUN397/", "split_zhou_SUN397.json"),
        raw=("ClassName.txt", "Training_01.txt", "Testing_01.txt"),
        sources=(
            Source("SUN397.tar.gz", url="http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz", dead=True,
                   page=_SUN_PAGE),
            Source("Partitions.zip", url="https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip",
                   dead=True, page=_SUN_PAGE),
            _drive("split_zhou_SUN397.json", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq"),
        ),
        layout="""sun397/
  SUN397/<letter>/<name>[/<sub>]/sun_*.jpg
  ClassName.txt, Training_01.txt, Testing_01.txt     (from Partitions.zip)
  split_zhou_SUN397.json"""),
    DatasetManifest(
        "DescribableTextures", "dtd", "dtd", 47, 2820, 1128, 1692,
        image_dir="images", split_json="split_zhou_DescribableTextures.json",
        required=("images/", "split_zhou_DescribableTextures.json"),
        sources=(
            Source("dtd-r1.0.1.tar.gz", url=f"{_OX}/dtd/download/dtd-r1.0.1.tar.gz",
                   note="extracted under the data root (it contains dtd/)"),
            _drive("split_zhou_DescribableTextures.json", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"),
        ),
        layout="""dtd/
  images/<texture>/<texture>_XXXX.jpg 47 folders x 120 images
  split_zhou_DescribableTextures.json""",
        aliases=("DTD",)),
    DatasetManifest(
        "EuroSAT", "eurosat", "eurosat", 10, 13_500, 5400, 8100,
        image_dir="2750", split_json="split_zhou_EuroSAT.json",
        required=("2750/", "split_zhou_EuroSAT.json"),
        sources=(
            Source("EuroSAT.zip", url="http://madm.dfki.de/files/sentinel/EuroSAT.zip",
                   note="extracted into eurosat/ (gives 2750/); the host may have moved"),
            _drive("split_zhou_EuroSAT.json", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o"),
        ),
        layout="""eurosat/
  2750/<ClassFolder>/<ClassFolder>_<n>.jpg   10 folders, 27,000 images
  split_zhou_EuroSAT.json"""),
    DatasetManifest(
        "UCF101", "ucf101", "ucf101", 101, 7639, 1898, 3783,
        image_dir="UCF-101-midframes", split_json="split_zhou_UCF101.json",
        required=("UCF-101-midframes/", "split_zhou_UCF101.json"),
        raw=("ucfTrainTestlist/classInd.txt", "ucfTrainTestlist/trainlist01.txt",
             "ucfTrainTestlist/testlist01.txt"),
        sources=(
            _drive("UCF-101-midframes.zip", "10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O",
                   note="middle frame of every video, prepared by the CoOp authors"),
            _drive("split_zhou_UCF101.json", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y"),
        ),
        layout="""ucf101/
  UCF-101-midframes/<Renamed_Action>/<video stem>.jpg   e.g. Apply_Eye_Makeup/v_ApplyEyeMakeup_g08_c01.jpg
  split_zhou_UCF101.json"""),
    DatasetManifest(
        "ImageNetV2", "imagenetv2", "imagenetv2", 1000, None, None, 10_000,
        image_dir="imagenetv2-matched-frequency-format-val", split_json=None, test_only=True,
        required=("imagenetv2-matched-frequency-format-val/", "classnames.txt"),
        sources=(
            Source("imagenetv2-matched-frequency.tar.gz",
                   url="https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
                   page="https://github.com/modestyachts/ImageNetV2"),
            CLASSNAMES,
        ),
        layout="""imagenetv2/
  imagenetv2-matched-frequency-format-val/<0..999>/*.jpeg   10,000 images
  classnames.txt                      (copy of imagenet/classnames.txt)"""),
    DatasetManifest(
        "ImageNetSketch", "imagenet_sketch", "imagenet-sketch", 1000, None, None, 50_889,
        image_dir="images", split_json=None, test_only=True, class_list="imagenet_wnids.txt",
        required=("images/", "classnames.txt"),
        sources=(
            Source("ImageNet-Sketch.zip", page="https://github.com/HaohanWang/ImageNet-Sketch",
                   note="no stable direct link is recorded; get the zip from the project page "
                        "(its top folder, e.g. sketch/, becomes images/)"),
            CLASSNAMES,
        ),
        layout="""imagenet-sketch/
  images/<wnid>/*.JPEG                1000 folders, 50,889 images (rename the extracted folder to images/)
  classnames.txt                      (copy of imagenet/classnames.txt)"""),
    DatasetManifest(
        "ImageNetA", "imagenet_a", "imagenet-adversarial", 200, None, None, 7500,
        image_dir="imagenet-a", split_json=None, test_only=True, class_list="imagenet_a_wnids.txt",
        required=("imagenet-a/", "classnames.txt"),
        sources=(
            Source("imagenet-a.tar", url="https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",
                   page="https://github.com/hendrycks/natural-adv-examples",
                   note="download link from the project README (not in CoOp's list)"),
            CLASSNAMES,
        ),
        layout="""imagenet-adversarial/
  imagenet-a/<wnid>/*.jpg             200 folders, 7,500 images (+ README.txt)
  classnames.txt                      (copy of imagenet/classnames.txt)"""),
    DatasetManifest(
        "ImageNetR", "imagenet_r", "imagenet-rendition", 200, None, None, 30_000,
        image_dir="imagenet-r", split_json=None, test_only=True, class_list="imagenet_r_wnids.txt",
        required=("imagenet-r/", "classnames.txt"),
        sources=(
            Source("imagenet-r.tar", url="https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",
                   page="https://github.com/hendrycks/imagenet-r",
                   note="download link from the project README (not in CoOp's list)"),
            CLASSNAMES,
        ),
        layout="""imagenet-rendition/
  imagenet-r/<wnid>/*.jpg             200 folders, 30,000 images (+ README.txt)
  classnames.txt                      (copy of imagenet/classnames.txt)"""),
)

MANIFESTS: dict[str, DatasetManifest] = {m.name: m for m in _MANIFESTS}


def _keys(m: DatasetManifest) -> tuple[str, ...]:
    return (m.name, m.stem, m.folder, *m.aliases)


def get_manifest(name: str) -> DatasetManifest:
    """Look up by NAME, stem, folder or alias (case-insensitive); unknown names suggest the closest."""
    key = str(name).strip()
    table = {k.lower(): m for m in _MANIFESTS for k in _keys(m)}
    hit = table.get(key.lower())
    if hit is not None:
        return hit
    close = difflib.get_close_matches(key.lower(), list(table), n=1, cutoff=0.5)
    hint = f" Did you mean {table[close[0]].stem!r}?" if close else ""
    raise DatasetError(f"Unknown dataset {key!r}.{hint} Known: {', '.join(m.stem for m in _MANIFESTS)}.")


def all_manifests() -> list[DatasetManifest]:
    return list(_MANIFESTS)
