"""Load the frozen CLIP backbone named by MODEL.BACKBONE.NAME.

Names: the authors' ``ViT-B/16`` (also ``ViT-B/32``, ``ViT-L/14``) = open_clip architectures
with OpenAI weights and QuickGELU; any open_clip ``ARCH:PRETRAINED_TAG``
(e.g. ``ViT-B-16:laion2b_s34b_b88k``); ``tiny-test`` (random, for tests) and ``demo-tiny``
(the shipped demo weights); ``random:ARCH`` (an open_clip architecture, random weights, for
benchmarks without a download).

OpenAI weights come from, in order: MODEL.BACKBONE.WEIGHTS (taken as given, SHA256
recorded); ``<cache>/<file>`` verified against the SHA256 in OpenAI's URL; a download with
the same verification.  Cache: MODEL.BACKBONE.CACHE_DIR, else $MMRL_CLIP_CACHE, else
``~/.cache/clip`` (where CoOp and the authors' code keep ``ViT-B-16.pt``).
"""
from __future__ import annotations

import contextlib
import difflib
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import torch
from torch import nn

from mmrl.clip.archs import TINY_ARCHS, build_tiny_clip
from mmrl.errors import MMRLError, WeightsError
from mmrl.utils.download import download_url, sha256_file
from mmrl.utils.rng import isolated_rng
from mmrl.utils.torchfile import load_torch_file

log = logging.getLogger("mmrl.clip")

OPENAI_NAMES = {"ViT-B/32": "ViT-B-32", "ViT-B/16": "ViT-B-16", "ViT-L/14": "ViT-L-14",
                "ViT-L/14@336px": "ViT-L-14-336"}


@dataclass
class BackboneInfo:
    name: str
    source: str                 # "openai-file", "explicit-file", "open_clip", "random", "demo"
    path: str | None = None
    sha256: str | None = None
    extra: dict = field(default_factory=dict)


def clip_cache_dir(cfg_value: str = "") -> Path:
    if cfg_value:
        return Path(cfg_value).expanduser()
    env = os.environ.get("MMRL_CLIP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clip"


def openai_url(name: str) -> tuple[str, str, str]:
    """(url, file name, sha256) of an OpenAI CLIP release; the hash is part of the URL."""
    from open_clip.pretrained import get_pretrained_url
    if name not in OPENAI_NAMES:
        raise WeightsError(f"{name!r} is not an OpenAI CLIP release; use one of {', '.join(OPENAI_NAMES)}.")
    arch = OPENAI_NAMES[name]
    url = get_pretrained_url(arch, "openai")
    if not url:
        raise WeightsError(f"open_clip knows no OpenAI URL for {name} ({arch})")
    parts = url.rstrip("/").split("/")
    return url, parts[-1], parts[-2]


def _read_openai_state_dict(path: Path, explicit: bool = False) -> dict[str, torch.Tensor]:
    """OpenAI's TorchScript archive or a plain state dict with OpenAI key names."""
    fix = ("Set MODEL.BACKBONE.WEIGHTS to an OpenAI CLIP .pt file, or unset it to use the verified download."
           if explicit else
           "Delete it and run again to re-download, or fetch it by hand (`mmrl weights where` prints the URL).")
    if zipfile.is_zipfile(path):
        try:
            # TorchScript is loaded by torch's own deserializer (no arbitrary pickle).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                return torch.jit.load(str(path), map_location="cpu").state_dict()
        except RuntimeError:
            pass
    sd = load_torch_file(path, "CLIP weights file", fix, error=WeightsError)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = {k.removeprefix("module."): v for k, v in sd["state_dict"].items()}
    if not isinstance(sd, dict) or "visual.proj" not in sd:
        raise WeightsError(f"{path} is not an OpenAI CLIP ViT checkpoint (no 'visual.proj' key); "
                           f"pass an OpenAI .pt file or a state dict with OpenAI key names.")
    return sd


@contextlib.contextmanager
def _weight_init_skipped():
    """torch.nn.init's initialisers do nothing inside: a module built here and then loaded with a
    strict state dict ends with the file's values only, without drawing the random values the load
    overwrites (most of a second for ViT-B/16 on a CPU core). Buffers outside the state dict (the
    text tower's causal mask) are computed by the constructors, not by these initialisers."""
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_") and callable(getattr(nn.init, n))]
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for n in names:
            setattr(nn.init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(nn.init, n, fn)


def _build_from_openai_sd(sd: dict[str, torch.Tensor], path: Path) -> nn.Module:
    import open_clip.model
    # open_clip builds the modules, casts them to fp16 and loads sd; the modules are kept in fp32
    # (the load casts fp16 values up exactly) and their random initial values are never drawn.
    keep_fp32 = (mock.patch.object(open_clip.model, "convert_weights_to_fp16", lambda model: model)
                 if hasattr(open_clip.model, "convert_weights_to_fp16") else contextlib.nullcontext())
    try:
        with _weight_init_skipped(), keep_fp32:  # every parameter comes from sd (the loads are strict)
            model = open_clip.model.build_model_from_openai_state_dict(dict(sd), quick_gelu=True, cast_dtype=None)
        model = model.float()
        # whatever dtype open_clip left, the fp32 modules hold the file's values exactly
        model.load_state_dict({k: v for k, v in sd.items()
                               if k not in ("input_resolution", "context_length", "vocab_size")})
    except Exception as e:
        raise WeightsError(f"{path}: could not build CLIP from its state dict ({e})") from None
    return model


def openai_architecture(name: str) -> dict[str, int]:
    """The shapes of the OpenAI release ``name`` (open_clip's config of it)."""
    import open_clip
    c = open_clip.get_model_config(OPENAI_NAMES[name])
    v, t = c["vision_cfg"], c["text_cfg"]
    return {"image size": v["image_size"], "patch size": v["patch_size"], "vision width": v["width"],
            "vision layers": v["layers"], "text width": t["width"], "text layers": t["layers"],
            "embedding": c["embed_dim"]}


def architecture_of(model: nn.Module) -> dict[str, int]:
    """The same shapes, read from a built CLIP."""
    v = model.visual
    size = v.image_size
    return {"image size": size[0] if isinstance(size, (tuple, list)) else size, "patch size": v.conv1.kernel_size[0],
            "vision width": v.conv1.out_channels, "vision layers": len(v.transformer.resblocks),
            "text width": model.transformer.width, "text layers": len(model.transformer.resblocks),
            "embedding": model.text_projection.shape[1]}


def _check_file_is(name: str, model: nn.Module, path: Path) -> None:
    """A weights file chosen by the user holds the release MODEL.BACKBONE.NAME names: the model is
    built from the file's shapes, so a ViT-B/32 file would otherwise run (and be recorded) as ViT-B/16."""
    want, got = openai_architecture(name), architecture_of(model)
    diff = [f"{k} {got[k]} (not {want[k]})" for k in want if got[k] != want[k]]
    if diff:
        raise WeightsError(f"MODEL.BACKBONE.WEIGHTS {path} is not a {name} CLIP: its {', '.join(diff)}. Pass the "
                           f"{name} file, or set MODEL.BACKBONE.NAME to the release the file holds.")


def _resolve_openai_file(name: str, cache_dir: Path, download: bool = True) -> tuple[Path, str]:
    url, fname, sha = openai_url(name)
    path = cache_dir / fname
    if path.is_file():
        actual = sha256_file(path)
        if actual != sha:
            raise WeightsError(f"{path}: SHA256 {actual} does not match {sha} from {url}. The file is "
                               f"corrupt or truncated: delete it and run again, or download it by hand from {url}.")
        return path, sha
    if not download:
        raise WeightsError(f"CLIP weights for {name} not found at {path}. Download {url} to that path.")
    try:
        download_url(url, path, sha256=sha)
    except MMRLError as e:
        raise WeightsError(f"CLIP weights for {name} are not at {path} and downloading {url} failed ({e}). "
                           f"If this machine is offline, fetch that URL elsewhere and place the file at {path} "
                           f"(or set MODEL.BACKBONE.WEIGHTS).") from None
    return path, sha


def check_backbone_options(name: str, weights: str) -> None:
    """MODEL.BACKBONE.NAME is one this module builds, and MODEL.BACKBONE.WEIGHTS an OpenAI CLIP file,
    refused for a backbone that would ignore it: checked before a run starts."""
    if not (name in OPENAI_NAMES or name in TINY_ARCHS or ":" in name):
        known = ", ".join(list(OPENAI_NAMES) + list(TINY_ARCHS))
        raise WeightsError(f"MODEL.BACKBONE.NAME {name!r} is not known. Use one of {known}, an open_clip "
                           f"'ARCH:TAG' (e.g. ViT-B-16:laion2b_s34b_b88k) or 'random:ARCH'.")
    if ":" in name:
        import open_clip
        arch = name.split(":", 1)[1] if name.startswith("random:") else name.split(":", 1)[0]
        if arch not in open_clip.list_models():
            close = difflib.get_close_matches(arch, open_clip.list_models(), n=3)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise WeightsError(f"MODEL.BACKBONE.NAME {name!r}: open_clip has no architecture {arch!r}{hint}; "
                               f"`python -c 'import open_clip; print(open_clip.list_models())'` lists them.")
    if weights and name not in OPENAI_NAMES:
        raise WeightsError(f"MODEL.BACKBONE.WEIGHTS ({weights}) is set, but backbone {name!r} does not take a "
                           f"weights file (only {', '.join(OPENAI_NAMES)} do; tiny, demo, random: and open_clip "
                           f"ARCH:TAG backbones bring their own). Unset MODEL.BACKBONE.WEIGHTS or change "
                           f"MODEL.BACKBONE.NAME.")
    if weights and not Path(weights).expanduser().is_file():
        what = "is a folder" if Path(weights).expanduser().exists() else "does not exist"
        raise WeightsError(f"MODEL.BACKBONE.WEIGHTS points to {weights}, which {what}. Pass the path of an "
                           f"OpenAI CLIP {name} .pt file, or unset it to use the verified download.")


def load_backbone(name: str, weights: str = "", cache_dir: str = "") -> tuple[nn.Module, BackboneInfo]:
    """A fresh fp32 CLIP in eval mode with every parameter frozen.

    Construction leaves the caller's random streams as they were (module initialisers draw
    from a fork), so a run's stream does not depend on whether the backbone was cached.
    """
    check_backbone_options(name, weights)
    with isolated_rng():
        return _load_backbone(name, weights, cache_dir)


def _load_backbone(name: str, weights: str, cache_dir: str) -> tuple[nn.Module, BackboneInfo]:
    if name in TINY_ARCHS and name != "demo-tiny":
        model, info = build_tiny_clip(name), BackboneInfo(name, "random")
    elif name == "demo-tiny":
        from mmrl.clip.demo_weights import load_demo_clip, demo_weights_path
        model = load_demo_clip()
        p = demo_weights_path()
        info = BackboneInfo(name, "demo", str(p), sha256_file(p))
    elif name.startswith("random:"):
        import open_clip
        model = open_clip.create_model(name.split(":", 1)[1], pretrained=None, force_quick_gelu=True)
        info = BackboneInfo(name, "random")
    elif name in OPENAI_NAMES:
        if weights:
            path = Path(weights).expanduser()
            sha = sha256_file(path)
            info = BackboneInfo(name, "explicit-file", str(path), sha)
        else:
            path, sha = _resolve_openai_file(name, clip_cache_dir(cache_dir))
            info = BackboneInfo(name, "openai-file", str(path), sha)
        model = _build_from_openai_sd(_read_openai_state_dict(path, explicit=bool(weights)), path)
        if weights:  # a downloaded file is the release its checksum names
            _check_file_is(name, model, path)
    else:  # an open_clip ARCH:TAG (check_backbone_options refused any other name)
        import open_clip
        arch, tag = name.split(":", 1)
        try:
            model = open_clip.create_model(arch, pretrained=tag, cache_dir=cache_dir or None)
        except Exception as e:
            raise WeightsError(f"open_clip could not load {arch} with pretrained tag {tag!r}: {e}") from None
        info = BackboneInfo(name, "open_clip", extra={"arch": arch, "tag": tag})
    if not hasattr(model, "visual") or not hasattr(model.visual, "transformer"):
        raise WeightsError(f"backbone {name!r} is not a CLIP ViT with the usual block structure")
    model = model.float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, info


_SHARED: dict[tuple, tuple[nn.Module, BackboneInfo]] = {}


def shared_backbone(name: str, weights: str = "", cache_dir: str = "") -> tuple[nn.Module, BackboneInfo]:
    """One frozen backbone per process for a given (name, weights): every user shares it."""
    key = (name, weights, cache_dir)
    if key not in _SHARED:
        _SHARED[key] = load_backbone(name, weights, cache_dir)
    return _SHARED[key]


def image_size(clip: nn.Module) -> int:
    size = clip.visual.image_size
    return size[0] if isinstance(size, (tuple, list)) else int(size)
