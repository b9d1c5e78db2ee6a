"""One optimisation step (forward_train, scaled backward, optimizer and grad-scaler step),
eager or replayed from a CUDA graph.

At the protocol's batch of 4 a ViT-B/16 step launches about a thousand small kernels, so on
a GPU the step is bound by the CPU's launch rate, not by the GPU. A CUDA graph records those
launches once and replays them with one call. The replay runs the same kernels on the same
memory as the eager step, so it computes exactly what the eager step computes; nothing in a
step draws random numbers (augmentation happens in the loader).

How the graph is kept exact:
- the optimizer state (AdamW moments, step counts, SGD momentum) and the grad scaler's scale
  exist before capture: the first step of each epoch runs eagerly, the graph is captured at
  the second (later while a skipped step has left SGD without momentum: its first step is
  another kernel);
- the learning rate is a number baked into the optimizer kernels, and it changes only
  between epochs (the scheduler steps in the last batch): each epoch captures anew;
- gradients are produced by the graph (set to None before capture, never zeroed after), and
  the grad scaler's inf/NaN check and scale update are device kernels (fused AdamW takes the
  scale and the found-inf flag itself), so no step needs the host;
- a batch of another shape (a split smaller than one batch) runs eagerly.
If capture fails (an operation that cannot be captured, an old driver), the step warns once
and stays eager: a run is never lost to the speed-up.
"""
from __future__ import annotations

import logging

import torch

from mmrl.engine.precision import autocast_context

log = logging.getLogger("mmrl.engine")


def build_adamw(params, device: torch.device, **hyper) -> torch.optim.AdamW:
    """AdamW; on CUDA its fused, capturable kernel (one launch for all tensors; it applies the
    grad scaler's unscale and inf-skip on the device instead of synchronising). Same update
    rule as the reference's foreach AdamW, other rounding of the last bit."""
    cuda = device.type == "cuda"
    return torch.optim.AdamW(params, fused=cuda, capturable=cuda, **hyper)


KERNEL_FLAGS = ("fused", "capturable", "foreach")


def state_for(optimizer: torch.optim.Optimizer, saved: dict) -> dict:
    """``saved`` (an optimizer state_dict, maybe written on another device) with ``optimizer``'s
    kernel choices, for ``optimizer.load_state_dict``: torch would take the writer's (CUDA's
    fused capturable AdamW on the CPU, the CPU's uncapturable one under a CUDA graph)."""
    groups = [dict(g, **{k: cur[k] for k in KERNEL_FLAGS if k in cur})
              for g, cur in zip(saved["param_groups"], optimizer.param_groups)]
    return {**saved, "param_groups": groups}


def _params_without_momentum(optimizer) -> list[torch.Tensor]:
    """SGD parameters with a gradient but no momentum buffer yet (their next step creates it)."""
    if not isinstance(optimizer, torch.optim.SGD):
        return []
    return [p for group in optimizer.param_groups if group["momentum"] != 0 for p in group["params"]
            if p.grad is not None and "momentum_buffer" not in optimizer.state.get(p, {})]


class TrainStep:
    def __init__(self, model, optimizer, scaler, precision: str, device: torch.device, *, graphs: bool):
        self.model, self.optimizer, self.scaler = model, optimizer, scaler
        self.precision, self.device = precision, device
        self.graphs = graphs and device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None
        self.stream = torch.cuda.Stream(device) if self.graphs else None  # warm-up and capture run here
        self.static: tuple[torch.Tensor, ...] = ()
        self.replays = 0
        self._eager_since_reset = 0
        self._momentum_pending = False  # SGD's first applied step (it initialises momentum) still to come

    def report(self) -> dict:
        """What record.json says about how the steps ran."""
        name = type(self.optimizer).__name__
        fused = bool(self.optimizer.defaults.get("fused"))
        return {"optimizer": f"{name} (fused)" if fused else name, "cuda_graph": self.graphs,
                "replayed_steps": self.replays}

    def new_epoch(self) -> None:
        """The learning rate may have changed: the next graph is captured afresh."""
        self._release()
        self._eager_since_reset = 0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, fused logits) of this batch; parameters are updated."""
        if not self.graphs:
            return self._eager(images, labels)
        if self.graph is not None and images.shape == self.static[0].shape and labels.shape == self.static[1].shape:
            self.static[0].copy_(images, non_blocking=True)
            self.static[1].copy_(labels, non_blocking=True)
            self.graph.replay()
            self.replays += 1
            return self.static[2], self.static[3]
        if self._eager_since_reset == 0 or self.graph is not None or self._momentum_pending:
            # first of the epoch, another shape, or SGD's first applied step
            self._eager_since_reset += 1
            return self._eager(images, labels)
        return self._capture_and_replay(images, labels)

    def _compute(self, images, labels):
        # autocast's cast cache stays on in capture too: the autocast region opens and closes
        # inside the graph, and the cache decides how gradients of a tensor used several times
        # are summed (in the cast's precision with it, in fp32 without), so eager and graphed
        # steps must agree on it; the reference's eager step has it on
        with autocast_context(self.precision, self.device):
            loss, fused, _ = self.model.forward_train(images, labels)
        self.scaler.scale(loss).backward()
        fresh = _params_without_momentum(self.optimizer)
        scale = self.scaler.get_scale() if fresh and self.scaler.is_enabled() else None  # host sync: first steps only
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if scale is not None and self.scaler.get_scale() < scale:  # backed off: the scaler skipped this step
            # fused SGD made the buffers (uninitialised) before its kernel saw the inf flag: forget
            # them, as the reference's skipped step (plain SGD is never called) never makes them
            for p in fresh:
                self.optimizer.state[p].pop("momentum_buffer", None)
        self._momentum_pending = bool(_params_without_momentum(self.optimizer))
        return loss.detach(), fused.detach()

    def _eager(self, images, labels):
        self.optimizer.zero_grad(set_to_none=True)
        if not self.graphs:
            return self._compute(images, labels)
        main = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):  # a graph's warm-up runs on its capture stream
            out = self._compute(images, labels)
        main.wait_stream(self.stream)
        return out

    def _capture_and_replay(self, images, labels):
        static_images, static_labels = images.clone(), labels.clone()
        self.optimizer.zero_grad(set_to_none=True)  # the graph allocates (and then owns) the gradients
        graph = torch.cuda.CUDAGraph()
        failure = None
        try:
            # thread_local: the loader's pin-memory thread may call CUDA while we capture
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                loss, fused = self._compute(static_images, static_labels)
        except Exception as e:  # noqa: BLE001 - any capture failure: fall back, never fail the run
            failure = f"{type(e).__name__}: {e}"  # only the text: the exception holds a half-built autograd graph
        if failure is not None:
            log.warning("CUDA graph capture failed (%s); training continues without CUDA graphs", failure)
            self.graphs = False
            self.optimizer.zero_grad(set_to_none=True)
            # nothing ran, but an enabled grad scaler's bookkeeping saw a half-done step: forget it
            if self.scaler.is_enabled():
                self.scaler._per_optimizer_states.clear()
            return self._eager(images, labels)
        self.graph = graph
        self.static = (static_images, static_labels, loss, fused)
        graph.replay()  # capture records, it does not run: this is the step for this batch
        self.replays += 1
        return loss, fused

    def _release(self) -> None:
        if self.graph is not None:
            self.optimizer.zero_grad(set_to_none=True)
            self.static = ()
            self.graph.reset()
            self.graph = None
