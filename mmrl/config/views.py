"""Plain views of a config node: flat ``KEY.SUB: value`` dicts, the nested dict a record stores,
the text dump at the head of log.txt, an unfrozen copy."""
from __future__ import annotations

import copy
from typing import Any

from yacs.config import CfgNode as CN


def flatten(node: CN, prefix: str = "") -> dict[str, Any]:
    """A config's leaves as dotted keys, sorted."""
    return _flatten(node, prefix, CN, sorted)


def _flatten_plain(d: dict, prefix: str = "") -> dict[str, Any]:
    """A plain nested mapping's leaves as dotted keys, in its own order (the order a YAML file sets them)."""
    return _flatten(d, prefix, dict, list)


def _flatten(node: dict, prefix: str, nested: type, order) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in order(node.keys()):
        v = node[k]
        key = f"{prefix}{k}"
        if isinstance(v, nested):
            out.update(_flatten(v, key + ".", nested, order))
        else:
            out[key] = v
    return out


def config_to_dict(cfg: CN) -> dict[str, Any]:
    def conv(node):
        if isinstance(node, CN):
            return {k: conv(node[k]) for k in sorted(node.keys())}
        if isinstance(node, tuple):
            return [conv(x) for x in node]
        if isinstance(node, list):
            return [conv(x) for x in node]
        return node
    return conv(cfg)


def dump_config_text(cfg: CN) -> str:
    """The sorted nested 'KEY: value' dump printed at the start of log.txt (Dassl style)."""
    lines: list[str] = []

    def rec(node: CN, indent: int) -> None:
        for k in sorted(node.keys()):
            v = node[k]
            if isinstance(v, CN):
                lines.append(" " * indent + f"{k}:")
                rec(v, indent + 2)
            else:
                lines.append(" " * indent + f"{k}: {v}")
    rec(cfg, 0)
    return "\n".join(lines)


def clone_unfrozen(cfg: CN) -> CN:
    c = copy.deepcopy(cfg)
    c.defrost()
    return c
