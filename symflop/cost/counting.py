"""Operation counts of a normalized program, exact and leading-order.

Per step, the body is lowered to an operation tree (``symflop.core.ir``) whose
nodes are each evaluated once over the index space of the indices they depend
on.  A reduction of n terms costs n - 1 additions (a maximum n - 1 compares)
per output element.  Identical subexpressions within a step are computed once;
sharing across steps is a rewrite of the program (``symflop.rewrite``), never a
counting rule, so the code computes what is counted.  An index fixed at a
one-hot tensor's label (a gather or a scatter) has size one; a scatter adds its
values into its base at one position per row.

A step's work is a list of ``Term``s (a kind, a coefficient and the indices
whose sizes multiply it), cached per step: summed symbolically they give the
exact polynomials, summed at concrete sizes they give the numeric cost the
rewrite rules minimise.  The counter produces raw tallies (per kind of
operation, plus the multiply-add pairs a fused multiply-add would execute as
one); a ``Convention`` turns them into FLOPs.  Work on values that read no
tensor (hyperparameters and sizes only) is tallied apart as ``host`` work: the
generated code computes it once in Python numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from symflop.core.ir import Lowerer, Node, step_root
from symflop.core.model import Role, Tensor
from symflop.core.program import Program, Step, host_scalars
from symflop.cost.conventions import KINDS, Convention

PAIRS = ("fma",)  # multiply-add pairs: a multiplication feeding an addition


@dataclass(frozen=True)
class Term:
    """``coef`` operations of ``kind`` per point of the index space ``idx``."""

    kind: str
    coef: int
    idx: frozenset
    host: bool


@dataclass(frozen=True)
class Tally:
    """Raw counts: operations per kind, multiply-add pairs, and host work, as polynomials."""

    kinds: tuple[tuple[str, sp.Expr], ...]
    pairs: tuple[tuple[str, sp.Expr], ...] = ()
    host: tuple[tuple[str, sp.Expr], ...] = ()

    def __getitem__(self, kind: str) -> sp.Expr:
        return dict(self.kinds)[kind]

    @staticmethod
    def zero() -> Tally:
        z = sp.Integer(0)
        return Tally(tuple((k, z) for k in KINDS), tuple((k, z) for k in PAIRS),
                     tuple((k, z) for k in KINDS))

    def __add__(self, other: Tally) -> Tally:
        def add(a, b, keys):
            da, db = dict(a), dict(b)
            return tuple((k, sp.expand(da.get(k, 0) + db.get(k, 0))) for k in keys)
        return Tally(add(self.kinds, other.kinds, KINDS), add(self.pairs, other.pairs, PAIRS),
                     add(self.host, other.host, KINDS))


@dataclass(frozen=True)
class Counts:
    """FLOPs of one pass under one convention; ``host`` is the raw work in Python numbers."""

    convention: str
    by_kind: dict
    total: sp.Expr
    leading: sp.Expr
    host: dict | None = None

    def _repr_latex_(self) -> str:
        """A table of the counts by kind (Jupyter renders this)."""
        rows = [rf"\text{{{k}}} & {sp.latex(v)}\\" for k, v in self.by_kind.items()
                if v != 0]
        rows += [r"\hline", rf"\text{{FLOPs ({self.convention})}} & {sp.latex(self.total)}"
                 r"\\", rf"\text{{leading order}} & {sp.latex(self.leading)}"]
        return r"$$\begin{array}{lr}" + "\n".join(rows) + r"\end{array}$$"


def tensor_names(tensors: dict[str, Tensor]) -> frozenset[str]:
    """Names that stand for tensors in equations (hyperparameters are constants)."""
    return frozenset(n for n, t in tensors.items() if t.role is not Role.HYPER)


def program_names(program: Program) -> frozenset[str]:
    """The names that stand for arrays in ``program``'s steps: its tensors, less the scalar
    ones it computes as Python numbers (``symflop.core.program.host_scalars``)."""
    return tensor_names(program.tensors) - host_scalars(program)


def lowerer_for(tensors: dict[str, Tensor] | frozenset[str]) -> Lowerer:
    names = tensors if isinstance(tensors, frozenset) else tensor_names(tensors)
    return Lowerer(lambda sym: sym.name in names)


@lru_cache(maxsize=1 << 15)
def step_terms(step: Step, names: frozenset[str]) -> tuple[Term, ...]:
    """The work of one step, as terms (see the module docstring)."""
    lower = lowerer_for(names)
    root = step_root(step, lower)
    labelled = set(step.labelled)
    terms: list[Term] = []
    seen: set = set()
    fused: set = set()

    def space(idx) -> frozenset:
        return frozenset(k for k in idx if k not in labelled)

    def add(kind: str, coef: int, idx, host: bool) -> None:
        terms.append(Term(kind, coef, space(idx), host))

    def pair(producer: Node, *parts: tuple[int, frozenset]) -> None:
        """``producer`` feeds an addition: one multiply-add pair per addition it feeds."""
        if producer.op in ("mul", "pow") and producer not in fused:
            fused.add(producer)
            for coef, idx in parts:
                add("fma", coef, idx, False)

    def visit(n: Node) -> None:
        if n in seen:
            return
        seen.add(n)
        for a in n.args:
            visit(a)
        host = not n.reads_tensor
        if n.op in ("sum", "amax"):
            inner = n.args[0]
            present = [k for k in n.leaf if k in inner.idx]
            absent = [k for k in n.leaf if k not in inner.idx and k not in labelled]
            kind = "add" if n.op == "sum" else "compare"
            add(kind, 1, n.idx | set(present), host)  # n - 1 per output element
            add(kind, -1, n.idx, host)
            if absent and n.op == "sum":
                add("mul", 1, n.idx, host)  # a sum over an unused index: times its size
            if n.op == "sum":
                pair(inner, (1, n.idx | set(present)), (-1, n.idx))
            return
        if n.kind is None:
            return
        add(n.kind, n.ops, n.idx, host)
        if n.op in ("add", "sub"):
            for a in n.args:
                if a.idx != n.idx:
                    continue
                if a.op == "div" and a.args[0].op == "mul" and a.args[0].idx == n.idx:
                    a = a.args[0]  # c*a/b + d runs as c*(a/b) + d: the multiply fuses
                if a.op in ("mul", "pow") and a not in fused:
                    pair(a, (1, n.idx))
                    break

    visit(root)
    if step.scatter is not None:
        add("add", 1, step.idx, False)  # each value is added into the base at its label
    return tuple(terms)


def _size(idx: frozenset) -> sp.Expr:
    return sp.Mul(*[k.upper + 1 for k in idx])


def _sum(terms, keep) -> sp.Expr:
    return sp.expand(sp.Add(*[t.coef * _size(t.idx) for t in terms if keep(t)]))


def tally_step(step: Step, names: frozenset[str]) -> Tally:
    terms = step_terms(step, names)
    return Tally(tuple((k, _sum(terms, lambda t, k=k: t.kind == k)) for k in KINDS),
                 tuple((k, _sum(terms, lambda t, k=k: t.kind == k)) for k in PAIRS),
                 tuple((k, _sum(terms, lambda t, k=k: t.kind == k and t.host)) for k in KINDS))


def tally_program(program: Program) -> list[Tally]:
    """Raw tallies, one per step of ``program``."""
    names = program_names(program)
    return [tally_step(step, names) for step in program.steps]


def total_tally(tallies: list[Tally]) -> Tally:
    acc = Tally.zero()
    for t in tallies:
        acc = acc + t
    return acc


def apply_convention(t: Tally, conv: Convention) -> Counts:
    by_kind = {k: t[k] for k in KINDS}
    total = sum((conv.weight(k) * by_kind[k] for k in KINDS), sp.Integer(0))
    if conv.fma_flops == 1:
        pairs = dict(t.pairs).get("fma", sp.Integer(0))
        by_kind["add"] = sp.expand(by_kind["add"] - pairs)
        by_kind["mul"] = sp.expand(by_kind["mul"] - pairs)
        by_kind["fma"] = sp.expand(pairs)
        total -= pairs * (conv.weight("add") + conv.weight("mul") - 1)
    total = sp.expand(total)
    return Counts(conv.name, by_kind, total, leading_order(total), dict(t.host))


# -- numeric cost: what the rewrite rules minimise ------------------------------------

def numeric_sizes(dims: dict[str, sp.Symbol] | tuple, base: int = 1000) -> dict:
    """Concrete sizes at which two programs are compared: every size large, all distinct,
    so a term of higher order in the sizes outweighs any number of lower-order ones."""
    symbols = sorted(dims.values() if isinstance(dims, dict) else dims, key=lambda s: s.name)
    return {s: base + 7 * n for n, s in enumerate(symbols)}


def _numeric_size(k: sp.Idx, sizes: dict) -> int:
    return int((k.upper + 1).xreplace(sizes))


def step_cost(step: Step, names: frozenset[str], sizes: dict, kinds=KINDS) -> int:
    """FLOPs of one step at concrete ``sizes`` (default convention)."""
    total = 0
    cache: dict = {}
    for t in step_terms(step, names):
        if t.kind not in kinds:
            continue
        n = t.coef
        for k in t.idx:
            if k not in cache:
                cache[k] = _numeric_size(k, sizes)
            n *= cache[k]
        total += n
    return total


def leading_order(poly: sp.Expr, ratios=frozenset()) -> sp.Expr:
    """Terms whose monomial divides no other term's monomial (7*N*d + 2*d -> 7*N*d).

    ``ratios`` are symbols that are not sizes but coefficients the user sets (the
    backward-to-forward ratio k of a training step): they are no part of a monomial, so
    F + k*F keeps both terms, which are of the same order in the sizes."""
    terms = sp.Add.make_args(sp.expand(poly))
    powers = [dict(t.as_coeff_Mul()[1].as_powers_dict()) for t in terms]
    powers = [{k: v for k, v in p.items() if k != 1 and k not in ratios} for p in powers]

    def divides(a: dict, b: dict) -> bool:
        return a != b and all(b.get(k, 0) >= v for k, v in a.items())

    return sp.Add(*[t for t, p in zip(terms, powers)
                    if not any(divides(p, o) for o in powers)])
