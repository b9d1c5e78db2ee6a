"""Configuration: Dassl key names plus each method's block (TRAINER.<NAME>), layered with provenance.

Layers, later wins (docs/protocol.md#one-run): defaults < dataset YAML < trainer YAML < per-dataset
overrides file < CLI named options < CLI ``KEY VALUE`` opts.  Every resolved key remembers
the layer that last set it, which ``mmrl explain`` prints.

The modules: ``defaults`` (the default config), ``files`` (where the YAMLs are, the overrides
files), ``layers`` (the resolution with provenance), ``validate`` (refused values), ``identity``
(the config hash and what differs between two configs), ``views`` (flat, plain and text forms).
"""
from mmrl.config.defaults import SUBSAMPLE_MODES, TASKS, TEST_PRECISIONS, get_default_config
from mmrl.config.files import (CONFIGS_PREFIX, config_file, config_path, configs_dir, load_overrides,
                               packaged_configs, read_yaml_mapping)
from mmrl.config.identity import NON_IDENTITY_KEYS, changed_keys, config_hash, identity
from mmrl.config.layers import ConfigBuilder, ResolvedConfig, RunArgs, resolve_config
from mmrl.config.validate import ENUMERATED, ENUMERATED_TRAINING, TRANSFORM_NAMES, validate
from mmrl.config.views import clone_unfrozen, config_to_dict, dump_config_text, flatten

__all__ = [
    "CONFIGS_PREFIX", "ENUMERATED", "ENUMERATED_TRAINING", "NON_IDENTITY_KEYS", "SUBSAMPLE_MODES",
    "TASKS", "TEST_PRECISIONS", "TRANSFORM_NAMES", "ConfigBuilder", "ResolvedConfig", "RunArgs", "changed_keys",
    "clone_unfrozen", "config_file", "config_hash", "config_path", "config_to_dict", "configs_dir",
    "dump_config_text", "flatten",
    "get_default_config", "identity", "load_overrides", "packaged_configs", "read_yaml_mapping", "resolve_config",
    "validate",
]
