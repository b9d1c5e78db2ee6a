"""TrainStep's optimiser bookkeeping, on the CPU with the kernels CUDA uses (fused SGD, an enabled
grad scaler): what a GPU run would otherwise be the first to exercise."""
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from mmrl.engine.train_step import TrainStep


class TinyClassifier(nn.Module):
    """forward_train as the methods have it; ``overflow``: the next backward yields inf gradients
    (what an fp16 overflow under a too-large loss scale gives), the loss itself stays finite."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = nn.Parameter(torch.randn(3, 6, generator=g))
        self.bias = nn.Parameter(torch.randn(3, generator=g))
        self.overflow = False
        for p in (self.weight, self.bias):
            p.register_hook(lambda grad: grad * float("inf") if self.overflow else grad)

    def forward_train(self, images, labels):
        logits = F.linear(images, self.weight, self.bias)
        return F.cross_entropy(logits, labels), logits, {}


def batches(n, device="cpu"):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 6, generator=g).to(device), torch.randint(0, 3, (4,), generator=g).to(device))
            for _ in range(n)]


def reference_sgd_run(data, overflow_at, device="cpu"):
    """The reference's loop: plain SGD, the grad scaler skips an overflowing step entirely."""
    model = TinyClassifier().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 8)
    for i, (x, y) in enumerate(data):
        model.overflow = i in overflow_at
        opt.zero_grad(set_to_none=True)
        loss, _, _ = model.forward_train(x, y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return model, opt, scaler


def assert_same_sgd_state(model, opt, ref, ref_opt):
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)
        torch.testing.assert_close(opt.state[p]["momentum_buffer"], ref_opt.state[q]["momentum_buffer"],
                                   rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize("fused", [True, False])
def test_an_sgd_step_skipped_by_the_scaler_leaves_no_momentum(fused):
    """Fused SGD creates its momentum buffers (uninitialised) before the kernel that the scaler's
    inf flag then skips: the next step would add momentum x garbage. The step must leave the
    optimiser as the reference's skipped step does (no buffer), and the run equal the reference's."""
    data = batches(4)
    overflow_at = {0, 1}  # the scaler's first steps are commonly skipped while its scale calibrates
    model = TinyClassifier()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=fused)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 8)
    step = TrainStep(model, opt, scaler, "fp32", torch.device("cpu"), graphs=False)
    for i, (x, y) in enumerate(data):
        model.overflow = i in overflow_at
        step(x, y)
        if i in overflow_at:
            assert all("momentum_buffer" not in opt.state.get(p, {}) for p in model.parameters()), i
    ref, ref_opt, ref_scaler = reference_sgd_run(data, overflow_at)
    assert scaler.get_scale() == ref_scaler.get_scale() == 2.0 ** 6
    assert_same_sgd_state(model, opt, ref, ref_opt)


class HostEvents(TorchFunctionMode):
    """What would stop a CUDA graph from capturing a step, or the step from running on a GPU:
    reads back to the host, and tensors created without a device (they land on the CPU)."""
    FACTORIES = {"zeros", "ones", "arange", "empty", "full", "tensor", "as_tensor", "randn", "rand", "randint",
                 "eye", "linspace"}
    READS = {"item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"}

    def __init__(self):
        super().__init__()
        self.events = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if (name in self.FACTORIES and "device" not in kwargs) or name in self.READS:
            self.events.append(name)
        return func(*args, **kwargs)


def build_method(tiny_clip, trainer):
    """``trainer``'s model for training on 7 classes of two text length groups, on the CPU."""
    import copy

    from mmrl.config import get_default_config
    from mmrl.models.mmrl import ArchSpec, MultiModalRepresentationLearner
    from mmrl.models.prompts import Prompts
    from mmrl.trainers import BuildContext, registry
    names = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark", "electric ray",
             "American robin"]
    clip = copy.deepcopy(tiny_clip)
    torch.manual_seed(1)
    if trainer in ("MMRL", "MMRLpp"):
        return MultiModalRepresentationLearner(ArchSpec(trainer=trainer, rep_dim=48), clip,
                                               Prompts.build(names, "a photo of a {}."))
    cfg = get_default_config(trainer)
    cfg.TRAINER.NAME, cfg.MODEL.BACKBONE.NAME, cfg.DATASET.NAME = trainer, "tiny-test", "EuroSAT"
    return registry.get(trainer).build(BuildContext(cfg, names, "a photo of a {}.", torch.device("cpu"),
                                                    lambda name: clip), for_training=True)


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp", "CoOp", "CoCoOp", "KgCoOp", "IVLP", "MaPLe", "PromptSRC"])
def test_a_steady_training_step_stays_on_the_device(tiny_clip, trainer):
    """After the first step (which builds the cached class plans and frozen features), a whole
    step under autocast, with a fused optimiser and an enabled grad scaler as on CUDA, reads
    nothing back to the host and creates no tensor without a device: a CUDA graph can capture
    it (a host read fails the capture, which then falls back to eager steps)."""
    model = build_method(tiny_clip, trainer)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.AdamW(params, lr=1e-3, fused=True) if trainer.startswith("MMRL")
           else torch.optim.SGD(params, lr=1e-3, momentum=0.9, fused=True))
    step = TrainStep(model, opt, torch.amp.GradScaler("cpu"), "bf16", torch.device("cpu"), graphs=False)
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(2, 3, 224, 224, generator=g), torch.tensor([0, 6])
    model.train()
    step(images, labels)
    spy = HostEvents()
    with spy:
        step(images, labels)
    assert spy.events == []
