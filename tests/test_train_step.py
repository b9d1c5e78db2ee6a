"""TrainStep's optimiser bookkeeping, on the CPU with the kernels CUDA uses (fused SGD, an enabled
grad scaler): what a GPU run would otherwise be the first to exercise."""
import torch
from torch import nn
from torch.nn import functional as F

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


def test_fused_sgd_step_skipped_by_the_scaler_leaves_no_momentum():
    """Fused SGD creates its momentum buffers (uninitialised) before the kernel that the scaler's
    inf flag then skips: the next step would add momentum x garbage. The step must leave the
    optimiser as the reference's skipped step does (no buffer), and the run equal the reference's."""
    data = batches(4)
    overflow_at = {0, 1}  # the scaler's first steps are commonly skipped while its scale calibrates
    model = TinyClassifier()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=True)
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
