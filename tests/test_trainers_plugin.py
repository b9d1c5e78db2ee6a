"""A method added from outside the package: a linear probe on frozen CLIP image features,
declared and registered in this file alone, trained and evaluated through train.py, swept with
`mmrl sweep` and tabulated with `mmrl table` on the demo world.

Sweep jobs are separate processes: they find this module through $MMRL_PLUGINS (with this
folder on PYTHONPATH) and its YAML in a folder holding only that file ($MMRL_CONFIGS)."""
import csv
import io
import os
import sys
from contextlib import redirect_stdout
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from yacs.config import CfgNode as CN

from mmrl.config import packaged_configs
from mmrl.plugins import ENV
from mmrl.trainers import BuildContext, EvalCheckpoint, Method, register

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent


@dataclass
class ProbeArch:
    backbone: str
    num_classes: int
    dim: int


class Probe(nn.Module):
    def __init__(self, arch: ProbeArch, clip: nn.Module):
        super().__init__()
        self.spec = arch
        object.__setattr__(self, "clip", clip)  # frozen, not saved
        self.head = nn.Linear(arch.dim, arch.num_classes)

    def features(self, images):
        with torch.no_grad():
            return F.normalize(self.clip.encode_image(images).float(), dim=-1)

    def forward_train(self, images, labels):
        logits = self.head(self.features(images))
        return F.cross_entropy(logits, labels), logits, {}

    def forward_eval(self, images, prefix=None):
        return {"class": self.head(self.features(images))}


class LinearProbe(Method):
    name = "LinearProbe"
    display = "Linear probe"
    model_folder = "probe"

    def config_block(self):
        node = CN()
        node.PREC = "fp32"
        return node

    def _model(self, ctx: BuildContext, arch: ProbeArch):
        clip = ctx.backbone(arch.backbone)
        return Probe(arch, clip).to(ctx.device)

    def build(self, ctx, *, for_training):
        clip = ctx.backbone(ctx.cfg.MODEL.BACKBONE.NAME)
        dim = clip.visual.output_dim
        return self._model(ctx, ProbeArch(ctx.cfg.MODEL.BACKBONE.NAME, len(ctx.classnames), dim))

    def build_for_eval(self, ctx, ck: EvalCheckpoint):
        # Evaluating on other classes than trained (new classes) keeps the trained head's shape.
        model = self._model(ctx, ProbeArch(**ck.arch))
        model.load_state_dict(ck.state_dict, strict=True)
        return model

    def arch(self, model):
        return asdict(model.spec)


register(LinearProbe())


@pytest.fixture
def plugin_env(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    probe_dir = configs / "trainers" / "LinearProbe"
    probe_dir.mkdir(parents=True)
    text = (packaged_configs() / "trainers" / "MMRL" / "demo.yaml").read_text()
    text = text.split("TRAINER:")[0] + "TRAINER:\n  LinearProbe:\n    PREC: \"fp32\"\n"
    (probe_dir / "demo.yaml").write_text(text.replace("MAX_EPOCH: 10", "MAX_EPOCH: 1"))
    monkeypatch.setenv("MMRL_CONFIGS", str(configs))
    monkeypatch.setenv(ENV, Path(__file__).stem)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), *sys.path]))
    return configs


def test_a_method_from_one_file_trains_sweeps_and_tabulates(plugin_env, tmp_path, monkeypatch):
    from mmrl.cli import main as cli_main
    monkeypatch.setenv("MMRL_TRAIN_COMMAND", f"{sys.executable} {HERE.parent / 'train.py'}")
    output = tmp_path / "sweep"
    assert cli_main(["sweep", "--protocol", "b2n", "--trainers", "LinearProbe", "--datasets", "demo",
                     "--seeds", "1", "--output", str(output)]) == 0
    train = output / "base2new/train_base/demo/shots_16/LinearProbe/demo/seed1"
    assert (train / "probe" / "model.pth.tar-1").is_file()  # its own model folder, its YAML's epochs
    assert (output / "base2new/test_new/demo/shots_16/LinearProbe/demo/seed1/record.json").is_file()
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli_main(["table", "--protocol", "b2n", "--output", str(output), "--seeds", "1",
                         "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert rows and any("Linear" in " ".join(r.values()) for r in rows), buf.getvalue()
