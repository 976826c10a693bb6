"""A real training step, measured, to check ``symflop estimate`` against.

``measure_step`` runs one step of a model on random data with torch itself (forward,
cross-entropy, backward, torch.optim step) and records what the estimate predicts:
the bytes autograd saves for backward (every storage once, parameters and buffers
apart, as ``validation.resnet50.saved_for_backward`` classifies them) and the bytes
of ``optimizer.state`` after the step.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

import torch
from torch.nn.functional import cross_entropy

OPTIMIZERS = {
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3),
    "sgd": lambda ps: torch.optim.SGD(ps, lr=1e-2),
    "momentum": lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9),
    "rmsprop": lambda ps: torch.optim.RMSprop(ps, lr=1e-3),
    "adagrad": lambda ps: torch.optim.Adagrad(ps, lr=1e-2),
}


@dataclass(frozen=True)
class StepMeasurement:
    saved_bytes: int              # storages autograd saved, parameters and buffers excluded
    saved_by_shape: dict          # (shape, dtype) -> bytes, for naming differences
    state_bytes: int              # every tensor in optimizer.state after the step
    loss: float




def measure_step(model: torch.nn.Module, x: torch.Tensor, optimizer: str = "adam",
                 seed: int = 0) -> StepMeasurement:
    """One training step: cross-entropy over the last axis of the output, random labels."""
    torch.manual_seed(seed)
    model.train()
    model.zero_grad(set_to_none=True)  # a step of its own: no gradient to add to
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    buffers = {b.untyped_storage().data_ptr() for b in model.buffers() if b.numel()}
    packed: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> int:
        packed.append(t)
        return len(packed) - 1

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda k: packed[k]):
        out = model(x)
        logits = out.reshape(-1, out.shape[-1])
        labels = torch.randint(0, out.shape[-1], (logits.shape[0],))
        loss = cross_entropy(logits, labels)
    storages: dict[int, tuple[int, tuple, str]] = {}
    for t in packed:
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if st.nbytes() == 0 or ptr in params or ptr in buffers:
            continue
        storages.setdefault(ptr, (st.nbytes(), tuple(t.shape), str(t.dtype)))
    opt = OPTIMIZERS[optimizer](model.parameters())
    loss.backward()
    opt.step()
    state = sum(v.numel() * v.element_size() for s in opt.state.values()
                for v in s.values() if isinstance(v, torch.Tensor))
    by_shape: dict = {}
    for nbytes, shape, dtype in storages.values():
        by_shape[(shape, dtype)] = by_shape.get((shape, dtype), 0) + nbytes
    value = float(loss.detach())
    packed.clear()
    del out, loss
    gc.collect()
    return StepMeasurement(sum(n for n, _, _ in storages.values()), by_shape, state, value)
