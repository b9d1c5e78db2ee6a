"""IVLP, MaPLe and PromptSRC (spec baselines.md §5-§7): deep prompts in both towers of a shared
frozen open_clip CLIP, computed with exact shortcuts.

Every method learns a text context ``ctx`` at positions 1..N_CTX_TEXT of the prompt
"<CTX_INIT> <class name>." (only the first N_CTX_TEXT tokens of the phrase are learnable; the
rest stay fixed tokens) and per-layer prompts that *replace* those rows before text layers
2..PROMPT_DEPTH_TEXT. The image tower gets N_CTX_VISION tokens appended after the positional
embedding (so they pass ``ln_pre``) and replaced, at the end of the sequence, before visual
layers 2..PROMPT_DEPTH_VISION. MaPLe's vision prompts are linear functions of the text prompt
of the same layer; IVLP's and PromptSRC's are free. Logits are exp(logit_scale) * cos.

Shortcuts (each changes nothing beyond floating-point reassociation):
- text is causal and every prompt row sits before the end-of-text token, so prompts are
  grouped by length and each group is cut after its longest end-of-text position;
- the fixed token rows (embedding + positional embedding) are computed once per class list;
- after the last layer only the feature positions are read (text: EOT; image: CLS), so the
  last block computes queries, attention output and MLP for those only;
- in eval mode the text features are computed once while the parameters stay fixed;
- PromptSRC: the 60-template ensemble of frozen text features is computed once per class list
  (fp32, as the reference computes it at build time); its frozen zero-shot image tower is the
  shared CLIP's, run without autograd on the stem (patchify, CLS, positional embedding and
  ``ln_pre`` of the image tokens, all per token) that the prompted tower also starts from.
The straightforward computation is ``mmrl.models.deep_prompts_reference``.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from mmrl.errors import ConfigError
from mmrl.models import towers
from mmrl.models.arith import ActivationCache
from mmrl.models.prompts import GroupPlan, Prompts, tokenize
from mmrl.models.promptsrc_templates import PROMPTSRC_TEMPLATES

TRAINERS = ("IVLP", "MaPLe", "PromptSRC")
CONFIG_KEY = {"IVLP": "IVLP", "MaPLe": "MAPLE", "PromptSRC": "PROMPTSRC"}  # cfg.TRAINER.<key>
PHRASE_MAX_CTX = 4      # the reference initialises from CTX_INIT only when N_CTX_TEXT <= 4
TEXT_GROUP_SIZE = 256   # classes per text chunk: bounds activation memory for 1000 classes


def config_block(trainer: str) -> CN:
    """The defaults of cfg.TRAINER.<CONFIG_KEY[trainer]> (the reference's extend_cfg values)."""
    node = CN()
    if trainer == "MaPLe":
        node.N_CTX = 2
        node.CTX_INIT = "a photo of a"
        node.PREC = "fp16"
        node.PROMPT_DEPTH = 9
        return node
    if trainer not in ("IVLP", "PromptSRC"):
        raise ConfigError(f"trainer {trainer!r} is not one of {', '.join(TRAINERS)}")
    n, depth = (2, 9) if trainer == "IVLP" else (4, 9)
    node.N_CTX_VISION = n
    node.N_CTX_TEXT = n
    node.CTX_INIT = "a photo of a"
    node.PREC = "fp16"
    node.PROMPT_DEPTH_VISION = depth
    node.PROMPT_DEPTH_TEXT = depth
    if trainer == "PromptSRC":
        # ints, as the official defaults: Dassl's config merge refuses a float into an int key
        node.TEXT_LOSS_WEIGHT = 25
        node.IMAGE_LOSS_WEIGHT = 10
        node.GPA_MEAN = 15
        node.GPA_STD = 1
    return node


@dataclass
class DeepPromptArch:
    """What fixes the trainable shapes and the prompt skeleton (stored in every checkpoint)."""
    trainer: str = "IVLP"
    backbone: str = "ViT-B/16"
    n_ctx_text: int = 2
    n_ctx_vision: int = 2
    depth_text: int = 9
    depth_vision: int = 9
    ctx_init: str = "a photo of a"

    @classmethod
    def from_cfg(cls, cfg) -> "DeepPromptArch":
        name = cfg.TRAINER.NAME
        blk = cfg.TRAINER[CONFIG_KEY[name]]
        if name == "MaPLe":
            n, depth = int(blk.N_CTX), int(blk.PROMPT_DEPTH)
            return cls(name, cfg.MODEL.BACKBONE.NAME, n, n, depth, depth, str(blk.CTX_INIT))
        return cls(name, cfg.MODEL.BACKBONE.NAME, int(blk.N_CTX_TEXT), int(blk.N_CTX_VISION),
                   int(blk.PROMPT_DEPTH_TEXT), int(blk.PROMPT_DEPTH_VISION), str(blk.CTX_INIT))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DeepPromptArch":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def phrase(self) -> str:
        return self.ctx_init.replace("_", " ")

    @property
    def uses_phrase(self) -> bool:
        return bool(self.phrase) and self.n_ctx_text <= PHRASE_MAX_CTX

    @property
    def prompt_prefix(self) -> str:
        """The words before each class name: the whole phrase, or N_CTX_TEXT placeholders."""
        return self.phrase if self.uses_phrase else " ".join(["X"] * self.n_ctx_text)

    def check(self, text_layers: int, vision_layers: int) -> None:
        """Refuse settings the reference would crash on or silently misread, naming the key."""
        key = f"TRAINER.{CONFIG_KEY.get(self.trainer, self.trainer)}"
        if self.trainer not in TRAINERS:
            raise ConfigError(f"trainer {self.trainer!r} is not one of {', '.join(TRAINERS)}")
        maple = self.trainer == "MaPLe"
        n_key = f"{key}.N_CTX" if maple else f"{key}.N_CTX_TEXT"
        dt_key = f"{key}.PROMPT_DEPTH" if maple else f"{key}.PROMPT_DEPTH_TEXT"
        if maple and (self.n_ctx_text != self.n_ctx_vision or self.depth_text != self.depth_vision):
            raise ConfigError(f"MaPLe couples each vision prompt to the text prompt of its layer: the text and "
                              f"vision context counts and depths must be equal, got {self.to_dict()}")
        if self.n_ctx_text < 1:
            raise ConfigError(f"{n_key} is {self.n_ctx_text}; it must be at least 1")
        if not 1 <= self.depth_text <= text_layers:
            raise ConfigError(f"{dt_key} is {self.depth_text}; it must be within 1..{text_layers} for backbone "
                              f"{self.backbone} ({text_layers} text layers)")
        if not 0 <= self.depth_vision <= vision_layers:
            raise ConfigError(f"{key}.PROMPT_DEPTH_VISION is {self.depth_vision}; it must be within "
                              f"0..{vision_layers} for backbone {self.backbone}")
        if self.depth_vision >= 1 and self.n_ctx_vision < 1:
            raise ConfigError(f"{key}.N_CTX_VISION is {self.n_ctx_vision} with PROMPT_DEPTH_VISION "
                              f"{self.depth_vision}; vision prompts need at least one token")
        if self.uses_phrase:
            n_tokens = int(tokenize([self.phrase])[0].argmax()) - 1
            if n_tokens < self.n_ctx_text:
                raise ConfigError(f"{key}.CTX_INIT {self.ctx_init!r} has {n_tokens} tokens but {n_key} is "
                                  f"{self.n_ctx_text}: the context would start from the end-of-text token. "
                                  f"Use a phrase of at least {self.n_ctx_text} tokens, or CTX_INIT ''.")


@dataclass
class DeepPromptBehaviour:
    """What the current config (not the checkpoint) decides: PromptSRC's loss weights."""
    text_loss_weight: float = 25.0
    image_loss_weight: float = 10.0

    @classmethod
    def from_cfg(cls, cfg) -> "DeepPromptBehaviour":
        if cfg.TRAINER.NAME != "PromptSRC":
            return cls()
        blk = cfg.TRAINER.PROMPTSRC
        return cls(float(blk.TEXT_LOSS_WEIGHT), float(blk.IMAGE_LOSS_WEIGHT))


def phrase_context(clip: nn.Module, arch: DeepPromptArch) -> torch.Tensor | None:
    """The token embeddings of the first N_CTX_TEXT tokens of the phrase (None: random init)."""
    if not arch.uses_phrase:
        return None
    ids = tokenize([arch.phrase]).to(clip.token_embedding.weight.device)
    with torch.no_grad():
        return clip.token_embedding(ids)[0, 1:1 + arch.n_ctx_text].clone()


def _put_text(x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Rows 1..n of every sequence replaced by ``tokens`` (n x D)."""
    n = tokens.shape[0]
    return torch.cat([x[:, :1], tokens.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1), x[:, 1 + n:]], dim=1)


def _put_vision(x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The last n tokens of every sequence replaced by ``tokens`` (n x D)."""
    n = tokens.shape[0]
    return torch.cat([x[:, :-n], tokens.to(x.dtype).unsqueeze(0).expand(x.shape[0], -1, -1)], dim=1)


class DeepPromptModel(nn.Module):
    """The shared machinery; subclasses define the parameters and ``prompt_tokens``.

    The frozen CLIP is shared and deliberately not a registered submodule, so ``state_dict()``
    holds exactly the learned tensors."""

    def __init__(self, spec: DeepPromptArch, clip: nn.Module, classnames: list[str],
                 behaviour: DeepPromptBehaviour | None = None):
        super().__init__()
        self.spec = spec
        self.behaviour = behaviour or DeepPromptBehaviour()
        object.__setattr__(self, "clip", clip)
        self.text_layers = towers.num_layers(clip)
        self.vision_layers = towers.num_layers(clip.visual)
        spec.check(self.text_layers, self.vision_layers)
        blocks = [*clip.transformer.resblocks, *clip.visual.transformer.resblocks]
        self._blockwise = all(towers.block_supported(b) for b in blocks)  # else: whole blocks, all queries
        phrase = phrase_context(clip, spec)
        self.ctx = nn.Parameter(phrase if phrase is not None else
                                torch.empty(spec.n_ctx_text, towers.text_width(clip)).normal_(std=0.02))
        # "embed": fixed token rows of the prompts; "w": eval-mode text features; PromptSRC "fixed"
        self._cache = ActivationCache()
        self.set_classnames(classnames)

    # -- bookkeeping ------------------------------------------------------------------------
    def set_classnames(self, classnames: list[str]) -> None:
        self.classnames = list(classnames)
        self.prompts = Prompts.build(self.classnames, self.spec.prompt_prefix.replace("{", "{{").replace("}", "}}")
                                     + " {}.")
        self._plans: dict[str, GroupPlan] = {}
        self._cache.drop()

    def train(self, mode: bool = True):
        self._cache.drop("w")  # parameters may change: eval text features must be recomputed
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._cache.drop("w")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    def _plan(self, prompts: Prompts, key: str) -> GroupPlan:
        plan_key = f"{key}@{self.device}"
        if plan_key not in self._plans:
            self._plans[plan_key] = prompts.plan(prompts.groups(TEXT_GROUP_SIZE), self.device)
        return self._plans[plan_key]

    def prompt_tokens(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per layer l = 1..depth: the text prompt (N_CTX_TEXT x Dt) and vision prompt (N_CTX_VISION x Dv)."""
        raise NotImplementedError

    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale.exp()

    # -- text -------------------------------------------------------------------------------
    def _text_tower(self, x: torch.Tensor, eot: torch.Tensor, tokens: list[torch.Tensor]) -> torch.Tensor:
        """Layers 1..L on embedded prompts x (n, T, Dt) whose rows 1..n_ctx already hold layer 1's
        tokens; before layer l >= 2 those rows are replaced by tokens[l - 1]. Projected EOT features."""
        blocks = self.clip.transformer.resblocks
        mask = towers.causal_mask(x.shape[1], x.device, x.dtype)
        rows = torch.arange(x.shape[0], device=x.device)
        for layer in range(1, self.text_layers + 1):
            if 2 <= layer <= len(tokens):
                x = _put_text(x, tokens[layer - 1])
            if layer < self.text_layers or not self._blockwise:
                x = towers.run_layer(self.clip.transformer, x, layer, mask)
                continue
            blk = blocks[layer - 1]  # the last layer: only each prompt's EOT is read
            normed = blk.ln_1(x)
            k, v = towers.project_kv(blk, normed)
            q = towers.project_q(blk, normed[rows, eot].unsqueeze(1))
            x = towers.block_finish(blk, x[rows, eot].unsqueeze(1), q, k, v, mask[eot][:, None, None])
            eot = torch.zeros_like(eot)
        return towers.text_project(self.clip, x[rows, eot])

    def _embedded(self) -> torch.Tensor:
        """Token + positional embeddings of the class prompts, cut after the longest one."""
        @torch.no_grad()
        def compute():
            return towers.text_embed(self.clip, self.prompts.ids[:, : self.prompts.max_len].to(self.device))
        return self._cache.get("embed", self.device, compute)

    def text_features(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """Normalised prompted text features of every class (C x D)."""
        embed = self._embedded()
        n = self.spec.n_ctx_text
        first = tokens[0].to(embed.dtype) + self.clip.positional_embedding[1:1 + n].to(embed.dtype)
        plan = self._plan(self.prompts, "classes")
        feats = [self._text_tower(_put_text(embed[idx, :length], first), eot, tokens)
                 for idx, length, eot in plan.groups]
        return F.normalize(plan.scatter(feats), dim=-1)

    @torch.no_grad()
    def eval_text_features(self) -> torch.Tensor:
        def compute():
            return self.text_features(self.prompt_tokens()[0])
        if self.training:
            return compute()
        return self._cache.get("w", self.device, compute)

    # -- images -----------------------------------------------------------------------------
    def image_stem(self, images: torch.Tensor) -> torch.Tensor:
        """Patchify, CLS, positional embedding and ln_pre of the image tokens (frozen: no graph)."""
        with torch.no_grad():
            return towers.visual_embed(self.clip.visual, images)

    def _vision_tower(self, x: torch.Tensor, tokens: list[torch.Tensor]) -> torch.Tensor:
        """Layers 1..L; before layer l in 2..len(tokens) the last tokens are replaced. Projected CLS."""
        visual = self.clip.visual
        for layer in range(1, self.vision_layers + 1):
            if 2 <= layer <= len(tokens):
                x = _put_vision(x, tokens[layer - 1])
            if layer == self.vision_layers and self._blockwise:  # only CLS is read afterwards
                x = towers.block_first_queries(visual.transformer.resblocks[layer - 1], x, 1)
            else:
                x = towers.run_layer(visual.transformer, x, layer)
        return towers.visual_project(visual, x[:, 0])

    def image_features(self, stem: torch.Tensor, tokens: list[torch.Tensor]) -> torch.Tensor:
        """Normalised prompted image features (B x D)."""
        x = stem
        if tokens:  # appended after the positional embedding, so they pass ln_pre too
            first = self.clip.visual.ln_pre(tokens[0].to(stem.dtype))
            x = torch.cat([stem, first.unsqueeze(0).expand(stem.shape[0], -1, -1)], dim=1)
        return F.normalize(self._vision_tower(x, tokens), dim=-1)

    # -- heads ------------------------------------------------------------------------------
    def forward_train(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        text_tokens, vision_tokens = self.prompt_tokens()
        f = self.image_features(self.image_stem(images), vision_tokens)
        w = self.text_features(text_tokens)
        logits = self.logit_scale() * f @ w.t()
        ce = F.cross_entropy(logits.float(), labels)
        return ce, logits, {"ce": ce.detach()}

    @torch.no_grad()
    def forward_eval(self, images: torch.Tensor, prefix: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Logits of a batch under both head names (these methods have one head). ``prefix`` is
        accepted for the harness's shared evaluation and unused: prompts enter at layer 1."""
        f = self.image_features(self.image_stem(images), self.prompt_tokens()[1])
        logits = self.logit_scale() * f @ self.eval_text_features().to(f.dtype).t()
        return {"class": logits, "fused": logits}


class IVLP(DeepPromptModel):
    """Independent deep prompts in both towers (spec §6).

    Parameters: ``ctx`` (layer 1, text), ``text_prompts.<i>`` (layer i + 2, text),
    ``vision_ctx`` (layer 1, image; only with PROMPT_DEPTH_VISION >= 1), ``vision_prompts.<i>``."""

    def __init__(self, spec, clip, classnames, behaviour=None):
        super().__init__(spec, clip, classnames, behaviour)
        dt, dv = towers.text_width(clip), towers.visual_width(clip)
        self.text_prompts = nn.ParameterList(
            nn.Parameter(torch.empty(spec.n_ctx_text, dt).normal_(std=0.02)) for _ in range(spec.depth_text - 1))
        if spec.depth_vision >= 1:
            self.vision_ctx = nn.Parameter(torch.empty(spec.n_ctx_vision, dv).normal_(std=0.02))
        self.vision_prompts = nn.ParameterList(
            nn.Parameter(torch.empty(spec.n_ctx_vision, dv).normal_(std=0.02))
            for _ in range(max(spec.depth_vision - 1, 0)))

    def prompt_tokens(self):
        vision = [self.vision_ctx, *self.vision_prompts] if self.spec.depth_vision >= 1 else []
        return [self.ctx, *self.text_prompts], vision


class MaPLe(DeepPromptModel):
    """Coupled prompts (spec §5): the vision prompt of layer l is a linear map of its text prompt.

    Parameters: ``ctx`` (layer 1, text), ``proj`` (layer 1, text -> vision),
    ``compound_prompts_text.<i>`` and ``compound_prompt_projections.<i>`` (layer i + 2)."""

    def __init__(self, spec, clip, classnames, behaviour=None):
        super().__init__(spec, clip, classnames, behaviour)
        dt, dv = towers.text_width(clip), towers.visual_width(clip)
        self.proj = nn.Linear(dt, dv)
        self.compound_prompts_text = nn.ParameterList(
            nn.Parameter(torch.empty(spec.n_ctx_text, dt).normal_(std=0.02)) for _ in range(spec.depth_text - 1))
        proto = nn.Linear(dt, dv)  # one initialisation, copied to every layer (all start identical)
        self.compound_prompt_projections = nn.ModuleList(copy.deepcopy(proto) for _ in range(spec.depth_text - 1))

    def prompt_tokens(self):
        text = [self.ctx, *self.compound_prompts_text]
        vision = [self.proj(self.ctx)] + [lin(p) for lin, p in zip(self.compound_prompt_projections,
                                                                   self.compound_prompts_text)]
        return text, vision


class PromptSRC(IVLP):
    """IVLP plus self-regularisation against frozen CLIP (spec §7.2-§7.4). The Gaussian prompt
    aggregation over epochs is the trainer's (``mmrl.models.gpa``)."""

    def ensemble_text_features(self) -> torch.Tensor:
        """Frozen CLIP's text features averaged (unnormalised) over the 60 templates, fp32, C x D."""
        @torch.no_grad()
        def compute():
            texts = [t.replace("{}", name.replace("_", " ")) for t in PROMPTSRC_TEMPLATES for name in self.classnames]
            ids = tokenize(texts)
            prompts = Prompts(texts, ids, ids.argmax(dim=-1))
            plan = self._plan(prompts, "templates")
            ids = ids.to(self.device)
            feats = []
            for idx, length, eot in plan.groups:
                x = towers.text_embed(self.clip, ids[idx, :length])
                feats.append(self._text_tower(x, eot, []))
            per_template = plan.scatter(feats).view(len(PROMPTSRC_TEMPLATES), len(self.classnames), -1)
            return per_template.transpose(0, 1).mean(dim=1)
        with torch.autocast(self.device.type, enabled=False):
            return self._cache.get("fixed", self.device, compute)

    def zero_shot_image_features(self, stem: torch.Tensor) -> torch.Tensor:
        """Frozen CLIP's normalised image features of the same batch (no autograd)."""
        with torch.no_grad():
            return F.normalize(self._vision_tower(stem, []), dim=-1)

    def forward_train(self, images, labels):
        text_tokens, vision_tokens = self.prompt_tokens()
        stem = self.image_stem(images)
        f = self.image_features(stem, vision_tokens)
        w = self.text_features(text_tokens)
        scale = self.logit_scale()
        logits = scale * f @ w.t()
        fixed = F.normalize(self.ensemble_text_features(), dim=-1)
        g = self.zero_shot_image_features(stem)
        with torch.no_grad():
            zs_logits = scale * g @ fixed.to(g.dtype).t()
        return self.loss_from_features(logits, zs_logits, w, fixed, f, g, labels)

    def loss_from_features(self, logits, zs_logits, w, fixed, f, g, labels):
        """L = CE + (KL(p0 || p) summed / (B*C) + TEXT_W * mean|w - fixed| + IMAGE_W * mean|f - g|)."""
        b = self.behaviour
        z, z0 = logits.float(), zs_logits.float()
        ce = F.cross_entropy(z, labels)
        l_text = F.l1_loss(w.float(), fixed.float()) * b.text_loss_weight
        l_image = F.l1_loss(f.float(), g.float()) * b.image_loss_weight
        l_logits = F.kl_div(F.log_softmax(z, dim=1), F.log_softmax(z0, dim=1), reduction="sum",
                            log_target=True) / z.numel()
        loss = ce + (l_logits + l_text + l_image)
        return loss, logits, {"ce": ce.detach(), "kl": l_logits.detach(), "l1_text": l_text.detach(),
                              "l1_image": l_image.detach()}


MODEL_CLASSES = {"IVLP": IVLP, "MaPLe": MaPLe, "PromptSRC": PromptSRC}


def build_deep_prompt_model(spec: DeepPromptArch, clip: nn.Module, classnames: list[str],
                            behaviour: DeepPromptBehaviour | None = None) -> DeepPromptModel:
    if spec.trainer not in MODEL_CLASSES:
        raise ConfigError(f"trainer {spec.trainer!r} is not one of {', '.join(TRAINERS)}")
    return MODEL_CLASSES[spec.trainer](spec, clip, classnames, behaviour)
