"""The CUDA paths: precisions, the graphed training step, shared evaluation, checkpoints across devices.

Marked ``cuda``: skipped where no GPU is visible (CI), run by ``bench/gpu.sh`` on a GPU machine.
"""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch

import mmrl
from mmrl.engine.precision import autocast_context
from mmrl.engine.run import main as run_main
from mmrl.engine.train_step import TrainStep, build_adamw
from mmrl.models.mmrl import ArchSpec, Behaviour, MultiModalRepresentationLearner
from mmrl.models.prompts import Prompts
from mmrl.models.reference import ReferenceMMRL
from engine_helpers import argv as engine_argv, final_state, logits, make_losses_nan, record, write_eurosat

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

CUDA = torch.device("cuda")
EUROSAT = ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Sea or Lake"]
# 40 ImageNet names: two text length groups, not in class order (the plan's scatter runs)
IMAGENET40 = (Path(mmrl.__file__).parent / "resources" / "imagenet_clip_classnames.txt").read_text().splitlines()[:40]


@pytest.fixture(autouse=True)
def _exact_fp32():
    """fp32 means fp32 (no TF32), so fp32 comparisons measure only summation order."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def make(clip, trainer="MMRL", rep_dim=512, seed=1, names=EUROSAT):
    torch.manual_seed(seed)
    m = MultiModalRepresentationLearner(ArchSpec(trainer=trainer, rep_dim=rep_dim), clip,
                                        Prompts.build(names, "a centered satellite photo of {}."),
                                        Behaviour(alpha=0.7, beta=0.7, reg_weight=0.5))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # off the init: zeros in B would hide errors
        for p in m.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return m.to(CUDA)


def loss_logits_grads(model, images, labels, prec):
    params = [p for p in model.parameters() if p.requires_grad]
    with autocast_context(prec, CUDA):
        out = model.forward_train(images, labels)
    loss, fused = out[0], out[1]
    return loss.float(), fused.float(), [g.float() for g in torch.autograd.grad(loss, params)]


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_fast_path_equals_reference_in_every_precision(vitb16_clip, trainer):
    """fp32: the fast path equals the straightforward computation up to summation order (1e-4,
    as on the CPU). amp / bf16: both round, differently; the criterion is that the fast path is
    as accurate as the reference in that precision: its distance to the exact (fp32 reference)
    result is at most twice the reference's own, plus a floor of one rounding step of the
    format at the logits' scale (100 x cosine)."""
    clip = copy.deepcopy(vitb16_clip).to(CUDA)
    model = make(clip, trainer)
    ref = ReferenceMMRL(model)
    g = torch.Generator().manual_seed(6)
    images = torch.randn(4, 3, 224, 224, generator=g).to(CUDA)
    labels = torch.tensor([0, 3, 4, 1], device=CUDA)
    exact = loss_logits_grads(ref, images, labels, "fp32")
    fast32 = loss_logits_grads(model, images, labels, "fp32")
    assert abs(fast32[0] - exact[0]) < 1e-4
    assert (fast32[1] - exact[1]).abs().max() < 1e-4
    for gf, ge in zip(fast32[2], exact[2]):
        assert (gf - ge).norm() / ge.norm().clamp_min(1e-12) < 1e-4

    for prec, eps in (("amp", 2.0 ** -10), ("bf16", 2.0 ** -7)):
        fast, refp = loss_logits_grads(model, images, labels, prec), loss_logits_grads(ref, images, labels, prec)
        floor = 100 * eps
        assert abs(fast[0] - exact[0]) <= 2 * abs(refp[0] - exact[0]) + eps, prec
        err_fast, err_ref = (fast[1] - exact[1]).abs().max(), (refp[1] - exact[1]).abs().max()
        assert err_fast <= 2 * err_ref + floor, f"{prec}: logits off by {err_fast:.3g} (reference {err_ref:.3g})"
        for i, (gf, gr, ge) in enumerate(zip(fast[2], refp[2], exact[2])):
            rel_f = (gf - ge).norm() / ge.norm().clamp_min(1e-12)
            rel_r = (gr - ge).norm() / ge.norm().clamp_min(1e-12)
            assert rel_f <= 2 * rel_r + 4 * eps, f"{prec}: gradient {i} off by {rel_f:.3g} (reference {rel_r:.3g})"


def _steps(tiny_clip, prec, graphs, n=6, init_scale=2.0 ** 16, names=EUROSAT, batch=4):
    model = make(copy.deepcopy(tiny_clip).to(CUDA), rep_dim=48, names=names)
    opt = build_adamw([p for p in model.parameters() if p.requires_grad], CUDA, lr=1e-3, weight_decay=0.01)
    scaler = torch.amp.GradScaler("cuda", enabled=prec == "amp", init_scale=init_scale)
    step = TrainStep(model, opt, scaler, prec, CUDA, graphs=graphs)
    g = torch.Generator().manual_seed(0)
    losses = []
    for i in range(n):
        if i == 3:
            step.new_epoch()  # the lr changes between epochs: the graph is captured again
            for group in opt.param_groups:
                group["lr"] = 5e-4
        images = torch.randn(batch, 3, 224, 224, generator=g).to(CUDA)
        labels = torch.randint(0, len(names), (batch,), generator=g).to(CUDA)
        losses.append(float(step(images, labels)[0]))
    return model, step, scaler, losses


@pytest.mark.parametrize("names,batch", [(EUROSAT, 4), (IMAGENET40, 32)], ids=["5cls-b4", "40cls-b32"])
@pytest.mark.parametrize("prec", ["fp32", "amp", "bf16"])
def test_graphed_steps_equal_eager_steps(tiny_clip, prec, names, batch):
    eager, _, _, l_eager = _steps(tiny_clip, prec, graphs=False, names=names, batch=batch)
    graphed, step, _, l_graph = _steps(tiny_clip, prec, graphs=True, names=names, batch=batch)
    assert step.graphs and step.replays == 4  # steps 2, 3 (epoch 1) and 5, 6 (epoch 2)
    assert l_eager == l_graph
    for (name, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after graphed steps"


def baseline_steps(tiny_clip, trainer, prec, graphs, device=CUDA, n=6, names=EUROSAT, batch=4):
    """``n`` SGD steps of a baseline built as the engine builds it (its official initial tensors)."""
    from mmrl.config import get_default_config
    from mmrl.engine.schedule import build_sgd
    from mmrl.trainers import BuildContext, registry
    cfg = get_default_config(trainer)
    cfg.TRAINER.NAME, cfg.MODEL.BACKBONE.NAME, cfg.DATASET.NAME = trainer, "tiny-test", "EuroSAT"
    cfg.OPTIM.NAME, cfg.OPTIM.LR = "sgd", 2e-3
    clip = copy.deepcopy(tiny_clip).to(device)
    torch.manual_seed(1)
    method = registry.get(trainer)
    model = method.build(BuildContext(cfg, names, "a photo of a {}.", device, lambda name: clip), for_training=True)
    opt = build_sgd(method.trainable_parameters(model), device, cfg.OPTIM)
    scaler = torch.amp.GradScaler(device.type, enabled=prec == "amp")
    step = TrainStep(model, opt, scaler, prec, device, graphs=graphs)
    g = torch.Generator().manual_seed(0)
    losses = []
    for i in range(n):
        if i == 3:
            step.new_epoch()
            for group in opt.param_groups:
                group["lr"] = 1e-3
        images = torch.randn(batch, 3, 224, 224, generator=g).to(device)
        labels = torch.randint(0, len(names), (batch,), generator=g).to(device)
        losses.append(float(step(images, labels)[0]))
    return model, step, losses


@pytest.mark.parametrize("trainer,prec,names,batch", [
    pytest.param(t, p, names, b, id=f"{t}-{p}-{len(names)}cls-b{b}")
    for t, p, names, b in [(t, p, EUROSAT, 4) for t in ("CoOp", "CoCoOp", "KgCoOp", "IVLP", "MaPLe", "PromptSRC")
                           for p in ("fp32", "amp")]
    + [("CoOp", "amp", IMAGENET40, 32), ("PromptSRC", "amp", IMAGENET40, 32)]])
def test_baselines_graphed_sgd_steps_equal_eager_steps(tiny_clip, trainer, prec, names, batch):
    eager, _, l_eager = baseline_steps(tiny_clip, trainer, prec, graphs=False, names=names, batch=batch)
    graphed, step, l_graph = baseline_steps(tiny_clip, trainer, prec, graphs=True, names=names, batch=batch)
    assert step.report()["optimizer"] == "SGD (fused)" and step.replays == 4
    assert l_eager == l_graph
    for (name, a), b in zip(eager.state_dict().items(), graphed.state_dict().values()):
        assert torch.equal(a, b), f"{trainer}: {name} differs after graphed steps"


@pytest.mark.parametrize("graphs", [False, True])
def test_fused_sgd_after_skipped_first_steps_equals_the_reference(graphs):
    """The scaler skips the first two steps: fused SGD keeps no momentum from them, and the graph
    is captured only after SGD's first applied step (step 3 eager, captured at 4, 5 and 6 replayed)."""
    from test_train_step import TinyClassifier, assert_same_sgd_state, batches, reference_sgd_run
    data, overflow_at = batches(6, CUDA), {0, 1}
    model = TinyClassifier().to(CUDA)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0 ** 8)
    step = TrainStep(model, opt, scaler, "fp32", CUDA, graphs=graphs)
    for i, (x, y) in enumerate(data):
        model.overflow = i in overflow_at  # read when the hook runs: eager steps only
        step(x, y)
    assert step.replays == (3 if graphs else 0)
    ref, ref_opt, ref_scaler = reference_sgd_run(data, overflow_at, "cuda")
    assert scaler.get_scale() == ref_scaler.get_scale() == 2.0 ** 6
    assert_same_sgd_state(model, opt, ref, ref_opt)


@pytest.mark.parametrize("graphs", [False, True])
def test_amp_overflow_skips_the_step_and_backs_off_the_scale(tiny_clip, graphs):
    start = make(copy.deepcopy(tiny_clip).to(CUDA), rep_dim=48).state_dict()
    model, step, scaler, losses = _steps(tiny_clip, "amp", graphs, n=3, init_scale=2.0 ** 100)
    assert all(np.isfinite(losses))
    for name, value in model.state_dict().items():
        assert torch.equal(value, start[name]), f"{name} changed although every step overflowed"
    assert scaler.get_scale() == 2.0 ** 97  # halved at each of the three skipped steps


# -- the engine on CUDA ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_eurosat(tmp_path_factory)


def argv(root, out, *named, seed=1, subsample="base", opts=()):
    """Two loader workers: their pin-memory thread runs while a graph is captured."""
    return engine_argv(root, out, *named, seed=seed, subsample=subsample,
                       opts=["DATALOADER.NUM_WORKERS", "2", "TEST.SAVE_LOGITS", "True", *opts])


@pytest.mark.parametrize("prec", ["amp", "bf16"])
def test_training_runs_on_cuda_graphed_and_eager_alike(data_root, tmp_path, prec):
    runs = {}
    for graphs in (True, False):
        out = tmp_path / f"train_graph{graphs}"
        assert run_main(argv(data_root, out, opts=["TRAINER.MMRL.PREC", prec, "TRAIN.CUDA_GRAPH", str(graphs)])) == 0
        rec = record(out)
        assert rec["precision"] == {"requested": prec, "used": prec, "test_requested": "fp32", "test_used": "fp32"}
        assert rec["env"]["cuda_available"] and rec["train_step"]["optimizer"] == "AdamW (fused)"
        assert rec["train_step"]["cuda_graph"] is graphs and (rec["train_step"]["replayed_steps"] > 0) is graphs
        runs[graphs] = out
    a, b = final_state(runs[True]), final_state(runs[False])
    for k in a:
        assert torch.equal(a[k], b[k]), k
    np.testing.assert_array_equal(logits(runs[True]), logits(runs[False]))


def test_nan_loss_fails_the_run_on_cuda(data_root, tmp_path, monkeypatch):
    make_losses_nan(monkeypatch)
    out = tmp_path / "nan"
    assert run_main(argv(data_root, out, opts=["TRAINER.MMRL.PREC", "amp"])) == 1
    rec = record(out)
    assert rec["status"] == "failed" and "loss became nan" in rec["error"] and rec["metrics"] is None


def test_checkpoints_cross_devices_and_eval_many_equals_single_runs(data_root, tmp_path):
    from mmrl.engine.run import main_many
    cuda_train, cpu_train = tmp_path / "train_cuda", tmp_path / "train_cpu"
    assert run_main(argv(data_root, cuda_train, opts=["TRAINER.MMRL.PREC", "amp"])) == 0
    assert run_main(argv(data_root, cpu_train, seed=2, opts=["USE_CUDA", "False"])) == 0
    # written on CUDA, evaluated on the CPU; written on the CPU, evaluated on CUDA: same logits
    for train, seed in ((cuda_train, 1), (cpu_train, 2)):
        on = {}
        for device in ("cuda", "cpu"):
            out = tmp_path / f"eval_{train.name}_{device}"
            assert run_main(argv(data_root, out, "--eval-only", "--model-dir", str(train), seed=seed, subsample="new",
                                 opts=["USE_CUDA", str(device == "cuda")])) == 0
            on[device] = logits(out)
        np.testing.assert_allclose(on["cuda"], on["cpu"], atol=1e-3)
    # eval-many (one shared pass on CUDA) equals the single evaluations on CUDA
    many = [argv(data_root, tmp_path / f"many{s}", "--eval-only", "--model-dir", str(t), seed=s, subsample="new")
            for s, t in ((1, cuda_train), (2, cpu_train))]
    assert main_many(many) == [0, 0]
    for s, t in ((1, cuda_train), (2, cpu_train)):
        np.testing.assert_allclose(logits(tmp_path / f"many{s}"), logits(tmp_path / f"eval_{t.name}_cuda"),
                                   rtol=0, atol=1e-5)
        assert record(tmp_path / f"many{s}")["precision"]["test_used"] == "fp32"


@pytest.mark.parametrize("prec", ["fp32", "amp"])
def test_a_run_begun_on_the_cpu_resumes_on_cuda_with_graphed_fused_steps(data_root, tmp_path, monkeypatch, prec):
    """The resume file holds the CPU's plain AdamW groups (and, for amp, which is fp32 there, no
    grad scaler state); on CUDA the run continues with the fused, capturable optimiser and, for
    amp, a fresh grad scaler, its steps replayed from CUDA graphs."""
    out = tmp_path / "moved"
    monkeypatch.setenv("MMRL_FAULT_AFTER_EPOCH", "1")
    assert run_main(argv(data_root, out, opts=["TRAINER.MMRL.PREC", prec, "USE_CUDA", "False"])) != 0
    monkeypatch.delenv("MMRL_FAULT_AFTER_EPOCH")
    assert run_main(argv(data_root, out, opts=["TRAINER.MMRL.PREC", prec])) == 0
    rec = record(out)
    assert rec["status"] == "complete" and rec["train_step"]["replayed_steps"] > 0
    assert rec["precision"]["used"] == prec
