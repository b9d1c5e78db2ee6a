"""CoOp, CoCoOp and KgCoOp (spec: baselines.md §1-§4), computed with exact shortcuts.

All three learn a context of n_ctx token embeddings at the text tower's input; the prompt of
class c is [SOS, ctx, name_c, ".", EOT, pads] (CoOp may put the name in the middle or in
front). CoCoOp adds a per-image bias from a meta-net to every context token; KgCoOp adds a
loss pulling the learned text features towards a hand-crafted prompt's.

Shortcuts (each changes nothing beyond floating-point reassociation):
- the text tower is causal and every learned token sits before EOT, so each class group is
  cut after its longest EOT, and the last layer computes only the EOT rows;
- the image tower is frozen and prompt-free: it runs once per batch without autograd, only
  the CLS row in its last layer;
- CoCoOp's B x C image-conditioned prompts go through the text tower in batched passes
  instead of one pass per image;
- KgCoOp's hand-crafted text features are computed once; in eval mode the text features of
  CoOp and KgCoOp are computed once per set of parameters.
The straightforward computation lives in ``mmrl.models.coop_reference``.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from mmrl.errors import ConfigError
from mmrl.models import towers
from mmrl.models.arith import ActivationCache
from mmrl.models.prompts import GroupPlan, Prompts, prompt_texts, tokenize

TRAINERS = ("CoOp", "CoCoOp", "KgCoOp")
POSITIONS = ("end", "middle", "front")
KGCOOP_PHRASE = "a photo of a"  # KgCoOp replaces any truthy CTX_INIT by this phrase
KGCOOP_TEMPLATE_OVERRIDES = {"DescribableTextures": "a photo of a {}, a type of texture."}
CONTEXT_LENGTH = 77
TEXT_GROUP_SIZE = 256    # classes per text pass: bounds activation memory for 1000 classes
COCOOP_SEQUENCES = 4096  # CoCoOp: image-conditioned prompts per text pass


# -- configuration ---------------------------------------------------------------------------

def block_key(trainer: str) -> str:
    """The config block ``trainer``'s prompt settings are read from: TRAINER.<key>."""
    return "COCOOP" if trainer == "CoCoOp" else "COOP"


def config_blocks(trainer: str) -> dict[str, CN]:
    """TRAINER.<KEY> blocks the official train.py of ``trainer`` defines, with its defaults.

    CoOp and KgCoOp both read TRAINER.COOP, with different CTX_INIT types: a phrase (str)
    for CoOp, a flag (bool) for KgCoOp, whose phrase is fixed. KgCoOp's trainer also reads
    TRAINER.COCOOP.PREC (the dtype of its unused meta-net)."""
    if trainer not in TRAINERS:
        raise ConfigError(f"TRAINER.NAME {trainer!r} is not one of {', '.join(TRAINERS)}")
    cocoop = CN()
    cocoop.N_CTX = 16
    cocoop.CTX_INIT = False if trainer == "KgCoOp" else ""
    cocoop.PREC = "fp16"
    if block_key(trainer) == "COCOOP":
        return {"COCOOP": cocoop}
    coop = CN()
    if trainer == "KgCoOp":
        coop.ALPHA = 1.0  # read by nothing in KgCoOp's trainer; kept so its configs load
    coop.N_CTX = 16
    coop.CSC = False
    coop.CTX_INIT = False if trainer == "KgCoOp" else ""
    if trainer == "KgCoOp":
        coop.W = 1.0
    coop.PREC = "fp16"
    coop.CLASS_TOKEN_POSITION = "end"
    return {"COOP": coop, "COCOOP": cocoop}


def init_phrase(trainer: str, ctx_init: Any) -> str:
    """The phrase whose words initialise the context ('' = random init), as each trainer reads CTX_INIT."""
    if trainer == "KgCoOp":
        return KGCOOP_PHRASE if ctx_init else ""
    if not isinstance(ctx_init, str):
        raise ConfigError(f"TRAINER.{'COCOOP' if trainer == 'CoCoOp' else 'COOP'}.CTX_INIT must be a phrase "
                          f"(e.g. 'a photo of a') or '' for {trainer}; got {ctx_init!r}")
    return ctx_init.replace("_", " ")


def kgcoop_template(dataset_name: str, template: str) -> str:
    """KgCoOp's hand-crafted prompt: the dataset's template, except DTD (baselines.md Appendix B)."""
    return KGCOOP_TEMPLATE_OVERRIDES.get(dataset_name, template)


@dataclass
class PromptArch:
    """What fixes the learned tensors and the prompt layout (stored in every checkpoint)."""
    trainer: str = "CoOp"
    backbone: str = "ViT-B/16"
    n_ctx: int = 16
    ctx_init: str = ""          # init phrase ('' = N(0, 0.02^2) draws); its words are the context slots
    csc: bool = False           # CoOp / KgCoOp: one context per class
    class_token_position: str = "end"

    def __post_init__(self) -> None:
        if self.trainer not in TRAINERS:
            raise ConfigError(f"trainer {self.trainer!r} is not one of {', '.join(TRAINERS)}")
        if self.class_token_position not in POSITIONS:
            raise ConfigError(f"TRAINER.COOP.CLASS_TOKEN_POSITION {self.class_token_position!r} is not one of "
                              f"{', '.join(POSITIONS)}")
        if self.n_ctx < 1:
            raise ConfigError(f"N_CTX must be >= 1; got {self.n_ctx}")
        if self.ctx_init and len(self.ctx_init.split(" ")) != self.n_ctx:
            raise ConfigError(f"init phrase {self.ctx_init!r} has {len(self.ctx_init.split(' '))} words, "
                              f"so n_ctx must be that number, not {self.n_ctx}")
        if self.trainer == "CoCoOp" and (self.csc or self.class_token_position != "end"):
            raise ConfigError("CoCoOp has one generic context and the class name at the end")

    @classmethod
    def from_cfg(cls, cfg) -> "PromptArch":
        """The official trainers' rules: a phrase sets n_ctx to its word count and turns CSC off;
        KgCoOp always puts the name at the end (its forward ignores CLASS_TOKEN_POSITION)."""
        name = cfg.TRAINER.NAME
        blk = getattr(cfg.TRAINER, block_key(name))
        phrase = init_phrase(name, blk.CTX_INIT)
        n_ctx = len(phrase.split(" ")) if phrase else int(blk.N_CTX)
        csc = name != "CoCoOp" and bool(blk.CSC) and not phrase
        position = blk.CLASS_TOKEN_POSITION if name == "CoOp" else "end"
        return cls(trainer=name, backbone=cfg.MODEL.BACKBONE.NAME, n_ctx=n_ctx, ctx_init=phrase, csc=csc,
                   class_token_position=position)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PromptArch":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- prompt layout ---------------------------------------------------------------------------

def bpe_length(text: str) -> int:
    from open_clip.tokenizer import _tokenizer  # the CLIP BPE that open_clip.tokenize uses
    return len(_tokenizer.encode(text))


class PromptSkeleton:
    """The official placeholder prompts ("<phrase or X X .. X> <name>.") of a class list, and where
    each of the 77 input rows comes from.

    ``index[c, p]`` names the row at position p of class c in the bank [E_c ; ctx_c], where
    E_c (77 rows) embeds the placeholder prompt's ids and ctx_c (n_ctx rows) is the context
    (row 77 + j is context token j). The placeholder rows E_c[1..n_ctx] are never used.
    """

    def __init__(self, classnames: list[str], arch: PromptArch):
        m = arch.n_ctx
        placeholder = arch.ctx_init or " ".join(["X"] * m)
        texts = prompt_texts(classnames, placeholder + " {}.")
        for name, text in zip(classnames, texts):
            if bpe_length(text) + 2 > CONTEXT_LENGTH:  # the official tokenizer refuses it too
                raise ConfigError(f"class name {name!r}: the prompt {text!r} is longer than CLIP's "
                                  f"{CONTEXT_LENGTH} tokens; shorten the class name or N_CTX")
        ids = tokenize(texts)
        self.prompts = Prompts(texts, ids, ids.argmax(dim=-1))
        self.n_ctx = m
        self.name_lens = [bpe_length(n.replace("_", " ")) for n in classnames]
        ctx = list(range(CONTEXT_LENGTH, CONTEXT_LENGTH + m))
        suffix = list(range(1 + m, CONTEXT_LENGTH))
        rows = []
        for nl in self.name_lens:
            if arch.class_token_position == "end":
                rows.append([0, *ctx, *suffix])
            elif arch.class_token_position == "middle":
                h = m // 2
                rows.append([0, *ctx[:h], *suffix[:nl], *ctx[h:], *suffix[nl:]])
            else:
                rows.append([0, *suffix[:nl], *ctx, *suffix[nl:]])
        self.index = torch.tensor(rows)

    def cut_index(self, classes: torch.Tensor, length: int) -> torch.Tensor:
        """``index`` of some classes, cut to ``length`` positions, for the bank [E_c[:length] ; ctx_c]."""
        idx = self.index[classes, :length]
        fixed = idx < CONTEXT_LENGTH
        if int(idx[fixed].max()) >= length:  # holds for every layout: fixed rows used before EOT come before it
            raise AssertionError("a fixed row beyond the cut")
        return torch.where(fixed, idx, idx - CONTEXT_LENGTH + length)


def assemble(fixed: torch.Tensor, ctx: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Rows ``index`` (n, L) of the banks [fixed (n, L, D) ; ctx (n, M, D)]: the text tower's input."""
    bank = torch.cat([fixed, ctx.to(fixed.dtype)], dim=1)
    return bank.gather(1, index.unsqueeze(-1).expand(-1, -1, bank.shape[-1]))


# -- the shared model ------------------------------------------------------------------------

class _PromptLearner(nn.Module):
    """The learned tensors, under the official names (``prompt_learner.ctx``, ``.meta_net.*``)."""

    def __init__(self, ctx: torch.Tensor, meta_net: nn.Module | None = None):
        super().__init__()
        self.ctx = nn.Parameter(ctx)
        if meta_net is not None:
            self.meta_net = meta_net


def phrase_embedding(clip: nn.Module, phrase: str, n_ctx: int) -> torch.Tensor:
    """The token embeddings at positions 1..n_ctx of the tokenised phrase (one row per word)."""
    with torch.no_grad():
        ids = tokenize([phrase]).to(clip.token_embedding.weight.device)
        return clip.token_embedding(ids)[0, 1:1 + n_ctx].float().clone()


def meta_net(in_dim: int, out_dim: int) -> nn.Sequential:
    """CoCoOp's Meta-Net: Linear(in -> in // 16), ReLU, Linear(-> out), torch's default init."""
    return nn.Sequential(OrderedDict([("linear1", nn.Linear(in_dim, in_dim // 16)), ("relu", nn.ReLU(inplace=True)),
                                      ("linear2", nn.Linear(in_dim // 16, out_dim))]))


class PromptedCLIP(nn.Module):
    """Base of the three methods over a shared frozen open_clip CLIP (not a registered submodule,
    so ``state_dict()`` holds exactly the learned tensors)."""

    def __init__(self, spec: PromptArch, clip: nn.Module, classnames: list[str]):
        super().__init__()
        self.spec = spec
        object.__setattr__(self, "clip", clip)  # shared, frozen, deliberately unregistered
        self.classnames = list(classnames)
        self.skeleton = PromptSkeleton(classnames, spec)
        self.n_layers = towers.num_layers(clip)
        self.J = towers.num_layers(clip.visual) + 1  # the whole image tower is frozen: shareable by multi_eval
        blocks = [*clip.transformer.resblocks, *clip.visual.transformer.resblocks]
        self._blockwise = all(towers.block_supported(b) for b in blocks)  # else: whole blocks, all queries
        width = towers.text_width(clip)
        if spec.ctx_init:
            ctx = phrase_embedding(clip, spec.ctx_init, spec.n_ctx)
        else:
            shape = (len(classnames), spec.n_ctx, width) if spec.csc else (spec.n_ctx, width)
            ctx = torch.empty(shape).normal_(std=0.02)
        self.prompt_learner = _PromptLearner(ctx, self._meta_net())
        # "embed": token embeddings of the placeholder prompts; "w": eval text features; "u": KgCoOp's
        self._cache = ActivationCache()
        self._plans: dict[str, tuple[GroupPlan, list[torch.Tensor]]] = {}

    def _meta_net(self) -> nn.Module | None:
        return None

    def train(self, mode: bool = True):
        self._cache.drop("w")  # parameters may change: eval text features must be recomputed
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache.drop("w")
        super()._load_from_state_dict(*args, **kwargs)

    @property
    def device(self) -> torch.device:
        return self.prompt_learner.ctx.device

    @property
    def logit_scale(self) -> torch.Tensor:
        """exp of CLIP's stored temperature, in fp32 (spec §1.4: not a hard-coded 100)."""
        return self.clip.logit_scale.float().exp()

    def _plan(self) -> tuple[GroupPlan, list[torch.Tensor]]:
        """Classes grouped by prompt length (on this model's device) and each group's cut index."""
        key = str(self.device)
        if key not in self._plans:
            p = self.skeleton.prompts
            groups = p.groups(TEXT_GROUP_SIZE)
            index = [self.skeleton.cut_index(idx, length).to(self.device) for idx, length in groups]
            self._plans[key] = (p.plan(groups, self.device), index)
        return self._plans[key]

    def _embeddings(self) -> torch.Tensor:
        """Token embeddings (C, 77, D) of the placeholder prompts: the official prefix/suffix buffers."""
        @torch.no_grad()
        def compute():
            return self.clip.token_embedding(self.skeleton.prompts.ids.to(self.device))
        return self._cache.get("embed", self.device, compute)

    # -- towers -----------------------------------------------------------------------------
    def encode_text(self, x: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Text features of input rows x (N, L, D) cut after their longest EOT; eot (N,) on x's device."""
        clip = self.clip
        n, length, _ = x.shape
        x = x + clip.positional_embedding[:length].to(x.dtype)
        mask = towers.causal_mask(length, x.device, x.dtype)
        rows = torch.arange(n, device=x.device)
        if self._blockwise:  # only each prompt's EOT is read after the last layer
            x = towers.run_layers(clip.transformer, x, 1, self.n_layers - 1, mask)
            blk = clip.transformer.resblocks[self.n_layers - 1]
            normed = blk.ln_1(x)
            k, v = towers.project_kv(blk, normed)
            q = towers.project_q(blk, normed[rows, eot].unsqueeze(1))
            x = towers.block_finish(blk, x[rows, eot].unsqueeze(1), q, k, v, mask[eot][:, None, None])[:, 0]
        else:
            x = towers.run_layers(clip.transformer, x, 1, self.n_layers, mask)[rows, eot]
        return towers.text_project(clip, x)

    def image_prefix(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised image features of the frozen tower (no autograd; nothing in it is learned)."""
        visual = self.clip.visual
        with torch.no_grad():
            x = towers.visual_embed(visual, images)
            last = towers.num_layers(visual)
            if self._blockwise:  # only CLS is read after the last layer
                x = towers.run_layers(visual.transformer, x, 1, last - 1)
                x = towers.block_first_queries(visual.transformer.resblocks[last - 1], x, 1)
            else:
                x = towers.run_layers(visual.transformer, x, 1, last)
            return F.normalize(towers.visual_project(visual, x[:, 0]), dim=-1)

    @torch.no_grad()
    def forward_eval(self, images: torch.Tensor, prefix: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Logits of a batch (one head); ``prefix``: this batch's ``image_prefix``, shared by several models."""
        f = self.image_prefix(images) if prefix is None else prefix
        logits = self.logits(f)
        return {"class": logits, "fused": logits}


class CoOp(PromptedCLIP):
    """CoOp (spec §2): a learned context shared by all classes (or one per class, CSC)."""

    def text_features(self) -> torch.Tensor:
        """Normalised text features of every class (C, E), differentiable in the context."""
        plan, index = self._plan()
        embed = self._embeddings()
        ctx = self.prompt_learner.ctx
        feats = []
        for (idx, length, eot), ix in zip(plan.groups, index):
            c = ctx[idx] if ctx.dim() == 3 else ctx.unsqueeze(0).expand(len(idx), -1, -1)
            feats.append(self.encode_text(assemble(embed[idx, :length], c, ix), eot))
        return F.normalize(plan.scatter(feats), dim=-1)

    def eval_text_features(self) -> torch.Tensor:
        if self.training:
            return self.text_features()
        return self._cache.get("w", self.device, self.text_features)

    def logits(self, f: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        w = self.eval_text_features() if w is None else w
        return (self.logit_scale * f) @ w.to(f.dtype).t()

    def forward_train(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        f = self.image_prefix(images)
        logits = self.logits(f, self.text_features())
        return F.cross_entropy(logits, labels), logits, {}


class KgCoOp(CoOp):
    """KgCoOp (spec §4): CoOp's logits; the loss adds W * (1 - mean_c cos(w_c, u_c)) towards the
    frozen CLIP's features u of one hand-crafted prompt per class."""

    def __init__(self, spec: PromptArch, clip: nn.Module, classnames: list[str], template: str, w: float = 1.0):
        super().__init__(spec, clip, classnames)
        self.hand_crafted = Prompts.build(classnames, template)
        self.w = w

    def hand_crafted_features(self) -> torch.Tensor:
        """u: the frozen CLIP's normalised text features of the hand-crafted prompts (computed once)."""
        @torch.no_grad()
        def compute():
            p = self.hand_crafted
            plan = p.plan(p.groups(TEXT_GROUP_SIZE), self.device)
            feats = [self.encode_text(self.clip.token_embedding(p.ids[:, :length].to(self.device)[idx]), eot)
                     for idx, length, eot in plan.groups]
            return F.normalize(plan.scatter(feats), dim=-1)
        return self._cache.get("u", self.device, compute)

    def loss_from_features(self, logits: torch.Tensor, w: torch.Tensor, u: torch.Tensor, labels: torch.Tensor):
        ce = F.cross_entropy(logits, labels)
        score = 1.0 - F.cosine_similarity(w, u.to(w.dtype), dim=1, eps=1e-7).mean()
        return ce + self.w * score, {"ce": ce.detach(), "score": score.detach()}

    def forward_train(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        f = self.image_prefix(images)
        w = self.text_features()
        logits = self.logits(f, w)
        loss, extras = self.loss_from_features(logits, w, self.hand_crafted_features(), labels)
        return loss, logits, extras


class CoCoOp(PromptedCLIP):
    """CoCoOp (spec §3): every image shifts all context tokens by meta_net(its normalised feature)."""

    def _meta_net(self) -> nn.Module:
        return meta_net(towers.embed_dim(self.clip), towers.text_width(self.clip))

    def text_features(self, f: torch.Tensor) -> torch.Tensor:
        """Normalised text features (B, C, E) of the prompts conditioned on each image feature f (B, E)."""
        plan, index = self._plan()
        embed = self._embeddings()
        pl = self.prompt_learner
        ctx = pl.ctx.unsqueeze(0) + pl.meta_net(f).unsqueeze(1)   # (B, M, D)
        b = f.shape[0]
        feats = []
        for (idx, length, eot), ix in zip(plan.groups, index):
            g = len(idx)
            fixed = embed[idx, :length]
            per_pass = max(1, COCOOP_SEQUENCES // g)   # images per text pass
            parts = []
            for start in range(0, b, per_pass):
                ctx_i = ctx[start:start + per_pass]
                n = ctx_i.shape[0]
                x = assemble(fixed.unsqueeze(0).expand(n, -1, -1, -1).reshape(n * g, length, -1),
                             ctx_i.unsqueeze(1).expand(-1, g, -1, -1).reshape(n * g, self.spec.n_ctx, -1),
                             ix.repeat(n, 1))
                parts.append(self.encode_text(x, eot.repeat(n)).view(n, g, -1))
            feats.append(torch.cat(parts).transpose(0, 1))   # (g, B, E): classes first, for the scatter
        return F.normalize(self._scatter(plan, feats).transpose(0, 1), dim=-1)

    @staticmethod
    def _scatter(plan: GroupPlan, feats: list[torch.Tensor]) -> torch.Tensor:
        rows = torch.cat(feats)
        if plan.order is None:
            return rows
        return rows.new_empty((plan.num_classes, *rows.shape[1:])).index_copy(0, plan.order, rows)

    def logits(self, f: torch.Tensor) -> torch.Tensor:
        w = self.text_features(f)
        return torch.einsum("be,bce->bc", self.logit_scale * f, w.to(f.dtype))

    def forward_train(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        logits = self.logits(self.image_prefix(images))
        return F.cross_entropy(logits, labels), logits, {}


def model_from_cfg(cfg, spec: PromptArch, clip: nn.Module, classnames: list[str], template: str) -> PromptedCLIP:
    """The model of ``spec`` with the run's behaviour: KgCoOp's W (TRAINER.COOP.W) and its hand-crafted
    prompt (``template``, the dataset's, with KgCoOp's own for DTD)."""
    if spec.trainer != "KgCoOp":
        return build_prompt_model(spec, clip, classnames)
    return build_prompt_model(spec, clip, classnames, template=kgcoop_template(cfg.DATASET.NAME, template),
                              w=float(cfg.TRAINER.COOP.W))


def build_prompt_model(spec: PromptArch, clip: nn.Module, classnames: list[str], *, template: str = "",
                       w: float = 1.0) -> PromptedCLIP:
    """The model of ``spec.trainer``; ``template`` and ``w`` are KgCoOp's (its hand-crafted prompt, TRAINER.COOP.W)."""
    if spec.trainer == "CoOp":
        return CoOp(spec, clip, classnames)
    if spec.trainer == "CoCoOp":
        return CoCoOp(spec, clip, classnames)
    if not template:
        raise ConfigError("KgCoOp needs the dataset's hand-crafted template (kgcoop_template)")
    return KgCoOp(spec, clip, classnames, template, w)
