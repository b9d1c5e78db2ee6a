"""Access to the data files shipped in mmrl/resources/ (see resources/PROVENANCE.md)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
DEFAULT_TEMPLATE = "a photo of a {}."


def resource_path(name: str) -> Path:
    return RESOURCES / name


@lru_cache(maxsize=None)
def read_lines(name: str) -> tuple[str, ...]:
    """Non-empty lines of a resource file, stripped of the line ending."""
    text = resource_path(name).read_text(encoding="utf-8")
    return tuple(line.rstrip("\r\n") for line in text.splitlines() if line.strip())


@lru_cache(maxsize=None)
def read_tsv_map(name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in read_lines(name):
        key, value = line.split("\t", 1)
        out[key] = value
    return out


def text_template(dataset_name: str) -> str | None:
    """The MMRL text template for a DATASET.NAME, or None when the dataset has none."""
    return read_tsv_map("mmrl_text_templates.tsv").get(dataset_name)
