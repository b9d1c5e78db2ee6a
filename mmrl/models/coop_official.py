"""CoOp, CoCoOp and KgCoOp as the official trainers build and save them: their initial
tensors, drawn where their ``build_model`` draws them, and their Dassl checkpoints
(``prompt_learner/model.pth.tar-N``, spec baselines.md §1.6) mapped to our modules.

Draw order of the official ``build_model`` on the global torch generator (CPU):
1. ``load_clip_to_cpu``: one OpenAI-format CLIP construction (every initialiser runs before
   the pre-trained weights overwrite the result);
2. the prompt learner: ``ctx`` drawn N(0, 0.02^2) in the CLIP's dtype (fp16 when PREC is
   fp16), unless an init phrase gives it (no draw; the embedding rounded to that dtype);
3. CoCoOp: the meta-net's two Linears (weight, then bias, each; torch's default init in
   fp32, then rounded to fp16 when PREC is fp16);
   KgCoOp: ``bias_vectors`` (1 x 512, N(0, 0.02^2) in the CLIP's dtype), a second CLIP
   construction, an unused Linear(512, 512) and the unused adapter's two bias-free
   Linears (512 -> 128 -> 512). None of these is kept.
Nothing else draws before the first data iterator (as for MMRL, rng.md §2.4(e)).
"""
from __future__ import annotations

import torch
from torch import nn

from mmrl.errors import CheckpointError
from mmrl.models import towers
from mmrl.models.coop import PromptArch, meta_net, phrase_embedding
from mmrl.models.deep_prompts_init import clip_build_draws
from mmrl.models.frozen_match import check_frozen_match
from mmrl.models.init_order import ClipDims, _Discard

KGCOOP_WIDTH = 512       # KgCoOp's bias vector, meta-net and adapter widths are literals in its code
KGCOOP_ADAPTER_REDUCTION = 4


def official_dtype(prec: str) -> torch.dtype:
    """The dtype of the official model's CLIP and learned tensors: fp16 unless PREC casts CLIP to fp32."""
    return torch.float16 if prec == "fp16" else torch.float32


def official_initial_state(spec: PromptArch, clip: nn.Module, num_classes: int, prec: str) -> dict[str, torch.Tensor]:
    """Make, on the global torch generator and in the official order, every draw of the official
    ``build_model`` for ``spec``; return the kept initial tensors by our state-dict names (fp32
    holding the official dtype's values). ``clip``: the frozen backbone (its token embedding
    gives a phrase's context, its dimensions the draws); ``prec``: TRAINER.<block>.PREC."""
    dtype = official_dtype(prec)
    dims = ClipDims.of(clip)
    scratch = _Discard()
    clip_build_draws(dims, scratch)
    if spec.ctx_init:
        ctx = phrase_embedding(clip, spec.ctx_init, spec.n_ctx).to(dtype)
    else:
        width = towers.text_width(clip)
        shape = (num_classes, spec.n_ctx, width) if spec.csc else (spec.n_ctx, width)
        with torch.no_grad():
            ctx = torch.empty(shape, dtype=dtype).normal_(std=0.02)
    out = {"prompt_learner.ctx": ctx.float()}
    if spec.trainer == "CoCoOp":
        net = meta_net(dims.embed_dim, dims.text_width)
        for name, t in net.state_dict().items():
            out[f"prompt_learner.meta_net.{name}"] = t.to(dtype).float()
    elif spec.trainer == "KgCoOp":
        with torch.no_grad():
            torch.empty(1, KGCOOP_WIDTH, dtype=dtype).normal_(std=0.02)     # bias_vectors
        clip_build_draws(dims, scratch)                                   # the hand-crafted features' CLIP
        scratch.uniform(KGCOOP_WIDTH * KGCOOP_WIDTH)                        # meta_net.linear1 weight, bias
        scratch.uniform(KGCOOP_WIDTH)
        hidden = KGCOOP_WIDTH // KGCOOP_ADAPTER_REDUCTION
        scratch.uniform(hidden * KGCOOP_WIDTH)                              # adapter, two bias-free Linears
        scratch.uniform(KGCOOP_WIDTH * hidden)
    return out


# -- official checkpoints ----------------------------------------------------------------------

REBUILT = ("token_prefix", "token_suffix", "token_midfix")  # fixed embeddings of the run's own class names
LEARNED = {
    "CoOp": ("ctx",),
    "KgCoOp": ("ctx",),
    "CoCoOp": ("ctx", "meta_net.linear1.weight", "meta_net.linear1.bias", "meta_net.linear2.weight",
               "meta_net.linear2.bias"),
}
UNUSED = {"KgCoOp": ("bias_vectors", "meta_net.linear1.weight", "meta_net.linear1.bias")}  # built, never used


def _which_method(keys: set[str]) -> str:
    if "meta_net.linear2.weight" in keys:
        return "CoCoOp"
    if "bias_vectors" in keys:
        return "KgCoOp"
    if keys <= {"ctx", *REBUILT}:
        return "CoOp"
    return "another method"


def _check_start_embedding(prefix: torch.Tensor, clip: nn.Module, backbone: str, source: str) -> None:
    """The file holds nothing of its frozen CLIP but the fixed prompt embeddings: their first row is
    that CLIP's start-of-text embedding, which tells another backbone or pretraining of the same
    width (the official evaluation rebuilds them from the CLIP in use, as the harness does)."""
    from open_clip.tokenizer import _tokenizer
    width = towers.text_width(clip)
    if prefix.dim() != 3 or prefix.shape[1:] != (1, width) or prefix.shape[0] == 0:
        raise CheckpointError(f"{source}: token_prefix has shape {tuple(prefix.shape)}; backbone {backbone} needs "
                              f"(classes, 1, {width}). Use the backbone it was trained with.")
    name = "token_embedding.weight[<start_of_text>]"
    check_frozen_match({name: prefix[0, 0]}, {name: clip.token_embedding.weight[_tokenizer.sot_token_id]},
                       source=source, backbone_name=backbone)


def from_official(sd: dict[str, torch.Tensor], current: PromptArch, clip: nn.Module, num_classes: int,
                  source: str = "checkpoint") -> tuple[PromptArch, dict[str, torch.Tensor]]:
    """(our arch, our state dict) from the ``state_dict`` of an official prompt-learner checkpoint.

    Shapes come from the tensors: n_ctx from ctx's rows, class-specific context from a 3-D
    ctx. The init phrase and class-token position are not in the file; they come from
    ``current`` (the run's config), the phrase only if its word count matches n_ctx (otherwise
    the placeholder "X .. X" prompt, which official training with that n_ctx used).
    The fixed prefix/suffix embeddings are dropped (rebuilt from the current class names),
    and so are KgCoOp's unused tensors."""
    trainer = current.trainer
    sd = {k.removeprefix("module.").removeprefix("prompt_learner."): v for k, v in sd.items()}
    keys = set(sd)
    wanted = LEARNED[trainer]
    missing = [k for k in wanted if k not in keys]
    unexpected = sorted(keys - set(wanted) - set(REBUILT) - set(UNUSED.get(trainer, ())))
    if missing or unexpected:
        raise CheckpointError(f"{source} is not a {trainer} prompt learner (missing {missing}, unexpected "
                              f"{unexpected[:4]}); it looks like {_which_method(keys)}'s. Pass the "
                              f"{trainer} run's model directory, or the --trainer it was trained with.")
    ctx = sd["ctx"]
    width = towers.text_width(clip)
    if ctx.dim() not in (2, 3) or ctx.shape[-1] != width:
        raise CheckpointError(f"{source}: ctx has shape {tuple(ctx.shape)}; backbone {current.backbone} needs "
                              f"(n_ctx, {width}) or (classes, n_ctx, {width}). Use the backbone it was trained with.")
    if "token_prefix" in sd:
        _check_start_embedding(sd["token_prefix"], clip, current.backbone, source)
    csc = ctx.dim() == 3
    if csc and trainer == "CoCoOp":
        raise CheckpointError(f"{source}: CoCoOp's ctx is (n_ctx, {width}), not {tuple(ctx.shape)}")
    if csc and ctx.shape[0] != num_classes:
        raise CheckpointError(f"{source} holds a class-specific context for {ctx.shape[0]} classes, but this run "
                              f"has {num_classes}: such a model only scores the class list it was trained on.")
    n_ctx = int(ctx.shape[-2])
    phrase = current.ctx_init if current.ctx_init and not csc and len(current.ctx_init.split(" ")) == n_ctx else ""
    if trainer == "CoCoOp":
        e, d = towers.embed_dim(clip), width
        want = {"meta_net.linear1.weight": (e // 16, e), "meta_net.linear1.bias": (e // 16,),
                "meta_net.linear2.weight": (d, e // 16), "meta_net.linear2.bias": (d,)}
        for k, shape in want.items():
            if tuple(sd[k].shape) != shape:
                raise CheckpointError(f"{source}: {k} has shape {tuple(sd[k].shape)}, backbone {current.backbone} "
                                      f"needs {shape}. Use the backbone it was trained with.")
    arch = PromptArch(trainer=trainer, backbone=current.backbone, n_ctx=n_ctx, ctx_init=phrase, csc=csc,
                      class_token_position=current.class_token_position)
    return arch, {f"prompt_learner.{k}": sd[k].float() for k in wanted}
