"""Where the config YAML files are (packaged, or $MMRL_CONFIGS) and reading them, the per-dataset
overrides files included."""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Any

import yaml

from mmrl.errors import ConfigError
from mmrl.trainers import registry

# The YAML files ship inside the package (mmrl/configs, package data), so an installed package
# resolves them from any working directory; the repository's top-level configs/ links there.
CONFIGS_PREFIX = "configs"


def packaged_configs() -> Path:
    root = importlib.resources.files("mmrl") / CONFIGS_PREFIX
    if not isinstance(root, Path) or not root.is_dir():
        raise ConfigError(f"the mmrl package has no configs folder on disk ({root}); reinstall it "
                          f"from a wheel or a checkout (zipped installs are not supported)")
    return root


def configs_dir() -> Path:
    """The first config tree looked in: $MMRL_CONFIGS (the user's files) or the packaged one."""
    env = os.environ.get("MMRL_CONFIGS")
    return Path(env) if env else packaged_configs()


def config_file(*parts: str) -> Path:
    """A file of the config tree (``"datasets", "eurosat.yaml"``): $MMRL_CONFIGS's when it holds
    one, else the packaged one, so that a plug-in's tree needs only its own files. A file in
    neither is named where $MMRL_CONFIGS (or the package) would hold it."""
    first = configs_dir().joinpath(*parts)
    if first.is_file():
        return first
    shipped = packaged_configs().joinpath(*parts)
    return shipped if shipped.is_file() else first


def config_path(path: str | os.PathLike) -> Path:
    """A --config-file / --dataset-config-file path.  A relative ``configs/...`` path that does not
    exist from the working directory (an installed package run elsewhere) means config_file()."""
    p = Path(path)
    if p.is_file() or p.is_absolute() or not p.parts or p.parts[0] != CONFIGS_PREFIX:
        return p
    shipped = config_file(*p.parts[1:])
    return shipped if shipped.is_file() else p


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping (PyYAML keeps the last
    one without a word, so a pasted block could silently undo an edit above it)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, (str, int, float, bool)) and key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice in one mapping; "
                                                    f"keep one of them", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml_mapping(p: Path) -> dict[str, Any]:
    """A YAML file whose top level is a mapping; ConfigError naming the file otherwise."""
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise ConfigError(f"{p}: not a readable YAML file ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of config keys at the top level")
    return data


def load_overrides(trainer: str, task: str, dataset_name: str) -> tuple[dict[str, Any], Path | None]:
    """The override keys for (trainer, task, dataset) from overrides/<TRAINER>.yaml ({} when that
    file has no entry for them).  A missing file is an error: the run would silently lose them."""
    if not registry.get(trainer).has_overrides:
        return {}, None
    path = config_file("overrides", f"{trainer}.yaml")
    if not path.is_file():
        raise ConfigError(f"per-dataset overrides file not found: {path}. Without it {trainer} would run "
                          f"with the wrong per-dataset settings; reinstall the package, or (a plug-in method) "
                          f"put overrides/{trainer}.yaml in the folder $MMRL_CONFIGS names.")
    table = read_yaml_mapping(path).get(task) or {}
    entry = table.get(dataset_name) if isinstance(table, dict) else table
    entry = entry or {}
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: entry {task}/{dataset_name} must map config keys to values")
    return dict(entry), path
