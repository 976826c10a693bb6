"""Random inputs for a component, drawn from its tensors' roles and facts."""

from __future__ import annotations

import numpy as np

from symflop.core.model import Component, Fact, Role, size_symbol
from symflop.derive import Derivation


def pass_inputs(d: Derivation, pass_name: str) -> tuple[str, ...]:
    return d.sources[pass_name][1].inputs


def external_inputs(c: Component, d: Derivation) -> list[str]:
    """Tensors some pass reads that no earlier pass produced, plus upstream gradients."""
    produced: set[str] = set()
    names: list[str] = []
    for p in d.passes:
        for n in pass_inputs(d, p):
            if n not in produced and n not in names and (n in c.tensors or n.startswith("grad_")):
                names.append(n)
        produced |= set(d.sources[p][1].outputs)
    return names


def tensor_of(c: Component, d: Derivation, name: str):
    for p in d.programs.values():
        if name in p.tensors:
            return p.tensors[name]
    return c.tensors[name]


def random_inputs(c: Component, d: Derivation, dims: dict[str, int], rng: np.random.Generator,
                  hypers: dict[str, float], initial: dict | None = None) -> dict:
    """Values for every tensor the passes read from outside (see ``external_inputs``)."""
    out: dict = {}
    for name in external_inputs(c, d):
        t = tensor_of(c, d, name)
        if t.role is Role.HYPER:
            out[name] = hypers[name] if name in hypers else c.defaults[name]
            continue
        shape = tuple(int(s.subs(_syms(dims))) for s in t.shape)
        out[name] = _draw(t, shape, rng)
    out.update(initial or {})
    return out


def _syms(dims):
    return {size_symbol(k): v for k, v in dims.items()}


def _draw(t, shape, rng):
    if not shape:
        return float(rng.standard_normal())
    if t.has(Fact.ONE_HOT):  # passed as its labels, as torch's cross_entropy takes them
        return rng.integers(0, shape[-1], size=shape[:-1])
    if t.has(Fact.ROWS_SUM_TO_ONE):
        e = np.exp(rng.standard_normal(shape))
        return e / e.sum(axis=-1, keepdims=True)
    x = rng.standard_normal(shape)
    return np.abs(x) if t.has(Fact.NONNEGATIVE) else x


def torch_inputs(c: Component, d: Derivation, ref, dims: dict[str, int], seed: int,
                 dtype, device: str = "cpu", scale: dict | None = None) -> dict:
    """Seeded random inputs as torch tensors, prepared by the component's reference.

    ``scale`` multiplies named inputs (e.g. {"z": 1e4} for extreme logits)."""
    import torch
    rng = np.random.default_rng(seed)
    values = random_inputs(c, d, dims, rng, ref.hypers)
    if ref.prepare:
        values = ref.prepare(values)
    out = {}
    for k, v in values.items():
        if isinstance(v, np.ndarray) and v.dtype.kind == "i":
            v = torch.as_tensor(v, device=device)  # labels stay integers
        elif isinstance(v, np.ndarray):
            v = torch.tensor(v * (scale or {}).get(k, 1.0), dtype=dtype, device=device)
        out[k] = v
    if ref.initial:
        out.update(ref.initial(dims, dtype, device))
    return out
