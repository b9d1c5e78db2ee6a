"""Small CLIP architectures with the module structure of the real ones, for tests and the demo.

The real backbones (``ViT-B/16`` and the like) are named and loaded in ``backbone.py``.
"""
from __future__ import annotations

import torch
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

# Small architectures: 12 layers per tower so the default REP_LAYERS [6..12] apply unchanged,
# 77 text positions and the real BPE vocabulary so the real tokenizer works.
TINY_ARCHS = {
    # random init, for fast tests; 224px input so the real YAMLs work unchanged
    "tiny-test": dict(embed_dim=32, image_size=224, patch_size=32, vision_width=64, vision_heads=2,
                      text_width=64, text_heads=2, layers=12),
    # the demo backbone (weights shipped in mmrl/resources/demo_clip.pt)
    "demo-tiny": dict(embed_dim=64, image_size=64, patch_size=16, vision_width=64, vision_heads=4,
                      text_width=64, text_heads=4, layers=12),
}


def build_tiny_clip(name: str) -> CLIP:
    a = TINY_ARCHS[name]
    vision = CLIPVisionCfg(layers=a["layers"], width=a["vision_width"], head_width=a["vision_width"] // a["vision_heads"],
                           patch_size=a["patch_size"], image_size=a["image_size"])
    text = CLIPTextCfg(context_length=77, vocab_size=49408, width=a["text_width"], heads=a["text_heads"],
                       layers=a["layers"])
    with torch.random.fork_rng(devices=[]):  # fixed random weights, caller's stream untouched
        torch.manual_seed(0)
        return CLIP(a["embed_dim"], vision_cfg=vision, text_cfg=text, quick_gelu=True)
