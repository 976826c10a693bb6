"""Operation counts of a normalized program, exact and leading-order.

Per step, the body is lowered to an operation tree (``symflop.core.ir``) whose nodes
are each evaluated once over the index space of the indices they depend on.  A
reduction of n terms costs n - 1 additions per output element.  Identical
subexpressions within a step are computed once; across steps only when the
convention asks for it.  A reduction whose body is multiplied by a one-hot
tensor along a reduced axis is a gather: no multiplications by the one-hot
values and no additions along that axis.

The counter produces raw tallies (per kind of operation, plus the number of
multiply-add pairs); a ``Convention`` turns them into FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from symflop.core.ir import Lowerer, Node, step_root
from symflop.core.model import Fact, Role, Tensor
from symflop.core.program import Program, Step
from symflop.cost.conventions import KINDS, Convention


@dataclass(frozen=True)
class Tally:
    """Raw counts: operations per kind and multiply-add pairs, as polynomials."""

    kinds: tuple[tuple[str, sp.Expr], ...]
    fma_pairs: sp.Expr

    def __getitem__(self, kind: str) -> sp.Expr:
        return dict(self.kinds)[kind]

    @staticmethod
    def zero() -> Tally:
        return Tally(tuple((k, sp.Integer(0)) for k in KINDS), sp.Integer(0))

    def __add__(self, other: Tally) -> Tally:
        a, b = dict(self.kinds), dict(other.kinds)
        return Tally(tuple((k, sp.expand(a[k] + b[k])) for k in KINDS),
                     sp.expand(self.fma_pairs + other.fma_pairs))


@dataclass(frozen=True)
class Counts:
    """FLOPs of one pass under one convention."""

    convention: str
    by_kind: dict
    total: sp.Expr
    leading: sp.Expr


def lowerer_for(tensors: dict[str, Tensor]) -> Lowerer:
    def is_tensor(sym: sp.Symbol) -> bool:
        t = tensors.get(sym.name)
        return t is not None and t.role is not Role.HYPER
    return Lowerer(is_tensor)


def tally_program(program: Program, share_across_steps: bool = False) -> list[Tally]:
    """Raw tallies, one per step of ``program``."""
    lower = lowerer_for(program.tensors)
    seen: set = set()
    out = []
    for step in program.steps:
        if not share_across_steps:
            seen = set()
        out.append(_tally_step(step, program.tensors, lower, seen))
        # A value read from a tensor this step overwrites cannot be reused afterwards.
        seen -= {n for n in seen if step.lhs in _reads(n)}
    return out


@lru_cache(maxsize=1 << 16)
def _reads(n: Node) -> frozenset:
    """Names of the tensors a node's value is computed from."""
    if n.op == "ref":
        leaf = n.leaf
        return frozenset({str(leaf.base) if isinstance(leaf, sp.Indexed) else leaf.name})
    return frozenset().union(*(_reads(a) for a in n.args))


def _tally_step(step: Step, tensors, lower: Lowerer, seen: set) -> Tally:
    sizes = {k: k.upper + 1 for k in step.space}
    body, reduce = step.body, step.reduce
    gathered = ()
    if reduce and isinstance(body, sp.Mul):
        body, kept = gather_one_hot(body, reduce, tensors, sizes)
        gathered, reduce = tuple(k for k in reduce if k not in kept), kept
    acc = dict.fromkeys(KINDS, sp.Integer(0))
    pairs = sp.Integer(0)
    fused: set = set()
    new: set = set()  # nodes computed by this step (only they can pair into multiply-adds)
    root = step_root(body, reduce, lower) if step.reduce else lower(body)

    def size(idx) -> sp.Expr:
        return sp.Mul(*[sizes[k] for k in idx])

    def pair(mul: Node, count: sp.Expr) -> None:
        nonlocal pairs
        if mul.op in ("mul", "pow") and mul in new and mul not in fused:
            fused.add(mul)
            pairs += count

    def visit(n: Node) -> None:
        if n in seen:
            return
        seen.add(n)
        new.add(n)
        for a in n.args:
            visit(a)
        if n.op == "sum":
            inner = n.args[0]
            present = [k for k in n.leaf if k in inner.idx]
            adds = size(n.idx) * (size(present) - 1)
            acc["add"] += adds
            if len(present) < len(n.leaf):
                acc["mul"] += size(n.idx)  # a sum over an unused index: times its size
            pair(inner, adds)
            return
        if n.kind is None:
            return
        acc[n.kind] += n.ops * size(n.idx)
        if n.op in ("add", "sub"):
            for a in n.args:
                if a.idx == n.idx and a.op in ("mul", "pow") and a in new and a not in fused:
                    pair(a, size(n.idx))
                    break

    before = set(seen)
    visit(root)
    for n in seen - before:  # computed at one point of a gathered axis only: not reusable
        if n.idx & set(gathered):
            seen.discard(n)
    return Tally(tuple((k, sp.expand(acc[k])) for k in KINDS), sp.expand(pairs))


def gather_one_hot(body: sp.Mul, reduce, tensors, sizes):
    """Sum over c of onehot[..., c] * f  ->  f at one c per output: a gather."""
    for f in body.args:
        if isinstance(f, sp.Indexed) and tensors[str(f.base)].has(Fact.ONE_HOT):
            c = f.indices[-1]
            if c in reduce:
                sizes[c] = sp.Integer(1)
                rest = sp.Mul(*[a for a in body.args if a is not f])
                return rest, tuple(k for k in reduce if k != c)
    return body, reduce


def total_tally(tallies: list[Tally]) -> Tally:
    acc = Tally.zero()
    for t in tallies:
        acc = acc + t
    return acc


def apply_convention(t: Tally, conv: Convention) -> Counts:
    by_kind = {k: t[k] for k in KINDS}
    total = sum((conv.weight(k) * by_kind[k] for k in KINDS), sp.Integer(0))
    if conv.fma_flops == 1:
        by_kind["add"] = sp.expand(by_kind["add"] - t.fma_pairs)
        by_kind["mul"] = sp.expand(by_kind["mul"] - t.fma_pairs)
        by_kind["fma"] = t.fma_pairs
        total -= t.fma_pairs * (conv.weight("add") + conv.weight("mul") - 1)
    total = sp.expand(total)
    return Counts(conv.name, by_kind, total, leading_order(total))


def leading_order(poly: sp.Expr) -> sp.Expr:
    """Terms whose monomial divides no other term's monomial (7*N*d + 2*d -> 7*N*d)."""
    terms = sp.Add.make_args(sp.expand(poly))
    powers = [dict(t.as_coeff_Mul()[1].as_powers_dict()) for t in terms]
    powers = [{k: v for k, v in p.items() if k != 1} for p in powers]

    def divides(a: dict, b: dict) -> bool:
        return a != b and all(b.get(k, 0) >= v for k, v in a.items())

    return sp.Add(*[t for t, p in zip(terms, powers)
                    if not any(divides(p, o) for o in powers)])
