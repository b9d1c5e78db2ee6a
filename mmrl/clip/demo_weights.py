"""The shipped demo CLIP weights (``mmrl/resources/demo_clip.pt``): pack, load, check.

File format (a plain ``torch.save`` dict, loadable with ``torch.load(weights_only=True)``):

    {"format": "mmrl-demo-clip", "version": 1,
     "arch": "demo-tiny", "arch_cfg": {...TINY_ARCHS["demo-tiny"] at pretraining time...},
     "state_dict": {name: fp16 tensor}      # everything but token_embedding.weight
     "token_ids": LongTensor[n],            # the vocabulary ids the demo texts use
     "token_rows": fp16 Tensor[n, width],   # their embedding rows (all other rows are zero)
     "meta": {...}}                         # how it was made (command, steps, seconds, ...)

Only the token rows the demo's captions and prompts use are stored: the full 49408-row table
would dominate the file, and rows never trained carry no information.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from mmrl.clip.archs import TINY_ARCHS, build_tiny_clip
from mmrl.data.fileio import atomic_path
from mmrl.data.resources import resource_path
from mmrl.errors import WeightsError
from mmrl.utils.torchfile import load_torch_file

FORMAT = "mmrl-demo-clip"
VERSION = 1
ARCH = "demo-tiny"
_EMB = "token_embedding.weight"


def demo_weights_path() -> Path:
    """``$MMRL_DEMO_WEIGHTS`` if set, else the file shipped in the package."""
    env = os.environ.get("MMRL_DEMO_WEIGHTS")
    if env:
        return Path(env).expanduser()
    return resource_path("demo_clip.pt")


def pack_state(model: torch.nn.Module, token_ids: torch.Tensor, meta: dict | None = None) -> dict:
    """The dict :func:`save_demo_clip` writes: fp16 weights + the used token rows."""
    sd = model.state_dict()
    ids = torch.as_tensor(sorted(set(int(i) for i in token_ids.flatten().tolist())), dtype=torch.long)
    rows = sd[_EMB][ids].detach().to(torch.float16).clone()
    state = {k: v.detach().to(torch.float16).clone() if v.is_floating_point() else v.detach().clone()
             for k, v in sd.items() if k != _EMB and k != "attn_mask"}
    return {"format": FORMAT, "version": VERSION, "arch": ARCH, "arch_cfg": dict(TINY_ARCHS[ARCH]),
            "state_dict": state, "token_ids": ids, "token_rows": rows, "meta": dict(meta or {})}


def save_demo_clip(model: torch.nn.Module, token_ids: torch.Tensor, path: str | os.PathLike,
                   meta: dict | None = None) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(pack_state(model, token_ids, meta), tmp)
    return path


def read_demo_file(path: str | os.PathLike | None = None) -> dict:
    """The raw dict of a demo weights file, validated; clear errors otherwise."""
    path = Path(path) if path is not None else demo_weights_path()
    hint = ("Reinstall the package (the file ships in mmrl/resources/) or rebuild it with "
            "`python -m mmrl.demo.pretrain --out mmrl/resources/demo_clip.pt`.")
    obj = load_torch_file(path, "Demo CLIP weights file", hint, error=WeightsError)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a demo CLIP weights file (no format={FORMAT!r}). {hint}")
    for key in ("state_dict", "token_ids", "token_rows", "arch_cfg"):
        if key not in obj:
            raise WeightsError(f"Demo CLIP weights {path} lack {key!r}. {hint}")
    return obj


def load_demo_clip(path: str | os.PathLike | None = None):
    """The pretrained demo CLIP: an ``open_clip.model.CLIP`` in fp32 and eval mode.

    Built with ``mmrl.clip.archs.build_tiny_clip("demo-tiny")``; parameters are left trainable
    (callers freeze). Token-embedding rows the demo never uses are zero.
    """
    path = Path(path) if path is not None else demo_weights_path()
    obj = read_demo_file(path)
    if dict(obj["arch_cfg"]) != dict(TINY_ARCHS[ARCH]):
        raise WeightsError(f"Demo CLIP weights {path} were made for demo-tiny = {obj['arch_cfg']}, but "
                           f"mmrl.clip.archs.TINY_ARCHS['demo-tiny'] is now {TINY_ARCHS[ARCH]}. Rebuild the "
                           f"weights with `python -m mmrl.demo.pretrain --out {path}`.")
    model = build_tiny_clip(ARCH)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in obj["state_dict"].items()}
    emb = torch.zeros_like(model.token_embedding.weight)
    ids, rows = obj["token_ids"].long(), obj["token_rows"].float()
    if ids.ndim != 1 or rows.shape != (ids.numel(), emb.shape[1]) or (ids.numel() and int(ids.max()) >= emb.shape[0]):
        raise WeightsError(f"Demo CLIP weights {path}: token_ids/token_rows have inconsistent shapes "
                           f"{tuple(ids.shape)} / {tuple(rows.shape)}.")
    emb[ids] = rows
    sd[_EMB] = emb
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k != "attn_mask"]
    if missing or unexpected:
        raise WeightsError(f"Demo CLIP weights {path} do not match the demo-tiny architecture "
                           f"(missing {missing[:5]}, unexpected {unexpected[:5]}).")
    return model.float().eval()
