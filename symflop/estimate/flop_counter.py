"""What torch's FlopCounterMode reports for the same model, per module, forward and backward.

FlopCounterMode counts matrix products and convolutions only (2 FLOPs per
multiply-add); it runs here on meta tensors at the trace's sizes, so no memory is
allocated and nothing is computed.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def _per_module(counter: FlopCounterMode, root: str) -> dict[str, int]:
    out = {}
    for name, ops in counter.get_flop_counts().items():
        if name == "Global":
            continue
        path = "" if name == root else name.removeprefix(root + ".")
        out[path] = int(sum(ops.values()))
    return out


def flop_counter_by_module(model: torch.nn.Module, shape: tuple, hints: dict[str, int],
                           dtype: torch.dtype = torch.float32) -> dict[str, tuple[int, int]]:
    """module path ("" for the model) -> (forward FLOPs, backward FLOPs), modules nested:
    a module's figure includes its children's, as FlopCounterMode reports them."""
    concrete = [hints[s] if isinstance(s, str) else int(s) for s in shape]
    params = {n: p.detach().to("meta").requires_grad_(p.requires_grad)
              for n, p in model.named_parameters()}
    params |= {n: b.to("meta") for n, b in model.named_buffers()}
    x = torch.empty(concrete, device="meta", dtype=dtype)
    root = type(model).__name__
    was_training = model.training
    model.train()
    try:
        # Backward operations are attributed to modules only when their forward ran under
        # the same counter: count the whole step, the forward read off half way.
        with FlopCounterMode(display=False) as step:
            out = torch.func.functional_call(model, params, (x,))
            f = _per_module(step, root)
            first = next(t for t in torch.utils._pytree.tree_flatten(out)[0]
                         if isinstance(t, torch.Tensor))
            first.float().sum().backward()
    finally:
        model.train(was_training)
    s = _per_module(step, root)
    return {k: (f.get(k, 0), s.get(k, 0) - f.get(k, 0)) for k in dict.fromkeys([*f, *s])}
