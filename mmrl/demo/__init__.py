"""The embedded demo: a synthetic benchmark and a tiny CLIP pretrained on its world.

* :mod:`mmrl.demo.world` — coloured, patterned shapes; ``ensure_demo_dataset()`` writes the
  Demo dataset (``images/<class>/<n>.png`` + ``split_zhou_Demo.json``) on first use.
* :mod:`mmrl.demo.pretrain` — ``python -m mmrl.demo.pretrain --out mmrl/resources/demo_clip.pt``
  rebuilds the shipped weights (a few minutes on a CPU).
* :mod:`mmrl.clip.demo_weights` — ``load_demo_clip()``: the shipped CLIP as an open_clip model
  (backbone name ``demo-tiny``); it lives with the other backbones, so ``clip`` never imports ``demo``.
"""


def __getattr__(name):  # lazy: importing mmrl.demo.world must not pull in torch
    if name == "ensure_demo_dataset":
        from mmrl.demo.world import ensure_demo_dataset
        return ensure_demo_dataset
    raise AttributeError(name)
