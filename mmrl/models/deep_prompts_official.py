"""The reference's Dassl checkpoints of IVLP, MaPLe and PromptSRC (spec baselines.md §1.6, §5.1,
§6.1, §7.1) mapped to our modules.

Their ``state_dict`` is the whole CustomCLIP: the learned tensors under the reference's names,
the frozen CLIP (``image_encoder.*``, ``text_encoder.*``, ``logit_scale``; no token embedding),
the ``prompt_learner.token_prefix/suffix`` buffers and, for PromptSRC, a second image tower
``prompt_learner.ZS_image_encoder.*``. PromptSRC's Gaussian aggregation also multiplied the
frozen tensors (in fp16), so its file's frozen CLIP differs from the pre-trained one in the last
bits: the reference's evaluation loads every tensor of the file, and so must ours
(``frozen_required``; :func:`clip_with_frozen`). MaPLe's and IVLP's frozen tensors are the
pre-trained ones. The shapes give the architecture except CTX_INIT (which fixes the tokens
after the context) and the backbone name: those come from the evaluating config, as in the
reference.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from mmrl.models.frozen_match import check_frozen_match
from mmrl.errors import CheckpointError
from mmrl.models import towers
from mmrl.models.deep_prompts import TRAINERS, DeepPromptArch

_TEXT_DEEP = re.compile(r"text_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$")
_VISION_DEEP = re.compile(r"image_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$")
_INDEXED = re.compile(r"prompt_learner\.(compound_prompts_text|compound_prompt_projections)\.(\d+)(\.weight|\.bias)?$")
_BUFFERS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix")
_ZS_TOWER = "prompt_learner.ZS_image_encoder."
_TEXT_FROZEN = {"text_encoder.positional_embedding": "positional_embedding",
                "text_encoder.text_projection": "text_projection", "logit_scale": "logit_scale"}


@dataclass
class OfficialCheckpoint:
    state_dict: dict[str, torch.Tensor]   # the learned tensors under our module's names, fp32
    arch: DeepPromptArch
    frozen: dict[str, torch.Tensor]       # the file's frozen CLIP under open_clip names (no token_embedding), fp32
    frozen_required: bool                 # True: the logits need ``frozen`` (PromptSRC's aggregate perturbed it)
    ignored: dict[str, str] = field(default_factory=dict)  # key prefix -> why it is not used


def detect_trainer(sd: dict[str, torch.Tensor]) -> str | None:
    if "prompt_learner.ctx" not in sd:
        return None
    if "prompt_learner.proj.weight" in sd or any(k.startswith("prompt_learner.compound_prompt") for k in sd):
        return "MaPLe"
    if any(k.startswith(_ZS_TOWER) for k in sd):
        return "PromptSRC"
    return "IVLP"


def _contiguous(indices: list[int], first: int, what: str, source: str) -> int:
    """How many consecutive indices first.. there are; an error if there are gaps."""
    if sorted(indices) != list(range(first, first + len(indices))):
        raise CheckpointError(f"{source}: {what} at blocks {sorted(indices)}; the reference puts them at "
                              f"consecutive blocks from {first}. The file is not an unmodified reference checkpoint.")
    return len(indices)


def _expect_shape(key: str, t: torch.Tensor, shape: tuple, source: str) -> None:
    if tuple(t.shape) != tuple(shape):
        raise CheckpointError(f"{source}: {key} has shape {tuple(t.shape)}, expected {tuple(shape)} from the "
                              f"other prompt tensors of the file. The file is damaged or not a reference checkpoint.")


def _learned_ivlp(sd, source):
    ctx = sd["prompt_learner.ctx"]
    nt, dt = ctx.shape
    text = {int(m.group(1)): k for k in sd if (m := _TEXT_DEEP.match(k))}
    depth_text = 1 + _contiguous(list(text), 1, "deep text prompts", source)
    out = {"ctx": ctx}
    for i in range(1, depth_text):
        _expect_shape(text[i], sd[text[i]], (nt, dt), source)
        out[f"text_prompts.{i - 1}"] = sd[text[i]]
    vision = {int(m.group(1)): k for k in sd if (m := _VISION_DEEP.match(k))}
    if "image_encoder.VPT" not in sd:
        if vision:
            raise CheckpointError(f"{source}: deep vision prompts without image_encoder.VPT; not a reference checkpoint")
        return out, dict(n_ctx_text=nt, n_ctx_vision=0, depth_text=depth_text, depth_vision=0)
    vpt = sd["image_encoder.VPT"]
    nv, dv = vpt.shape
    depth_vision = 1 + _contiguous(list(vision), 1, "deep vision prompts", source)
    out["vision_ctx"] = vpt
    for i in range(1, depth_vision):
        _expect_shape(vision[i], sd[vision[i]], (nv, dv), source)
        out[f"vision_prompts.{i - 1}"] = sd[vision[i]]
    return out, dict(n_ctx_text=nt, n_ctx_vision=nv, depth_text=depth_text, depth_vision=depth_vision)


def _learned_maple(sd, source):
    ctx = sd["prompt_learner.ctx"]
    n, dt = ctx.shape
    for key in ("prompt_learner.proj.weight", "prompt_learner.proj.bias"):
        if key not in sd:
            raise CheckpointError(f"{source}: MaPLe checkpoint without {key}")
    dv = sd["prompt_learner.proj.weight"].shape[0]
    _expect_shape("prompt_learner.proj.weight", sd["prompt_learner.proj.weight"], (dv, dt), source)
    _expect_shape("prompt_learner.proj.bias", sd["prompt_learner.proj.bias"], (dv,), source)
    out = {"ctx": ctx, "proj.weight": sd["prompt_learner.proj.weight"], "proj.bias": sd["prompt_learner.proj.bias"]}
    texts = sorted(int(m.group(2)) for k in sd if (m := _INDEXED.match(k)) and m.group(1) == "compound_prompts_text")
    deep = _contiguous(texts, 0, "compound text prompts", source)
    for i in range(deep):
        want = {f"prompt_learner.compound_prompts_text.{i}": (n, dt),
                f"prompt_learner.compound_prompt_projections.{i}.weight": (dv, dt),
                f"prompt_learner.compound_prompt_projections.{i}.bias": (dv,)}
        for key, shape in want.items():
            if key not in sd:
                raise CheckpointError(f"{source}: MaPLe checkpoint without {key} (it has {deep} compound prompts)")
            _expect_shape(key, sd[key], shape, source)
            out[key.removeprefix("prompt_learner.")] = sd[key]
    extra = [k for k in sd if (m := _INDEXED.match(k)) and int(m.group(2)) >= deep]
    if extra:
        raise CheckpointError(f"{source}: {extra[:3]} beyond its {deep} compound text prompts; not a reference checkpoint")
    return out, dict(n_ctx_text=n, n_ctx_vision=n, depth_text=deep + 1, depth_vision=deep + 1)


def _frozen_name(key: str) -> str | None:
    """The open_clip name of a frozen tensor of the reference's CustomCLIP (None: not frozen CLIP)."""
    if key.endswith("VPT") or key.endswith("VPT_shallow"):
        return None
    if key.startswith("image_encoder."):
        return "visual." + key.removeprefix("image_encoder.")
    if key.startswith("text_encoder.transformer.") or key.startswith("text_encoder.ln_final."):
        return key.removeprefix("text_encoder.")
    return _TEXT_FROZEN.get(key)


def from_official(trainer: str, sd: dict[str, torch.Tensor], fallback: DeepPromptArch,
                  clip: nn.Module | None = None, source: str = "checkpoint") -> OfficialCheckpoint:
    """Our state dict, architecture and the file's frozen CLIP from a reference ``state_dict``.

    ``fallback`` supplies what the file does not record (CTX_INIT, backbone name); ``clip``, if
    given, is the backbone the file must fit (its widths)."""
    if trainer not in TRAINERS:
        raise CheckpointError(f"trainer {trainer!r} has no reference checkpoint format here ({', '.join(TRAINERS)} do)")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    found = detect_trainer(sd)
    if found is None:
        raise CheckpointError(f"{source} holds no prompt_learner.ctx: it is not an IVLP, MaPLe or PromptSRC "
                              f"checkpoint of the reference code")
    if found != trainer:
        raise CheckpointError(f"{source} holds a {found} model but --trainer is {trainer}")
    learned, shape_arch = (_learned_maple if trainer == "MaPLe" else _learned_ivlp)(sd, source)
    arch = DeepPromptArch(trainer=trainer, backbone=fallback.backbone, ctx_init=fallback.ctx_init, **shape_arch)
    frozen, ignored, unknown = {}, {}, []
    learned_keys = {"prompt_learner.ctx"} | {k for k in sd if k.endswith("VPT") or k.endswith("VPT_shallow")
                                             or k.startswith("prompt_learner.proj.") or _INDEXED.match(k)}
    for key, value in sd.items():
        if key in learned_keys:
            continue
        if key in _BUFFERS:
            ignored[key] = "rebuilt from the evaluated class names (the reference deletes it on load)"
        elif key.startswith(_ZS_TOWER):
            ignored[_ZS_TOWER + "*"] = "PromptSRC's zero-shot image tower: used by its training losses, not by the logits"
        elif (name := _frozen_name(key)) is not None:
            frozen[name] = value.float()
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{source}: unexpected keys {unknown[:4]}{' ...' if len(unknown) > 4 else ''} for a "
                              f"reference {trainer} checkpoint")
    if clip is not None:
        _check_widths(arch, learned, clip, source)
        # PromptSRC is scored on the file's frozen tensors (clip_with_frozen), the others on the backbone's
        check_frozen_match(frozen, clip.state_dict(), source=source, backbone_name=arch.backbone,
                           values=trainer != "PromptSRC")
    return OfficialCheckpoint({k: v.float() for k, v in learned.items()}, arch, frozen,
                              frozen_required=trainer == "PromptSRC", ignored=ignored)


def _check_widths(arch: DeepPromptArch, learned: dict, clip: nn.Module, source: str) -> None:
    widths = {"text": (learned["ctx"].shape[1], towers.text_width(clip))}
    if "vision_ctx" in learned:
        widths["vision"] = (learned["vision_ctx"].shape[1], towers.visual_width(clip))
    elif "proj.weight" in learned:
        widths["vision"] = (learned["proj.weight"].shape[0], towers.visual_width(clip))
    for tower, (found, want) in widths.items():
        if found != want:
            raise CheckpointError(f"{source}: its {tower} width is {found} but backbone {arch.backbone} has {want}; "
                                  f"set MODEL.BACKBONE.NAME to the backbone it was trained with")


def clip_with_frozen(clip: nn.Module, frozen: dict[str, torch.Tensor], source: str = "checkpoint") -> nn.Module:
    """A frozen copy of ``clip`` holding the checkpoint's frozen tensors (the token embedding, which
    the reference's CustomCLIP does not hold, stays ``clip``'s)."""
    expected = {k: v for k, v in clip.state_dict().items() if k != "token_embedding.weight"}
    missing = sorted(set(expected) - set(frozen))
    unexpected = sorted(set(frozen) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{source}: its frozen CLIP does not fit the backbone (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); set MODEL.BACKBONE.NAME to the backbone it was trained with")
    check_frozen_match(frozen, expected, source=source, backbone_name="in use", values=False)
    out = copy.deepcopy(clip)
    with torch.no_grad():
        state = out.state_dict()
        for k, v in frozen.items():
            state[k].copy_(v)
    return out
