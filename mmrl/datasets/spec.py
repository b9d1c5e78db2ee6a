"""What a dataset is, in one frozen declaration: :class:`DatasetSpec`.

A spec holds every fact about one dataset: its names (DATASET.NAME, config stem, folder),
its layout (image folder, split file, required and raw files), its published sizes (protocol
§12), where its files come from (§11) and what a person must do by hand, the loader class
that lists its images, and how the tools treat it: the prepare steps, the synthetic-layout
writer and the kind of verify check. The registry, the sweep's catalog, prepare, verify and
synthetic all read these fields; none of them keeps a per-dataset table of its own.

Tool hooks are names (resolved by :mod:`mmrl.datatools`), so a run imports no tooling.
"""
from __future__ import annotations

from dataclasses import dataclass

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
class PrepareStep:
    """Make ``products`` (relative to the dataset folder; "x/" = folder) from ``sources`` with
    the prepare action named ``action`` (see :mod:`mmrl.datatools.steps`), given ``args``.

    ``optional``: raw files only needed to regenerate a split, never a failure. ``option``:
    the step is used instead of the default step with the same products when that prepare
    option (``videos``, ``val_labels``) is given."""

    products: tuple[str, ...]
    sources: tuple[str, ...]
    action: str
    args: tuple = ()
    optional: bool = False
    option: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    name: str                       # DATASET.NAME, also the display name in tables and plots
    stem: str                       # configs/datasets/<stem>.yaml and the output/ folder name
    folder: str                     # folder under DATASET.ROOT
    loader: str = "mmrl.datasets.base:JsonSplitDataset"  # "module:Class" listing the images, imported on use
    image_dir: str = "images"       # relative to folder: where class folders / images live
    split_file: str | None = None   # split JSON inside folder; None = no split JSON used
    num_classes: int | None = None  # published sizes (§12); None = not applicable / unknown
    train: int | None = None
    val: int | None = None
    test: int | None = None
    required: tuple[str, ...] = ()  # relative to folder; trailing "/" = directory; needed to load
    raw: tuple[str, ...] = ()       # only needed to regenerate a split without the JSON
    sources: tuple[Source, ...] = ()
    split_prefix: str | None = None  # split JSON paths relative to this (default image_dir)
    test_only: bool = False         # ImageNet variants: train_x = test, no val, no few-shot
    val_is_test: bool = False       # ImageNet: val = test, few-shot on train only
    class_list: str | None = None   # resource file listing the expected class folders
    template: str | None = None     # text template; None = mmrl_text_templates.tsv or the default
    layout: str = ""                # the target tree, for manual steps
    aliases: tuple[str, ...] = ()
    benchmarks: tuple[str, ...] = ()  # protocol roles: b2n, fs, cd_source, cd, dg (table order = spec order)
    builtin_demo: bool = False      # the demo benchmark (runs without a data root)
    prepare: tuple[PrepareStep, ...] = ()
    classnames_from: str | None = None  # folder (beside this one) whose classnames.txt prepare copies
    synthetic: str = "folders"      # writer in mmrl.datatools.synthetic.layouts ("folders": <image_dir>/<class>/)
    synthetic_classes: tuple[str, ...] = ()  # class folder names for the "folders" writer
    verify: str = ""                # check in mmrl.datatools.verify; "" = split_json when there is one
    verify_parts: tuple[tuple[str, str], ...] = (("test", ""),)  # class_folders: (split, subfolder)
    numbered_classes: bool = False  # class folders are 0..N-1 (ImageNetV2), not wnids
    split_where: str = ""           # how verify names where the sizes came from, when not split_file

    def __post_init__(self) -> None:
        for attr in ("name", "stem", "folder"):
            if not getattr(self, attr):
                raise TypeError(f"dataset spec {self.name or self.stem or '?'} must set {attr}")

    @property
    def display_name(self) -> str:
        return self.name

    @property
    def prefix(self) -> str:
        return self.image_dir if self.split_prefix is None else self.split_prefix

    @property
    def verify_kind(self) -> str:
        return self.verify or ("split_json" if self.split_file else "class_folders")

    def source(self, file: str) -> Source:
        for s in self.sources:
            if s.file == file:
                return s
        raise KeyError(f"{self.name} has no source {file!r}")

    def sizes(self) -> dict[str, int | None]:
        return {"classes": self.num_classes, "train": self.train, "val": self.val, "test": self.test}
