"""SGD (the CoOp family's optimiser) under the protocol's warm-up + cosine schedule (baselines.md §1.5)."""
import math

import pytest
import torch

from mmrl.config import get_default_config
from mmrl.engine.schedule import build_protocol_optimizer
from mmrl.errors import ConfigError


def optim_node(name="sgd", lr=0.002, epochs=200):
    optim = get_default_config().OPTIM
    optim.NAME, optim.LR, optim.MAX_EPOCH = name, lr, epochs
    optim.LR_SCHEDULER, optim.WARMUP_EPOCH, optim.WARMUP_TYPE, optim.WARMUP_CONS_LR = "cosine", 1, "constant", 1e-5
    return optim


def epoch_lrs(optim, n):
    opt, sched = build_protocol_optimizer([torch.nn.Parameter(torch.zeros(3))], optim, torch.device("cpu"))
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()  # once per epoch, after the epoch's last step
    return opt, lrs


def test_sgd_has_dassls_defaults_in_one_group():
    opt, _ = epoch_lrs(optim_node(), 1)
    assert isinstance(opt, torch.optim.SGD) and len(opt.param_groups) == 1
    g = opt.param_groups[0]
    assert (g["momentum"], g["dampening"], g["nesterov"], g["weight_decay"]) == (0.9, 0, False, 5e-4)


def test_sgd_schedule_is_constant_warmup_then_cosine():
    _, lrs = epoch_lrs(optim_node(lr=0.002, epochs=200), 200)
    assert lrs[0] == 1e-5
    for e in range(2, 201):
        assert math.isclose(lrs[e - 1], 0.5 * 0.002 * (1 + math.cos(math.pi * (e - 2) / 200)), rel_tol=1e-12)
    # the spec's per-epoch values of a 5-epoch SGD config (MaPLe B2N, LR 0.0035)
    _, lrs = epoch_lrs(optim_node(lr=0.0035, epochs=5), 5)
    for got, want in zip(lrs, (1e-5, 3.5e-3, 3.1658e-3, 2.2908e-3, 1.2092e-3)):
        assert math.isclose(got, want, rel_tol=1e-4)


def test_sgd_update_is_momentum_with_coupled_weight_decay():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt, sched = build_protocol_optimizer([p], optim_node(lr=0.1, epochs=10), torch.device("cpu"))
    sched.step()  # epoch 2: lr = 0.1
    grads = [torch.tensor([0.5, 0.25]), torch.tensor([-1.0, 2.0])]
    want, buf = p.detach().clone(), None
    for g in grads:
        d = g + 5e-4 * want
        buf = d if buf is None else 0.9 * buf + d
        want = want - 0.1 * buf
        p.grad = g.clone()
        opt.step()
    assert torch.allclose(p.detach(), want, atol=1e-7)


def test_other_optimisers_are_refused():
    with pytest.raises(ConfigError, match="'rmsprop'"):
        epoch_lrs(optim_node(name="rmsprop"), 1)
