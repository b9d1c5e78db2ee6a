"""One training step of a fast model against its straightforward reference: the same loss, the
same training logits and, relative to their size, the same gradient for every trainable tensor."""
import torch


def assert_train_step_matches(model, ref, images, labels, tol=1e-4, *, every_tensor_learns=True):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    loss_f, logits_f, _ = model.forward_train(images, labels)
    grads_f = torch.autograd.grad(loss_f, params)
    loss_r, logits_r = ref.forward_train(images, labels)
    grads_r = torch.autograd.grad(loss_r, params)
    assert abs(loss_f.item() - loss_r.item()) < tol
    assert (logits_f - logits_r).abs().max().item() < tol
    for (name, _), gf, gr in zip(named, grads_f, grads_r):
        if every_tensor_learns:
            assert gr.abs().sum() > 0, f"{name} gets no gradient in the reference"
        rel = ((gf - gr).norm() / gr.norm().clamp_min(1e-12)).item()
        assert rel < tol, f"gradient of {name} differs by {rel:.2e} (relative)"
