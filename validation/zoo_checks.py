"""The zoo (``validation.zoo``) estimated and measured: what ``symflop estimate`` says of
each model beside what torch does in a real training step of it.

For one model, ``check(name)`` gives: the operations left without a cost; the products
and convolutions (2 per multiply-add) against FlopCounterMode's count; the bytes saved
for backward against ``saved_tensors_hooks`` (each storage once); parameters and Adam
state against torch's; the executed operations of a real step, per phase, against the
estimate's (``validation.step_count``).  A model with recurrent layers runs its real step
with oneDNN off (see ``_torch_kernels``).  Run ``python -m validation.zoo_checks [NAME ...]``
for the table.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from symflop.core.ops import KINDS
from symflop.estimate import estimate
from symflop.estimate.trace import onednn_off
from validation.estimate_checks import measure_step
from validation.step_count import step_counts
from validation.zoo import ZOO


@dataclass
class ZooCheck:
    name: str
    unknown: list
    products: int              # 2 x multiply-adds of the estimate, forward + backward
    flop_counter: int          # FlopCounterMode's whole step
    saved: int                 # the estimate's saved-for-backward bytes at the step's sizes
    saved_torch: int           # saved_tensors_hooks, each storage once
    parameters: int
    parameters_torch: int
    state: int
    state_torch: int
    phases: dict = field(default_factory=dict)   # phase -> (estimate, executed, unknown ops)
    integer: tuple = (0, 0)    # work on integers and booleans: (estimate, executed)

    def saved_error(self) -> float:
        return abs(self.saved - self.saved_torch) / self.saved_torch

    def phase_error(self, phase: str) -> float:
        ours, executed, _unknown = self.phases[phase]
        return abs(ours - executed) / executed if executed else float(ours != 0)


def model_input(name: str) -> torch.Tensor:
    """A random input of the real step's sizes (token ids below the vocabulary)."""
    from symflop.estimate.command import parse_input
    entry = ZOO[name]
    sizes = dict(entry.sizes)
    shape = [sizes[s] if isinstance(s, str) else s for s in parse_input(entry.input)]
    torch.manual_seed(1)
    if entry.dtype == "int64":
        return torch.randint(0, 100, shape)
    return torch.randn(shape)


def _torch_kernels(model: torch.nn.Module):
    """oneDNN off for a model with recurrent layers: torch then runs nn.LSTM and nn.GRU
    cell by cell, the program the estimate counts (oneDNN's fused RNN is one operation
    whose arithmetic the dispatcher does not see, with a workspace of its own: the
    estimate says so in a note)."""
    if any(isinstance(m, torch.nn.RNNBase) for m in model.modules()):
        return onednn_off()
    return nullcontext()


def check(name: str, executed: bool = True) -> ZooCheck:
    entry = ZOO[name]
    from symflop.estimate.command import parse_input
    model = entry.factory()
    est = estimate(model, parse_input(entry.input), input_dtype=entry.dtype, use_cache=False)
    sizes = dict(entry.sizes)
    x = model_input(name)
    with _torch_kernels(model):
        step = measure_step(model, x, "adam")
    products = 2 * est.at(est.total("macs_forward") + est.total("macs_backward"))
    fc = sum(est.flop_counter.get("", (0, 0))) if est.flop_counter else -1
    out = ZooCheck(name, est.unknown, products, fc, est.at(est.activation_bytes, **sizes),
                   step.saved_bytes, est.parameters,
                   sum(p.numel() for p in model.parameters()),
                   est.at(est.state_bytes), step.state_bytes)
    if executed:
        with _torch_kernels(model):
            counters = step_counts(model, x, "adam")
        net = [ln for ln in est.lines if ln.what not in ("optimizer", "schedule")]
        for phase in ("forward", "backward"):
            ours = est.at(sum((getattr(ln, phase)[k] for ln in net for k in KINDS), 0),
                          **sizes)
            out.phases[phase] = (ours, sum(counters[phase].by_kind.values()),
                                 sorted({r.op for r in counters[phase].unknown}))
        out.integer = (est.at(sum((ln.integer for ln in net), 0), **sizes),
                       sum(c.integer for c in counters.values()))
    return out


def main(names: list[str]) -> None:
    print(f"{'model':12} {'unknown':>7} {'products':>12} {'FlopCounter':>12} "
          f"{'saved':>11} {'hooks':>11} {'err':>6} {'params':>5} {'state':>5} "
          f"{'fwd err':>8} {'bwd err':>8}  executed unknown")
    for name in names or list(ZOO):
        c = check(name)
        print(f"{name:12} {len(c.unknown):7} {c.products:12,} {c.flop_counter:12,} "
              f"{c.saved:11,} {c.saved_torch:11,} {100 * c.saved_error():5.2f}% "
              f"{'ok' if c.parameters == c.parameters_torch else 'DIFF':>5} "
              f"{'ok' if c.state == c.state_torch else 'DIFF':>5} "
              f"{100 * c.phase_error('forward'):7.2f}% {100 * c.phase_error('backward'):7.2f}%"
              f"  {c.phases['forward'][2] + c.phases['backward'][2]}")


if __name__ == "__main__":
    main(sys.argv[1:])
