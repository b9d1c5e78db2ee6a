"""MMRL and MMRL++ (docs/method.md), computed with its exact shortcuts.

Shortcuts (each changes nothing beyond floating-point reassociation):
- one frozen CLIP serves both the zero-shot branch and the MMRL branch; visual layers
  1..J-1 run once per batch, without autograd (nothing trainable lies below J);
- text layers 1..J-1 run once per model and are cached;
- text is causal, so each prompt group is cut after its longest end-of-text position;
- text positions 0..K (BOT and the K rep tokens) see only each other, and BOT's state is the
  same for every class: this head runs once for all classes, and each class runs only its own
  tokens 1..eot, attending to the head's keys/values;
- after the last layer only the feature positions are read (text: eot; image: CLS, and the K
  rep tokens for MMRL), so the last block computes queries, attention and MLP for those only.
The straightforward computation lives in ``mmrl.models.reference`` for tests and benches.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmrl.errors import ConfigError
from mmrl.models import towers
from mmrl.models.arith import ActivationCache
from mmrl.models.prompts import GroupPlan, Prompts
from mmrl.models.representation import RepProjection, RepresentationLearner

LOGIT_SCALE = 100.0
TEXT_GROUP_SIZE = 256  # classes per text chunk: bounds activation memory for 1000 classes
TEXT_PAD_BUDGET = 64   # padded tokens a text length group may carry (fewer, larger passes)


@dataclass
class ArchSpec:
    """What fixes the shapes of the trainable tensors (stored in every checkpoint)."""
    trainer: str = "MMRL"
    backbone: str = "ViT-B/16"
    rep_layers: list[int] = field(default_factory=lambda: list(range(6, 13)))
    n_rep_tokens: int = 5
    rep_dim: int = 512
    proj_lora_dim: int = 64
    res_lora_dim: int = 4

    @classmethod
    def from_cfg(cls, cfg) -> "ArchSpec":
        name = cfg.TRAINER.NAME
        blk = cfg.TRAINER[name]
        extra = {}
        if name == "MMRLpp":
            extra = dict(proj_lora_dim=int(blk.PROJ_LORA_DIM), res_lora_dim=int(blk.RES_LORA_DIM))
        return cls(trainer=name, backbone=cfg.MODEL.BACKBONE.NAME, rep_layers=[int(x) for x in blk.REP_LAYERS],
                   n_rep_tokens=int(blk.N_REP_TOKENS), rep_dim=int(blk.REP_DIM), **extra)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ArchSpec":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Behaviour:
    """What the current config (not the checkpoint) decides: mixing weights and loss weight."""
    alpha: float = 0.7
    beta: float = 0.9
    reg_weight: float = 1.0

    @classmethod
    def from_cfg(cls, cfg) -> "Behaviour":
        blk = cfg.TRAINER[cfg.TRAINER.NAME]
        return cls(alpha=float(blk.ALPHA), beta=float(getattr(blk, "BETA", 1.0)), reg_weight=float(blk.REG_WEIGHT))


def select_test_logits(task: str, subsample: str, dataset_name: str) -> str:
    """Which head is scored at test time (docs/method.md#features-logits-and-the-test-head): 'fused' or 'class'."""
    if task == "B2N":
        return "fused" if subsample == "base" else "class"
    if task == "FS":
        return "fused"
    if task == "CD":
        return "fused" if dataset_name == "ImageNet" else "class"
    raise ConfigError(f"TASK {task!r} is not one of B2N, FS, CD")


class MultiModalRepresentationLearner(nn.Module):
    """MMRL / MMRL++ over a shared frozen open_clip CLIP (not registered as a submodule, so
    ``state_dict()`` holds exactly the trainable tensors)."""

    def __init__(self, spec: ArchSpec, clip: nn.Module, prompts: Prompts, behaviour: Behaviour | None = None):
        super().__init__()
        self.spec = spec
        self.behaviour = behaviour or Behaviour()
        object.__setattr__(self, "clip", clip)  # shared, frozen, deliberately unregistered
        n_layers = min(towers.num_layers(clip.visual), towers.num_layers(clip))
        layers = spec.rep_layers
        if not layers or layers[0] < 1 or layers[-1] > n_layers:
            raise ConfigError(f"REP_LAYERS {layers} must be non-empty and within 1..{n_layers} for backbone "
                              f"{spec.backbone} ({n_layers} layers)")
        self.J = layers[0]
        self.n_layers = n_layers
        self.layer_slot = {l: i for i, l in enumerate(layers)}
        self.representation_learner = RepresentationLearner(
            spec.n_rep_tokens, spec.rep_dim, towers.visual_width(clip), towers.text_width(clip), len(layers),
            variant=spec.trainer, res_rank=spec.res_lora_dim)
        self.image_encoder = RepProjection(towers.visual_width(clip), towers.embed_dim(clip),
                                           variant=spec.trainer, lora_rank=spec.proj_lora_dim)
        self.prompts = prompts
        blocks = [*clip.transformer.resblocks, *clip.visual.transformer.resblocks]
        self._blockwise = all(towers.block_supported(b) for b in blocks)  # else: whole blocks, all queries
        # "prefix": text states after layer J-1 (constant); "u": frozen zero-shot text features;
        # "w": text features while in eval mode (parameters fixed)
        self._cache = ActivationCache()
        self._plans: dict[tuple, GroupPlan] = {}

    # -- bookkeeping ------------------------------------------------------------------------
    def train(self, mode: bool = True):
        self._cache.drop("w")  # parameters may change: eval text features must be recomputed
        return super().train(mode)

    def set_prompts(self, prompts: Prompts) -> None:
        self.prompts = prompts
        self._cache.drop()
        self._plans.clear()

    def _plan(self, padded: bool) -> GroupPlan:
        """The class groups of the text passes, their indices on this model's device."""
        key = (padded, str(self.device))
        if key not in self._plans:
            groups = (self.prompts.padded_groups(TEXT_GROUP_SIZE, TEXT_PAD_BUDGET) if padded
                      else self.prompts.groups(TEXT_GROUP_SIZE))
            self._plans[key] = self.prompts.plan(groups, self.device)
        return self._plans[key]

    @property
    def device(self) -> torch.device:
        return self.representation_learner.compound_rep_tokens.device

    def _compose(self, x: torch.Tensor, tokens: torch.Tensor, layer: int) -> torch.Tensor:
        """Tokens at positions 1..K before a REP_LAYERS layer after J: replaced (MMRL) or
        composed with beta (MMRL++)."""
        k = self.spec.n_rep_tokens
        tok = tokens.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
        if self.spec.trainer == "MMRLpp":
            beta = self.behaviour.beta
            tok = beta * tok + (1.0 - beta) * x[:, 1:1 + k]
        return torch.cat([x[:, :1], tok, x[:, 1 + k:]], dim=1)

    def _run_from_J(self, transformer: nn.Module, x: torch.Tensor, token_sets: list[torch.Tensor],
                    attn_mask: torch.Tensor | None, n_queries_last: int | None = None) -> torch.Tensor:
        """Insert T^J after position 0, then run layers J..L with replacement/composition.
        ``n_queries_last``: the last layer outputs only positions 0..n-1 (unmasked towers)."""
        k = self.spec.n_rep_tokens
        first = token_sets[0].to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)
        x = torch.cat([x[:, :1], first, x[:, 1:]], dim=1)
        for layer in range(self.J, self.n_layers + 1):
            slot = self.layer_slot.get(layer)
            if slot is not None and layer != self.J:
                x = self._compose(x, token_sets[slot], layer)
            if layer == self.n_layers and n_queries_last is not None and self._blockwise and attn_mask is None:
                x = towers.block_first_queries(transformer.resblocks[layer - 1], x, n_queries_last)
            else:
                x = towers.run_layer(transformer, x, layer, attn_mask)
        assert x.shape[1] >= 1 + k
        return x

    # -- text -------------------------------------------------------------------------------
    def _prefix_states(self) -> torch.Tensor:
        """Text states after layer J-1 for every class, cut after the longest prompt."""
        @torch.no_grad()
        def compute():
            ids = self.prompts.ids[:, : self.prompts.max_len].to(self.device)
            x = towers.text_embed(self.clip, ids)
            mask = towers.causal_mask(x.shape[1], x.device, x.dtype)
            return towers.run_layers(self.clip.transformer, x, 1, self.J - 1, mask)
        return self._cache.get("prefix", self.device, compute)

    def zero_shot_text_features(self) -> torch.Tensor:
        """u_i: the frozen CLIP's normalised text features (computed once)."""
        @torch.no_grad()
        def compute():
            plan = self._plan(padded=False)
            feats = []
            for idx, length, eot in plan.groups:
                x = self._prefix_states()[idx, :length]
                mask = towers.causal_mask(length, x.device, x.dtype)
                x = towers.run_layers(self.clip.transformer, x, self.J, self.n_layers, mask)
                feats.append(towers.text_project(self.clip, x[torch.arange(len(idx), device=x.device), eot]))
            return F.normalize(plan.scatter(feats).float(), dim=-1)
        # fp32 whatever autocast is in force: the reference computes u once, at build time
        with torch.autocast(self.device.type, enabled=False):
            return self._cache.get("u", self.device, compute)

    def _text_head_keys_values(self, bot: torch.Tensor, t_tokens: list[torch.Tensor]):
        """Run the class-independent head [BOT, T^J] through layers J..L once; per layer the
        (keys, values) of its input, which every class's tokens attend to."""
        blocks = self.clip.transformer.resblocks
        head = torch.cat([bot, t_tokens[0].to(bot.dtype).unsqueeze(0)], dim=1)   # (1, 1+K, D)
        mask = towers.causal_mask(head.shape[1], head.device, head.dtype)
        kvs = []
        for layer in range(self.J, self.n_layers + 1):
            slot = self.layer_slot.get(layer)
            if slot is not None and layer != self.J:
                head = self._compose(head, t_tokens[slot], layer)
            blk = blocks[layer - 1]
            normed = blk.ln_1(head)
            kvs.append(towers.project_kv(blk, normed))
            if layer < self.n_layers:  # the head's output after the last layer is never read
                head = towers.block_finish(blk, head, towers.project_q(blk, normed), *kvs[-1], mask)
        return kvs

    def text_features(self, t_tokens: list[torch.Tensor]) -> torch.Tensor:
        """w_i for every class (normalised), with the representation tokens in the text tower."""
        if not self._blockwise:
            return self._text_features_whole_blocks(t_tokens)
        blocks = self.clip.transformer.resblocks
        prefix = self._prefix_states()
        n_head = 1 + self.spec.n_rep_tokens
        kvs = self._text_head_keys_values(prefix[:1, :1], t_tokens)
        plan = self._plan(padded=True)
        feats = []
        for idx, length, eot in plan.groups:
            x = prefix[idx, 1:length]                 # each class's own tokens 1..eot (+ padding)
            n, t, _ = x.shape
            eot = eot - 1  # eot's index in x
            rows = torch.arange(n, device=x.device)
            # token i sees the whole head and tokens 0..i
            mask = torch.full((t, n_head + t), float("-inf"), device=x.device, dtype=x.dtype).triu_(n_head + 1)
            for layer in range(self.J, self.n_layers + 1):
                blk = blocks[layer - 1]
                head_k, head_v = kvs[layer - self.J]
                normed = blk.ln_1(x)
                k, v = towers.project_kv(blk, normed)
                k = torch.cat([head_k.expand(n, -1, -1), k], dim=1)
                v = torch.cat([head_v.expand(n, -1, -1), v], dim=1)
                if layer < self.n_layers:
                    x = towers.block_finish(blk, x, towers.project_q(blk, normed), k, v, mask)
                else:  # only each class's eot is read after the last layer
                    q = towers.project_q(blk, normed[rows, eot].unsqueeze(1))
                    x = towers.block_finish(blk, x[rows, eot].unsqueeze(1), q, k, v, mask[eot][:, None, None])
            feats.append(towers.text_project(self.clip, x[:, 0]))
        return F.normalize(plan.scatter(feats), dim=-1)

    def _text_features_whole_blocks(self, t_tokens: list[torch.Tensor]) -> torch.Tensor:
        """text_features for blocks of another structure: every position through whole blocks."""
        k = self.spec.n_rep_tokens
        plan = self._plan(padded=False)
        feats = []
        prefix = self._prefix_states()
        for idx, length, eot in plan.groups:
            x = prefix[idx, :length]
            mask = towers.causal_mask(length + k, x.device, x.dtype)
            x = self._run_from_J(self.clip.transformer, x, t_tokens, mask)
            feats.append(towers.text_project(self.clip, x[torch.arange(len(idx), device=x.device), eot + k]))
        return F.normalize(plan.scatter(feats), dim=-1)

    # -- images -----------------------------------------------------------------------------
    def image_prefix(self, images: torch.Tensor) -> torch.Tensor:
        """Visual states after layer J-1 (frozen, so no autograd graph is kept)."""
        with torch.no_grad():
            x = towers.visual_embed(self.clip.visual, images)
            return towers.run_layers(self.clip.visual.transformer, x, 1, self.J - 1)

    def zero_shot_image_features(self, prefix: torch.Tensor) -> torch.Tensor:
        visual = self.clip.visual
        with torch.no_grad():
            if self._blockwise:  # only CLS is read after the last layer
                x = towers.run_layers(visual.transformer, prefix, self.J, self.n_layers - 1)
                x = towers.block_first_queries(visual.transformer.resblocks[self.n_layers - 1], x, 1)
            else:
                x = towers.run_layers(visual.transformer, prefix, self.J, self.n_layers)
            return F.normalize(towers.visual_project(visual, x[:, 0]), dim=-1)

    def image_features(self, prefix: torch.Tensor, v_tokens: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(f_c, f_r), both normalised."""
        k = self.spec.n_rep_tokens
        visual = self.clip.visual
        x = self._run_from_J(visual.transformer, prefix, v_tokens, None, n_queries_last=1 + k)
        f_c = towers.visual_project(visual, x[:, 0])
        rep = visual.ln_post(x[:, 1:1 + k]).mean(dim=1)
        f_r = rep @ self.image_encoder.matrix(visual.proj).to(rep.dtype)
        return F.normalize(f_c, dim=-1), F.normalize(f_r, dim=-1)

    # -- heads ------------------------------------------------------------------------------
    def fuse(self, logits_c: torch.Tensor, logits_r: torch.Tensor) -> torch.Tensor:
        a = self.behaviour.alpha
        return a * logits_c + (1.0 - a) * logits_r

    def forward_train(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Loss (docs/method.md#loss) and the fused logits of one augmented batch."""
        v_tokens, t_tokens = self.representation_learner()
        prefix = self.image_prefix(images)
        g = self.zero_shot_image_features(prefix)
        f_c, f_r = self.image_features(prefix, v_tokens)
        w = self.text_features(t_tokens)
        u = self.zero_shot_text_features()
        return self.loss_from_features(f_c, f_r, w, g, u, labels)

    def loss_from_features(self, f_c, f_r, w, g, u, labels):
        logits_c = LOGIT_SCALE * f_c @ w.t()
        logits_r = LOGIT_SCALE * f_r @ w.t()
        a, lam = self.behaviour.alpha, self.behaviour.reg_weight
        ce = a * F.cross_entropy(logits_c.float(), labels) + (1 - a) * F.cross_entropy(logits_r.float(), labels)
        reg_img = 1.0 - F.cosine_similarity(f_c.float(), g.float(), dim=-1).mean()
        reg_txt = 1.0 - F.cosine_similarity(w.float(), u.float(), dim=-1).mean()
        loss = ce + lam * reg_img + lam * reg_txt
        fused = self.fuse(logits_c, logits_r)
        return loss, fused, {"ce": ce.detach(), "reg_img": reg_img.detach(), "reg_txt": reg_txt.detach()}

    @torch.no_grad()
    def eval_text_features(self) -> torch.Tensor:
        def compute():
            _, t_tokens = self.representation_learner()
            return self.text_features(t_tokens)
        if self.training:
            return compute()
        return self._cache.get("w", self.device, compute)

    @torch.no_grad()
    def forward_eval(self, images: torch.Tensor, prefix: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """All three logits for a batch; ``prefix`` lets several models share layers < J."""
        v_tokens, _ = self.representation_learner()
        if prefix is None:
            prefix = self.image_prefix(images)
        f_c, f_r = self.image_features(prefix, v_tokens)
        w = self.eval_text_features()
        logits_c = LOGIT_SCALE * f_c @ w.t()
        logits_r = LOGIT_SCALE * f_r @ w.t()
        return {"class": logits_c, "rep": logits_r, "fused": self.fuse(logits_c, logits_r)}


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) with the frozen backbone included in total."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    clip = getattr(model, "clip", None)
    frozen = sum(p.numel() for p in clip.parameters()) if clip is not None else 0
    return trainable, trainable + frozen
