"""Pretrain the demo CLIP contrastively on captioned images of the demo world.

    python -m mmrl.demo.pretrain --out mmrl/resources/demo_clip.pt

Images come from the "pretrain" style (large, centred shapes on light backgrounds) for every
attribute combination except the demo dataset's 32 classes; each image is paired with one
caption drawn from :data:`mmrl.demo.world.CAPTION_TEMPLATES`. The loss is CLIP's symmetric
InfoNCE, with every pair of the same combination counted as a positive (captions of one
combination differ only in wording). Everything is seeded; the run uses a fixed number of
CPU threads and deterministic algorithms, so the same command on the same machine type writes
the same weights.

Only the token-embedding rows of the words the demo uses are trained (a small table that is
scattered into the 49408-row vocabulary at the end).
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from mmrl.demo import world

log = logging.getLogger("mmrl.demo")

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def tokenize(texts: list[str]) -> torch.Tensor:
    import open_clip
    return open_clip.tokenize(texts)


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_text_rows(model, rows: torch.Tensor, local_ids: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
    """CLIP's text tower with a small embedding table (``rows``) indexed by local ids.

    The sequence is cut after the longest end-of-text position, which is exact for a causal
    tower (later positions never influence earlier ones).
    """
    length = int(eot.max()) + 1
    x = rows[local_ids[:, :length]] + model.positional_embedding[:length]
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), eot]
    return x @ model.text_projection


def _param_groups(model, rows: torch.nn.Parameter, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if name == "token_embedding.weight" or not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and "positional" not in name and "class_embedding" not in name
         else no_decay).append(p)
    no_decay.append(rows)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def zeroshot_accuracy(model, images: torch.Tensor, labels: torch.Tensor, classnames: list[str],
                      template: str = world.TEMPLATE, batch: int = 512) -> float:
    """Plain open_clip zero-shot accuracy (encode_image / encode_text on full 77-token prompts)."""
    model.eval()
    text = F.normalize(model.encode_text(tokenize([template.format(c) for c in classnames])), dim=-1)
    correct = 0
    for i in range(0, len(images), batch):
        f = F.normalize(model.encode_image(images[i:i + batch]), dim=-1)
        correct += int(((f @ text.t()).argmax(1) == labels[i:i + batch]).sum())
    return correct / max(len(images), 1)


def demo_eval_set(split: str = "test", per_class: int = 10, classes: range | None = None,
                  style: str = "demo") -> tuple[torch.Tensor, torch.Tensor]:
    """Images of the demo classes rendered in memory exactly as the dataset writes them
    (same per-image generators), without touching the disk."""
    sid = world.SPLIT_IDS[split]
    imgs, labels = [], []
    labs = list(classes) if classes is not None else list(range(len(world.CLASSES)))
    for new_label, label in enumerate(labs):
        for i in range(per_class):
            imgs.append(world.render(world.CLASSES[label], world.image_rng(sid, label, i), style))
            labels.append(new_label)
    return to_tensor(imgs), torch.tensor(labels)


def evaluate(model, per_class: int = 10) -> dict[str, float]:
    n = len(world.CLASSES)
    half = (n + 1) // 2
    out = {}
    for part, rng in (("base", range(0, half)), ("new", range(half, n))):
        names = [world.CLASSNAMES[i] for i in rng]
        for style in ("demo", "pretrain"):
            x, y = demo_eval_set("test", per_class, rng, style)
            out[f"{part}_{style}"] = zeroshot_accuracy(model, x, y, names)
    return out


def pretrain(steps: int = 800, batch: int = 64, lr: float = 2e-3, weight_decay: float = 0.1,
             warmup: int = 40, seed: int = 0, threads: int = 1, eval_every: int = 0,
             log_every: int = 25, logit_scale: float = 100.0):
    """Train and return (model, token_ids, meta). Thread count and determinism flags are
    restored afterwards."""
    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        return _pretrain(steps, batch, lr, weight_decay, warmup, seed, threads, eval_every, log_every,
                         logit_scale)
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def _pretrain(steps, batch, lr, weight_decay, warmup, seed, threads, eval_every, log_every, logit_scale):
    from mmrl.clip.archs import build_tiny_clip

    torch.manual_seed(seed)
    t0, c0 = time.time(), time.process_time()

    model = build_tiny_clip("demo-tiny")
    model.train()
    # MMRL scores with a fixed scale of 100 (CLIP's learned value): pretrain with the same
    # fixed scale so the demo CLIP's cosine margins are calibrated for it.
    with torch.no_grad():
        model.logit_scale.fill_(math.log(logit_scale))
    model.logit_scale.requires_grad_(False)

    combos = world.pretrain_combos()
    n_t = len(world.CAPTION_TEMPLATES)
    texts = [world.caption(c, j) for c in combos for j in range(n_t)]
    ids = tokenize(texts)
    used = torch.unique(torch.cat([ids.flatten(), tokenize(world.all_texts()).flatten()]))
    remap = torch.zeros(49408, dtype=torch.long)
    remap[used] = torch.arange(len(used))
    local = remap[ids].view(len(combos), n_t, -1)
    eot_all = ids.argmax(-1).view(len(combos), n_t)
    rows = torch.nn.Parameter(model.token_embedding.weight.detach()[used].clone())

    opt = torch.optim.AdamW(_param_groups(model, rows, weight_decay), lr=lr, betas=(0.9, 0.98), eps=1e-6)

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        t = (step - warmup) / max(steps - warmup, 1)
        return lr * 0.5 * (1 + math.cos(math.pi * t))

    history = []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        rng = np.random.default_rng([seed, 1, step])
        ci = rng.integers(len(combos), size=batch)
        ti = rng.integers(n_t, size=batch)
        img = to_tensor([world.render(combos[c], rng, "pretrain") for c in ci])
        ci_t, ti_t = torch.from_numpy(ci), torch.from_numpy(ti)

        f = F.normalize(model.encode_image(img), dim=-1)
        g = F.normalize(encode_text_rows(model, rows, local[ci_t, ti_t], eot_all[ci_t, ti_t]), dim=-1)
        logits = logit_scale * f @ g.t()
        same = (ci_t[:, None] == ci_t[None, :]).float()
        target = same / same.sum(1, keepdim=True)
        loss = 0.5 * (torch.sum(-target * F.log_softmax(logits, 1), 1).mean()
                      + torch.sum(-target * F.log_softmax(logits.t(), 1), 1).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for grp in opt.param_groups for p in grp["params"]], 1.0)
        opt.step()
        if log_every and (step + 1) % log_every == 0:
            log.info("step %d/%d loss %.4f lr %.2e %.0fs", step + 1, steps, loss.item(), lr_at(step),
                     time.time() - t0)
        if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            with torch.no_grad():
                model.token_embedding.weight.zero_()
                model.token_embedding.weight[used] = rows.detach()
            ev = evaluate(model, per_class=10)
            history.append({"step": step + 1, **ev})
            log.info("eval step %d: %s", step + 1, {k: round(v, 3) for k, v in ev.items()})
            model.train()

    with torch.no_grad():
        model.token_embedding.weight.zero_()
        model.token_embedding.weight[used] = rows.detach()
    model.eval()
    meta = {"steps": steps, "batch": batch, "lr": lr, "weight_decay": weight_decay, "warmup": warmup,
            "seed": seed, "threads": threads, "logit_scale": logit_scale, "seconds": round(time.time() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1),
            "torch": str(torch.__version__), "world_version": world.WORLD_VERSION, "history": history}
    return model, used, meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "resources" / "demo_clip.pt"))
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (the weights are bit-identical only for the same count and CPU type)")
    p.add_argument("--logit-scale", type=float, default=100.0)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--eval-per-class", type=int, default=25)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    from mmrl.clip.demo_weights import load_demo_clip, save_demo_clip
    model, used, meta = pretrain(args.steps, args.batch, args.lr, args.weight_decay, args.warmup,
                                 args.seed, args.threads, args.eval_every,
                                 logit_scale=args.logit_scale)
    meta["command"] = "python -m mmrl.demo.pretrain " + " ".join(sys.argv[1:] if argv is None else argv)
    out = save_demo_clip(model, used, args.out, meta)
    reloaded = load_demo_clip(out)   # evaluate what was written (fp16 round trip)
    ev = evaluate(reloaded, per_class=args.eval_per_class)
    log.info("wrote %s (%.2f MB); pretraining took %.0f s (%.0f CPU-s); zero-shot accuracy on the demo "
             "test classes (base/new halves; demo style and pretraining style): %s", out,
             out.stat().st_size / 2**20, meta["seconds"], meta["cpu_seconds"],
             {k: round(v, 3) for k, v in ev.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
