"""Reverse-mode differentiation over a normalized program, one step at a time.

For a step ``lhs[I] = Sum over K of body`` each tensor reference ``r[R]`` in
``body`` receives ``grad_r[R] += Sum over (I + K) minus R of grad_lhs[I] * d body / d r``,
where the derivative is an ordinary scalar derivative (each reference stands in
for a scalar symbol).  No Kronecker delta ever appears.  A tensor's adjoint is
emitted as one assignment once every step that reads it has been processed, so
the backward program keeps the structure a person would write.
"""

from __future__ import annotations

import sympy as sp

from symflop.core.indices import fresh_index, instantiate
from symflop.core.model import Component, Role, Tensor, grad_name
from symflop.core.program import Program, Step, ref_indices, ref_name, split_step, tensor_refs
from symflop.errors import ComponentError
from symflop.rewrite.rules import rule, rules

DIFFERENTIABLE = {Role.INPUT, Role.PARAMETER, Role.INTERMEDIATE, Role.OUTPUT}


@rule("power-derivative", "differentiate")
def power_derivative(partial: sp.Expr, ctx) -> sp.Expr | None:
    """d(x**g)/dx is written g*x**(g - 1), not SymPy's g*x**g/x (0/0 at x = 0)."""
    if any(not p.exp.is_Number for p in partial.atoms(sp.Pow)):
        out = sp.powsimp(partial)
        return out if out != partial else None
    return None


def seed_of(c: Component) -> Tensor | None:
    """The upstream gradient a backward pass takes (``None`` for a scalar loss: seed 1)."""
    if c.differentiate is None:
        raise ComponentError(f"component {c.name!r} declares nothing to differentiate")
    out = c.tensors[c.differentiate]
    if out.is_scalar:
        return None
    return Tensor(grad_name(out.name), out.shape, Role.INPUT,
                  doc=f"upstream gradient dL/d{out.name}")


def backward(c: Component, fwd: Program) -> Program:
    """Derive the backward program of ``c.differentiate`` with respect to ``c.wrt``."""
    if c.differentiate is None:
        raise ComponentError(f"component {c.name!r} declares nothing to differentiate")
    tensors = dict(fwd.tensors)
    out = c.differentiate
    for w in c.wrt:
        if tensors[w].role not in DIFFERENTIABLE:
            raise ComponentError(f"{c.name}: cannot differentiate with respect to {w!r}, a "
                                 f"{tensors[w].role.value}; gradients are taken with respect "
                                 "to inputs, parameters and intermediates")
    relevant = _relevant(fwd, out, tensors, c.wrt)
    contributions: dict[str, list[tuple[sp.Expr, tuple, tuple]]] = {}
    steps: list[Step] = []
    seed = seed_of(c)
    if seed is not None:
        tensors[seed.name] = seed

    for step in reversed(fwd.steps):
        if step.lhs not in relevant:
            continue
        if step.lhs == out:
            g = sp.Integer(1) if seed is None else (
                seed.symbol[step.idx] if step.idx else seed.symbol)
        else:
            g = _emit(step.lhs, step.idx, contributions.pop(step.lhs, []), tensors, steps)
            if g is None:
                continue
        _propagate(step, g, tensors, relevant, contributions)

    for w in c.wrt:
        t = tensors[w]
        parts = contributions.pop(w, [])
        idx = parts[0][1] if parts else _default_idx(t)
        if _emit(w, idx, parts, tensors, steps, force=True) is None:
            raise ComponentError(f"gradient of {w!r} could not be emitted")
    return Program("backward", steps, tensors)


def _relevant(fwd: Program, out: str, tensors: dict[str, Tensor], wrt) -> set[str]:
    """Tensors on a path from something in ``wrt`` to ``out``: only they get adjoints."""
    seen_lhs: set[str] = set()
    for s in fwd.steps:
        if s.lhs in seen_lhs and tensors[s.lhs].role in DIFFERENTIABLE:
            raise ComponentError(f"tensor {s.lhs!r} is assigned twice; reverse mode needs "
                                 "each differentiated tensor assigned once")
        seen_lhs.add(s.lhs)
    if out not in seen_lhs:
        raise ComponentError(f"{out!r} is never computed, so it cannot be differentiated")
    depends = set(wrt)  # tensors computed from something in wrt
    for s in fwd.steps:
        if {ref_name(r) for r in tensor_refs(s.body, tensors)} & depends:
            depends.add(s.lhs)
    active = {out}
    for n in range(len(fwd.steps) - 1, -1, -1):
        s = fwd.steps[n]
        if s.lhs not in active:
            continue
        reads = {ref_name(r) for r in tensor_refs(s.body, tensors)}
        later = {t.lhs for t in fwd.steps[n + 1:]}
        if reads & later:
            name = sorted(reads & later)[0]
            raise ComponentError(
                f"{name!r} is read by {s.lhs!r} and assigned again later in the pass; the "
                "backward pass would read the new value: assign the update to another tensor "
                "or write it before the read")
        active |= {r for r in reads if tensors[r].role in DIFFERENTIABLE and r in depends}
    return active


def _propagate(step: Step, g: sp.Expr, tensors, relevant, contributions) -> None:
    refs = [r for r in tensor_refs(step.body, tensors)
            if ref_name(r) in relevant and tensors[ref_name(r)].role in DIFFERENTIABLE]
    stand_in = {r: sp.Dummy(ref_name(r), real=True) for r in refs}
    back = {v: k for k, v in stand_in.items()}
    scalar_body = step.body.xreplace(stand_in)
    for r in refs:
        partial = sp.diff(scalar_body, stand_in[r])
        for rewrite in rules("differentiate", "expr"):  # rules on each local derivative
            partial = rewrite.apply(partial, None) or partial
        if partial == 0:
            continue
        if partial.has(sp.Derivative):
            raise ComponentError(f"cannot differentiate {step.body} with respect to {r}")
        term = g * partial.xreplace(back)
        ridx = ref_indices(r)
        summed = tuple(k for k in step.space if k not in ridx)
        contributions.setdefault(ref_name(r), []).append((term, ridx, summed))


def _emit(name: str, idx: tuple, parts, tensors, steps, force: bool = False):
    """Write ``grad_name[idx] = sum of contributions``; return a reference to it."""
    if not parts and not force:
        return None
    t = tensors[name]
    gname = grad_name(name)
    gt = Tensor(gname, t.shape, Role.INTERMEDIATE if t.role is Role.INTERMEDIATE else Role.OUTPUT,
                doc=f"dL/d{name}")
    tensors[gname] = gt
    taken = {k.name for k in idx}
    terms = []
    for term, ridx, summed in parts:
        terms.append(instantiate(term, ridx, idx, summed, set(taken)))
    rhs = sp.Add(*terms) if terms else sp.Integer(0)
    steps.extend(split_step(gname, idx, rhs, tensors, suffix="part"))
    return gt.symbol[idx] if idx else gt.symbol


def _default_idx(t: Tensor) -> tuple[sp.Idx, ...]:
    taken: set[str] = set()
    return tuple(fresh_index(sp.Idx(f"k{n}", s), taken) for n, s in enumerate(t.shape))
