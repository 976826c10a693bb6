"""The estimate's peak memory of a training step against torch's ``MemTracker``.

A real step of each zoo model (``validation.zoo``) runs under
``torch.distributed._tools.mem_tracker.MemTracker``, which records every storage the
step allocates, by category, and the largest moment: once from a fresh optimizer
(the first step: its state is allocated in ``step()``) and once more (the state
exists).  The step is the one the estimate counts: the model, cross-entropy over the
last axis against labels the loop holds, ``backward()``, ``step()``,
``zero_grad(set_to_none=True)``.

Run:  python -m validation.peak_checks [NAME ...]
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F  # noqa: N812 - torch's own spelling

from validation.zoo import ZOO
from validation.zoo_checks import _torch_kernels, model_input

OPTIMIZERS = {  # name -> (the catalogue's optimizer, torch's optimizer of the parameters)
    "adam-for-loop": ("adam", "for-loop", lambda ps: torch.optim.Adam(ps, foreach=False)),
    "adam-foreach": ("adam", "foreach", lambda ps: torch.optim.Adam(ps, foreach=True)),
    "momentum-for-loop": ("momentum", "for-loop", lambda ps: torch.optim.SGD(
        ps, lr=0.01, momentum=0.9, foreach=False)),
}


def measured_peaks(model: torch.nn.Module, x: torch.Tensor, make_optimizer,
                   ) -> list[dict[str, int]]:
    """MemTracker's peak snapshot (category -> bytes, and "Total") of two steps."""
    from torch.distributed._tools.mem_tracker import MemTracker

    optimizer = make_optimizer(model.parameters())
    out = []
    with _torch_kernels(model):
        for _ in range(2):
            tracker = MemTracker()
            with torch.no_grad():
                shape = model(x).shape
            labels = torch.zeros(shape[:-1], dtype=torch.long).reshape(-1)
            tracker.track_external(model, optimizer, x, labels)
            with tracker:
                logits = model(x)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels)
                del logits
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                del loss
            snap = next(iter(tracker.get_tracker_snapshot("peak").values()))
            out.append({str(getattr(k, "value", k)): v for k, v in snap.items()})
    return out


_TRACED: dict = {}   # name -> (model, shape, trace): one trace serves every optimizer


def _estimate(name: str, optimizer: str, implementation: str):
    from symflop.cost.conventions import get_convention
    from symflop.estimate.command import parse_input
    from symflop.estimate.step import _trace, _traced_estimate

    entry = ZOO[name]
    sizes, dtype = dict(entry.sizes), getattr(torch, entry.dtype)
    if name not in _TRACED:
        model, shape = entry.factory(), parse_input(entry.input)
        _TRACED[name] = model, shape, _trace(model, shape, sizes, dtype, "cross-entropy")
    model, shape, traced = _TRACED[name]
    return _traced_estimate(model, shape, sizes, dtype, traced=traced, loss="cross-entropy",
                            optimizer=optimizer, schedule=None,
                            conv=get_convention("default"), checkpoint=(), name=name,
                            optimizer_impl=implementation)


def compare(name: str, which: str) -> list[tuple[str, int, int, dict, dict]]:
    """(step, ours, torch's, our parts, torch's parts) for the first and a later step."""
    catalogue, impl, make = OPTIMIZERS[which]
    est = _estimate(name, catalogue, impl)
    torch.manual_seed(0)
    first, later = measured_peaks(ZOO[name].factory(), model_input(name), make)
    rows = []
    for step, peak, m in (("first", est.first_step_peak, first), ("later", est.peak, later)):
        ours = {k: est.at(v) for k, v in peak.by_category.items()}
        rows.append((step, sum(ours.values()), m["Total"], ours, m))
    return rows


def main(names: list[str]) -> None:
    print(f"{'model':12} {'optimizer':18} {'step':6} {'ours':>12} {'MemTracker':>12} "
          f"{'error':>7}")
    for name in names or list(ZOO):
        if name.startswith("llama2_"):
            continue
        for which in OPTIMIZERS:
            for step, ours, theirs, _o, _t in compare(name, which):
                print(f"{name:12} {which:18} {step:6} {ours:12,} {theirs:12,} "
                      f"{100 * (ours - theirs) / theirs:6.2f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
