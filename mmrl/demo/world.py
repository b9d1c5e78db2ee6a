"""The demo world: coloured, patterned shapes drawn with PIL, deterministic to the byte.

A class is an attribute triple (colour, pattern, shape), named in plain words so a text encoder
can compose it: ``"red striped circle"``. There are two image distributions:

* ``"pretrain"``: what the demo CLIP was pretrained on (:mod:`mmrl.demo.pretrain`): one large,
  roughly centred shape on a plain grey-to-white background, mild noise.
* ``"demo"``: the images of the demo DATASET (train/val/test): the same objects in another
  setting: smaller, off-centre and more rotated, on grey-ish gradient / blotchy / cluttered
  backgrounds, with more noise and finer patterns, and photographed "under another light":
  every object colour's hue is rotated by 14 degrees (orange drifts toward yellow, blue toward
  purple). Zero-shot CLIP is clearly imperfect there (about 56% base / 50% new, 16-way),
  while the information is still in its features, so few-shot adaptation has something to
  learn, and a shift shared by base and new classes can carry over to the new ones.

Pretraining captions cover every attribute word; :data:`CLASSES` (the demo dataset's 32
attribute combinations) are held out of pretraining, so zero-shot recognition of both base
and new classes works by composing words seen in other combinations.

``ensure_demo_dataset()`` writes the dataset like a real one: ``images/<class_folder>/<n>.png``
plus ``split_zhou_Demo.json`` in the CoOp format, into ``$MMRL_CACHE/demo`` (default
``~/.cache/mmrl/demo``), once; later calls only check it.
"""
from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from mmrl.data.fileio import cache_root

# ---------------------------------------------------------------------------------------------
# Attributes and classes

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "green": (44, 160, 44),
    "blue": (31, 90, 220),
    "yellow": (238, 205, 30),
    "purple": (140, 70, 185),
    "orange": (245, 130, 20),
}
PATTERNS: tuple[str, ...] = ("solid", "striped", "dotted", "checkered")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")

IMAGE_SIZE = 64
DATASET_NAME = "Demo"
FOLDER = "demo"
TEMPLATE = "a photo of a {}."
# Bump when the generated images or the split change (the cache folder carries it).
WORLD_VERSION = 1
# images per class written to the demo dataset
N_TRAIN, N_VAL, N_TEST = 20, 6, 50


@dataclass(frozen=True)
class Combo:
    color: str
    pattern: str
    shape: str

    @property
    def name(self) -> str:
        return f"{self.color} {self.pattern} {self.shape}"

    @property
    def folder(self) -> str:
        return self.name.replace(" ", "_")


def all_combos() -> list[Combo]:
    return [Combo(c, p, s) for c in COLORS for p in PATTERNS for s in SHAPES]


def _choose_classes(n: int = 32, seed: int = 7) -> list[Combo]:
    """n attribute combinations; every attribute value occurs in both the base and the new half.

    Deterministic (a fixed seed and a fixed rejection loop): the list is part of the world.
    """
    combos = all_combos()
    rng = np.random.default_rng(seed)
    half = (n + 1) // 2
    while True:
        pick = [combos[i] for i in rng.choice(len(combos), size=n, replace=False)]
        base, new = pick[:half], pick[half:]
        ok = all({getattr(c, a) for c in part} == set(vals)
                 for part in (base, new)
                 for a, vals in (("color", COLORS), ("pattern", PATTERNS), ("shape", SHAPES)))
        if ok:
            return pick


#: The demo dataset's classes in label order: labels 0..15 are the base half, 16..31 new.
CLASSES: list[Combo] = _choose_classes()
CLASSNAMES: list[str] = [c.name for c in CLASSES]


def pretrain_combos() -> list[Combo]:
    """Attribute combinations shown during pretraining: all but the demo classes."""
    held = set(CLASSES)
    return [c for c in all_combos() if c not in held]


# ---------------------------------------------------------------------------------------------
# Captions

CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of a {c} {p} {s}.",
    "a {c} {p} {s}.",
    "a picture of a {c} {p} {s}.",
    "an image of a {p} {c} {s}.",
    "a drawing of a {c} {p} {s}.",
    "this is a {c} {p} {s}.",
    "a {c} {s} with a {p} pattern.",
    "a {p} {s} colored {c}.",
    "a {s} that is {c} and {p}.",
    "the {s} is {c} and {p}.",
    "a {c} {s}, {p}.",
    "a {p} {s} in {c}.",
    "{c} {p} {s}",
    "a {c} {p} {s} on a plain background.",
)


def caption(combo: Combo, template_index: int) -> str:
    t = CAPTION_TEMPLATES[template_index % len(CAPTION_TEMPLATES)]
    return t.format(c=combo.color, p=combo.pattern, s=combo.shape)


def all_texts() -> list[str]:
    """Every text the demo CLIP is meant to read: all captions and the demo prompts."""
    texts = [caption(c, i) for c in all_combos() for i in range(len(CAPTION_TEMPLATES))]
    texts += [TEMPLATE.format(name) for name in CLASSNAMES]
    return texts


# ---------------------------------------------------------------------------------------------
# Rendering

@dataclass(frozen=True)
class Style:
    """How one distribution of images looks (all lengths relative to the image side)."""
    radius: tuple[float, float]        # object "radius"
    center_jitter: float               # max offset of the centre from the middle
    rotation: float                    # max |rotation| in degrees
    background: str                    # "plain" (uniform) or "scene" (gradient / blotches / clutter)
    bg_level: tuple[float, float]      # background grey level range (0-255)
    bg_sat: float                      # max per-channel deviation from grey
    color_jitter: float                # per-channel uniform jitter of the object colour (0-255)
    cast: float                        # max per-channel multiplicative colour cast (0 = none)
    noise: float                       # Gaussian pixel noise std (0-255)
    period: tuple[float, float]        # pattern period in pixels
    blur: float = 0.0                  # max Gaussian blur radius
    clutter: tuple[int, int] = (4, 8)  # number of clutter items (scene backgrounds)
    cast_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)  # fixed per-channel cast of the domain
    hue_shift: float = 0.0             # rotation of the object colours' hue (degrees)
    pattern_tone: float = 0.65         # pattern colour = colour mixed toward white (>0) or black (<0)


STYLES: dict[str, Style] = {
    "pretrain": Style(radius=(0.28, 0.42), center_jitter=0.08, rotation=30.0, background="plain",
                      bg_level=(90.0, 250.0), bg_sat=15.0, color_jitter=14.0, cast=0.0, noise=3.0,
                      period=(8.0, 11.0)),
    "demo": Style(radius=(0.24, 0.36), center_jitter=0.15, rotation=45.0, background="scene",
                  bg_level=(120.0, 230.0), bg_sat=20.0, clutter=(2, 4), color_jitter=14.0, cast=0.0,
                  noise=8.0, period=(6.5, 10.0), hue_shift=14.0),
}

_SS = 4  # supersampling factor of the shape mask


def _shape_polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if shape == "square":
        pts = [(math.cos(a) * r * 1.2, math.sin(a) * r * 1.2) for a in (math.pi / 4 * (2 * k + 1) for k in range(4))]
    elif shape == "triangle":
        pts = [(math.cos(a) * r * 1.25, math.sin(a) * r * 1.25)
               for a in (-math.pi / 2 + 2 * math.pi * k / 3 for k in range(3))]
        pts = [(x, y + 0.2 * r) for x, y in pts]
    elif shape == "star":
        pts = []
        for k in range(10):
            a = -math.pi / 2 + math.pi * k / 5
            rad = r * 1.2 if k % 2 == 0 else r * 0.5
            pts.append((math.cos(a) * rad, math.sin(a) * rad))
    elif shape == "cross":
        w, h = r * 0.38, r * 1.1
        pts = [(-w, -h), (w, -h), (w, -w), (h, -w), (h, w), (w, w), (w, h), (-w, h), (-w, w), (-h, w),
               (-h, -w), (-w, -w)]
    else:
        raise ValueError(shape)
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]


def _shape_mask(shape: str, size: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Anti-aliased alpha mask in [0, 1] (size x size)."""
    big = Image.new("L", (size * _SS, size * _SS), 0)
    d = ImageDraw.Draw(big)
    s = _SS
    if shape == "circle":
        d.ellipse([(cx - r) * s, (cy - r) * s, (cx + r) * s, (cy + r) * s], fill=255)
    else:
        d.polygon([(x * s, y * s) for x, y in _shape_polygon(shape, cx, cy, r, angle)], fill=255)
    small = big.resize((size, size), Image.BOX)
    return np.asarray(small, dtype=np.float32) / 255.0


def _pattern_mask(pattern: str, size: int, cx: float, cy: float, angle: float, period: float) -> np.ndarray:
    """Where the pattern's light colour shows (float in [0, 1]); solid = nowhere."""
    if pattern == "solid":
        return np.zeros((size, size), np.float32)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    x, y = xs - cx, ys - cy
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = x * ca + y * sa, -x * sa + y * ca
    if pattern == "striped":
        ph = (u / period) % 1.0
        m = (ph < 0.5).astype(np.float32)
    elif pattern == "checkered":
        m = ((np.floor(u / period * 2) + np.floor(v / period * 2)) % 2).astype(np.float32)
    elif pattern == "dotted":
        du = (u / period) % 1.0 - 0.5
        dv = (v / period) % 1.0 - 0.5
        m = ((du * du + dv * dv) < 0.28 ** 2).astype(np.float32)
    else:
        raise ValueError(pattern)
    return m


def _background(style: Style, size: int, rng: np.random.Generator) -> np.ndarray:
    lo, hi = style.bg_level
    sat = style.bg_sat
    if style.background == "plain":
        level = rng.uniform(lo, hi)
        tint = rng.uniform(-sat, sat, size=3)
        return np.broadcast_to(level + tint, (size, size, 3)).astype(np.float32).copy()
    kind = int(rng.integers(3))
    if kind == 0:   # gradient between two colours
        a = rng.uniform(lo, hi) + rng.uniform(-sat, sat, size=3)
        b = rng.uniform(lo, hi) + rng.uniform(-sat, sat, size=3)
        t = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
        w = ((xs - 0.5) * math.cos(t) + (ys - 0.5) * math.sin(t) + 0.5).clip(0, 1)[..., None]
        return a * (1 - w) + b * w
    if kind == 1:   # blotchy low-frequency colour noise
        g = int(rng.integers(3, 6))
        grid = rng.uniform(lo, hi, size=(g, g, 1)) + rng.uniform(-sat, sat, size=(g, g, 3))
        img = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8), "RGB").resize((size, size), Image.BICUBIC)
        return np.asarray(img, dtype=np.float32)
    # clutter: a dull base with random rectangles and lines
    base = rng.uniform(lo, hi) + rng.uniform(-sat / 2, sat / 2, size=3)
    img = Image.new("RGB", (size, size), tuple(int(v) for v in np.clip(base, 0, 255)))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(style.clutter[0], style.clutter[1] + 1))):
        col = rng.uniform(lo, hi) + rng.uniform(-sat, sat, size=3)
        col = tuple(int(v) for v in np.clip(col, 0, 255))
        x0, y0 = rng.uniform(-8, size, size=2)
        w, h = rng.uniform(4, 24, size=2)
        if rng.random() < 0.5:
            d.rectangle([x0, y0, x0 + w, y0 + h], fill=col)
        else:
            d.line([x0, y0, x0 + rng.uniform(-30, 30), y0 + rng.uniform(-30, 30)], fill=col,
                   width=int(rng.integers(1, 4)))
    return np.asarray(img, dtype=np.float32)


def render(combo: Combo, rng: np.random.Generator, style: str | Style = "demo",
           size: int = IMAGE_SIZE) -> np.ndarray:
    """One image (size x size x 3, uint8) of ``combo`` drawn in the given style."""
    st = STYLES[style] if isinstance(style, str) else style
    bg = _background(st, size, rng)
    r = rng.uniform(*st.radius) * size
    margin = size / 2 - r * 1.15
    jit = min(st.center_jitter * size, max(margin, 0.0))
    cx, cy = size / 2 + rng.uniform(-jit, jit, size=2)
    angle = math.radians(rng.uniform(-st.rotation, st.rotation))
    period = rng.uniform(*st.period)
    p_angle = angle + (rng.choice([0.0, math.pi / 2]) if combo.pattern == "striped" else 0.0)

    base = COLORS[combo.color]
    if st.hue_shift:
        h, l, sat = colorsys.rgb_to_hls(*(v / 255.0 for v in base))
        base = tuple(v * 255.0 for v in colorsys.hls_to_rgb((h + st.hue_shift / 360.0) % 1.0, l, sat))
    color = np.array(base, np.float32) + rng.uniform(-st.color_jitter, st.color_jitter, size=3)
    t = st.pattern_tone
    light = color * (1 - t) + 255 * t if t >= 0 else color * (1 + t)
    pm = _pattern_mask(combo.pattern, size, cx, cy, p_angle, period)[..., None]
    fill = color * (1 - pm) + light * pm
    alpha = _shape_mask(combo.shape, size, cx, cy, r, angle)[..., None]
    img = bg * (1 - alpha) + fill * alpha
    if st.cast > 0 or any(st.cast_bias):
        img = img * (1 + np.array(st.cast_bias) + rng.uniform(-st.cast, st.cast, size=3)) + rng.uniform(-15, 15)
    if st.noise > 0:
        img = img + rng.normal(0, st.noise, size=img.shape)
    out = Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")
    if st.blur > 0:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0, st.blur)))
    return np.asarray(out)


def image_rng(*key: int) -> np.random.Generator:
    """A generator determined by an integer key (world version, split, class, index...)."""
    return np.random.default_rng([WORLD_VERSION, *key])


# ---------------------------------------------------------------------------------------------
# The demo dataset on disk

SPLIT_IDS = {"train": 1, "val": 2, "test": 3}
SPLIT_FILE = f"split_zhou_{DATASET_NAME}.json"


def default_demo_root() -> Path:
    """The folder holding ``demo/`` (what DATASET.ROOT would be): ``$MMRL_CACHE``."""
    return cache_root()


def split_entries() -> dict[str, list[list]]:
    """The split JSON content: class by class, in label order (like the published files)."""
    out: dict[str, list[list]] = {}
    counts = {"train": N_TRAIN, "val": N_VAL, "test": N_TEST}
    start = 0
    for split, n in counts.items():
        out[split] = [[f"{combo.folder}/{start + i:04d}.png", label, combo.name]
                      for label, combo in enumerate(CLASSES) for i in range(n)]
        start += n
    return out


def write_demo_dataset(dataset_dir: Path) -> None:
    """Write images/ and the split JSON into ``dataset_dir`` (which must not exist yet)."""
    dataset_dir.mkdir(parents=True)
    images = dataset_dir / "images"
    entries = split_entries()
    for label, combo in enumerate(CLASSES):
        (images / combo.folder).mkdir(parents=True)
    for split, rows in entries.items():
        sid = SPLIT_IDS[split]
        per_class: dict[int, int] = {}
        for rel, label, _ in rows:
            i = per_class.get(label, 0)
            per_class[label] = i + 1
            arr = render(CLASSES[label], image_rng(sid, label, i), "demo")
            # PNG without time stamps or metadata: the bytes depend on the pixels only
            Image.fromarray(arr, "RGB").save(images / rel, format="PNG", optimize=False, compress_level=6)
    text = json.dumps(entries, indent=4, separators=(",", ": "))
    (dataset_dir / SPLIT_FILE).write_text(text, encoding="utf-8")
    (dataset_dir / "WORLD_VERSION").write_text(f"{WORLD_VERSION}\n", encoding="utf-8")


def _version(dataset_dir: Path) -> int | None:
    try:
        return int((dataset_dir / "WORLD_VERSION").read_text().strip())
    except (OSError, ValueError):
        return None


def _complete(dataset_dir: Path) -> bool:
    return (dataset_dir / SPLIT_FILE).is_file() and _version(dataset_dir) == WORLD_VERSION


def ensure_demo_dataset(root: str | os.PathLike | None = None) -> Path:
    """The demo dataset folder ``<root>/demo``, generated on first use; returns its path.

    ``root`` defaults to ``$MMRL_CACHE`` (else ``~/.cache/mmrl``), so the folder is
    ``~/.cache/mmrl/demo``. It is built in a temporary sibling folder and renamed into place,
    so concurrent callers and interrupted runs never see half a dataset. A folder written by
    another world version (or incomplete) is replaced.
    """
    root = Path(root).expanduser() if root else default_demo_root()
    dataset_dir = root / FOLDER
    if _complete(dataset_dir):
        return dataset_dir
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=root))
    try:
        write_demo_dataset(tmp / FOLDER)
        if _complete(dataset_dir):          # another process finished first
            return dataset_dir
        if dataset_dir.exists():            # stale version or broken: move it aside, then drop it
            os.rename(dataset_dir, tmp / "old")
        try:
            os.rename(tmp / FOLDER, dataset_dir)
        except OSError:
            if not _complete(dataset_dir):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dataset_dir
