"""Whether a checkpoint's copy of the frozen CLIP is the backbone a run evaluates it on.

The official trainers save their whole model, frozen CLIP included, and their evaluation loads
it all: a learned prompt is scored on the CLIP of its file. Where the harness scores it on the
configured backbone instead, that backbone must be the file's: same shapes (ViT-B/32 and
ViT-B/16 have the same widths, so the learned tensors alone fit either) and the same values
(an OpenAI and a LAION ViT-B/16 have the same shapes).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from mmrl.errors import CheckpointError

# Relative to a tensor's largest magnitude. A copy stored in fp16, or averaged in fp16 (PromptSRC's
# aggregation), is within a few fp16 roundings (2^-11 each) of the weights it came from; weights of
# another pretraining differ by about their own magnitude.
SAME_WEIGHTS_RTOL = 2e-3


def check_frozen_match(frozen: Mapping[str, torch.Tensor], backbone: Mapping[str, torch.Tensor], *, source: str,
                       backbone_name: str, values: bool = True, prefix: str = "") -> None:
    """Refuse (CheckpointError) a frozen tensor of the file whose shape, or with ``values`` whose
    values, are not the backbone's; ``frozen`` and ``backbone`` use the same names (``prefix`` is
    the file's name for them, for the message). Names the backbone lacks are not compared."""
    fix = ("the checkpoint was trained on other CLIP weights. Set MODEL.BACKBONE.NAME (and MODEL.BACKBONE.WEIGHTS) "
           "to the ones it was trained with")
    for name, v in frozen.items():
        ref = backbone.get(name)
        if ref is None:
            continue
        if tuple(v.shape) != tuple(ref.shape):
            raise CheckpointError(f"{source}: its frozen {prefix}{name} has shape {tuple(v.shape)}, but backbone "
                                  f"{backbone_name} has {tuple(ref.shape)}: {fix}.")
        if not (values and v.is_floating_point() and v.numel()):
            continue
        v, ref = v.detach().float(), ref.detach().float()
        diff, scale = float((v - ref).abs().max()), float(ref.abs().max())
        if diff > SAME_WEIGHTS_RTOL * scale:
            raise CheckpointError(f"{source}: its frozen {prefix}{name} differs from backbone {backbone_name}'s by up to "
                                  f"{diff:.3g} ({diff / max(scale, 1e-12):.1%} of its largest value): {fix}.")
