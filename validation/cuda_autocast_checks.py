"""CUDA's autocast run by torch itself, as far as a build without CUDA lets it run.

A model's forward pass on fake CUDA tensors, under CUDA's autocast (its state set
directly: ``torch.autocast("cuda")`` turns itself off without a device), with no
gradient: autograd's graph is what a build without CUDA cannot make (it asks the device
for a stream and the process aborts), and the forward's types do not need it.  Each
operation torch runs is recorded with the type of its first result.  This is the check
of ``symflop.estimate.cuda_autocast``, which traces on the CPU with CUDA's types: both
lists must be the same, operation by operation.  It runs in a child process, because a
kernel that asks for a CUDA device aborts the process instead of raising.

Run:  python -m validation.cuda_autocast_checks MODULE:FACTORY:SHAPE:DTYPE ...
      (SHAPE: sizes joined by "x", e.g. validation.zoo:unet:2x3x32x32:float32;
      prints JSON: per model [[op, dtype], ...])
"""

from __future__ import annotations

import json
import subprocess
import sys

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling
from torch.utils._python_dispatch import TorchDispatchMode


class _Types(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen: list[list[str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace == "aten":
            first = out[0] if isinstance(out, (tuple, list)) else out
            if isinstance(first, torch.Tensor):
                self.seen.append([func.overloadpacket.__name__,
                                  str(first.dtype).removeprefix("torch.")])
        return out


def forward_types(model: torch.nn.Module, shape: tuple[int, ...], dtype: torch.dtype,
                  autocast: torch.dtype = torch.bfloat16) -> list[list[str]]:
    """(operation, type of its first result) of one training-mode forward pass and the
    cross-entropy over the last axis, on fake CUDA tensors under CUDA's autocast."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from symflop.estimate.cuda_autocast import cuda_autocast_state

    fake = FakeTensorMode()
    with fake:
        params = {n: torch.empty_strided(p.shape, p.stride(), dtype=p.dtype, device="cuda")
                  for n, p in [*model.named_parameters(), *model.named_buffers()]}
        x = torch.empty(shape, dtype=dtype, device="cuda")
    model.train()
    record = _Types()
    with cuda_autocast_state(autocast), torch.no_grad(), fake, record:
        out = torch.func.functional_call(model, params, (x,))
        rows = out.reshape(-1, out.shape[-1])     # the estimate's loss, as it calls it
        F.cross_entropy(rows, torch.zeros(rows.shape[:-1], dtype=torch.long,
                                          device="cuda"))
    return record.seen


# what decides no type: views and copies (the trace reshapes the output twice: once for
# the loss, once for its labels), autograd's saved handles, the CPU dropout's buffer
_NO_TYPES = frozenset(("view", "_unsafe_view", "t", "transpose", "permute", "expand",
                       "unsqueeze", "squeeze", "reshape", "clone", "detach", "empty_like",
                       "split"))


def comparable(ops: list[list[str]]) -> list[list[str]]:
    """The operations that decide types, as far as the loss's first read of the
    probabilities: the negative log-likelihood after it is one kernel on CUDA and its
    decomposition in the trace."""
    out = []
    for op, dtype in ops:
        if op in ("nll_loss_forward", "ne"):
            break
        if op not in _NO_TYPES:
            out.append([op, dtype])
    return out


def in_child(models: list[tuple[str, tuple[int, ...], str]]) -> list[list[list[str]]]:
    """``forward_types`` of each (factory spec, input shape, input dtype), in one child
    process."""
    argv = [f"{spec}:{'x'.join(map(str, shape))}:{dtype}" for spec, shape, dtype in models]
    run = subprocess.run([sys.executable, "-m", "validation.cuda_autocast_checks", *argv],  # noqa: S603
                         capture_output=True, text=True, timeout=300, check=False)
    if run.returncode != 0:
        last = run.stderr.strip().splitlines()[-1:] or [""]
        raise RuntimeError(f"on fake CUDA tensors: exit {run.returncode}: {last[0]}")
    return json.loads(run.stdout)


def main(argv: list[str]) -> None:
    from symflop.registry import load_object

    out = []
    for arg in argv:
        module, factory, shape, dtype = arg.split(":")
        model = load_object(f"{module}:{factory}", "a torch model")()
        out.append(forward_types(model, tuple(int(s) for s in shape.split("x")),
                                 getattr(torch, dtype)))
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1:])
