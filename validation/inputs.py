"""Random inputs for a component, drawn from its tensors' roles and facts."""

from __future__ import annotations

import numpy as np

from symflop.derive import Derivation
from symflop.model import Component, Fact, Role


def pass_inputs(d: Derivation, pass_name: str) -> tuple[str, ...]:
    return d.sources[pass_name][1].inputs


def random_inputs(c: Component, d: Derivation, dims: dict[str, int], rng: np.random.Generator,
                  hypers: dict[str, float], initial: dict | None = None) -> dict:
    """Arrays for every tensor the first pass reads, plus the upstream gradient if any."""
    first = next(iter(c.passes))
    names = set(pass_inputs(d, first))
    if "backward" in d.passes:
        names |= {n for n in pass_inputs(d, "backward") if n.startswith("grad_")}
    out: dict = {}
    for name in sorted(names):
        t = d.programs["backward" if "backward" in d.programs else first].tensors.get(name) \
            or c.tensors[name]
        if t.role is Role.HYPER:
            out[name] = hypers[name]
            continue
        shape = tuple(int(s.subs({k: v for k, v in _syms(dims).items()})) for s in t.shape)
        out[name] = _draw(t, shape, rng)
    out.update(initial or {})
    return out


def _syms(dims):
    import sympy as sp
    return {sp.Symbol(k, integer=True, positive=True): v for k, v in dims.items()}


def _draw(t, shape, rng):
    if not shape:
        return float(rng.standard_normal())
    if t.has(Fact.ONE_HOT):
        labels = rng.integers(0, shape[-1], size=shape[:-1])
        return np.eye(shape[-1])[labels]
    if t.has(Fact.ROWS_SUM_TO_ONE):
        e = np.exp(rng.standard_normal(shape))
        return e / e.sum(axis=-1, keepdims=True)
    x = rng.standard_normal(shape)
    return np.abs(x) if t.has(Fact.NONNEGATIVE) else x
