"""Composites: the cost of several components together, e.g. a whole training step.

A composite adds up passes of other components (with their sizes expressed in
the composite's sizes, and a multiplicity such as a number of layers), plus
terms this tool does not derive, such as the network's own forward FLOPs F,
which enter as symbols of their own kind (``network``).  Memory is assembled
the same way.  Every derived part comes from the parts' own derivations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from symflop.core.model import Component, Role, size_symbol
from symflop.cost.conventions import KINDS, Convention, get_convention
from symflop.cost.counting import Counts, leading_order
from symflop.cost.memory import Memory
from symflop.derive import compile_polynomial, derive
from symflop.errors import ComponentError, UsageError

NETWORK = "network"


@dataclass
class Part:
    """``times`` copies of the passes ``passes`` of ``component``, sizes mapped by ``dims``."""

    label: str
    component: Component
    passes: tuple[str, ...]
    dims: dict[str, sp.Expr]
    times: sp.Expr = sp.Integer(1)


@dataclass
class Composite:
    name: str
    section: str
    summary: str
    reference: str = ""
    dims: dict[str, sp.Symbol] = field(default_factory=dict)
    network: list[tuple[str, sp.Expr]] = field(default_factory=list)
    parts: list[Part] = field(default_factory=list)
    memory_terms: list[tuple[str, str, sp.Expr]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ratios: set = field(default_factory=set)  # set by the user, but not sizes

    def dim(self, names: str):
        out = [self.dims.setdefault(n, size_symbol(n))
               for n in names.split()]
        return out[0] if len(out) == 1 else tuple(out)

    def ratio(self, names: str):
        """Symbols the user sets (with ``--dims``) that are coefficients, not sizes: the
        leading order keeps every term of the same order in the sizes, whatever its
        ratio (F and k*F)."""
        out = self.dim(names)
        self.ratios |= set(out) if isinstance(out, tuple) else {out}
        return out

    def add_network(self, label: str, flops: sp.Expr) -> None:
        """FLOPs of the network itself, given, not derived (e.g. F, or k*F)."""
        self.network.append((label, sp.sympify(flops)))

    def add_part(self, label: str, component: Component, passes: tuple[str, ...],
                 dims: dict[str, sp.Expr], times: sp.Expr = 1) -> Part:
        missing = set(component.dims) - set(dims)
        if missing:
            raise ComponentError(f"{self.name}: part {label!r} leaves the size(s) "
                                 f"{', '.join(sorted(missing))} of {component.name} unmapped")
        part = Part(label, component, tuple(passes), dict(dims), sp.sympify(times))
        self.parts.append(part)
        return part

    def add_memory(self, label: str, what: str, elements: sp.Expr) -> None:
        """A memory term: ``what`` is parameters, gradients, state or saved."""
        if what not in ("parameters", "gradients", "state", "saved"):
            raise ComponentError(f"unknown memory kind {what!r}")
        self.memory_terms.append((label, what, sp.sympify(elements)))


def derive_any(c: Component | Composite):
    """``derive`` for a component, ``CompositeDerivation`` for a composite."""
    return CompositeDerivation(c) if isinstance(c, Composite) else derive(c)


def state_tensor_count(c: Component, size: sp.Expr) -> int:
    """How many state tensors of ``c`` hold one value per element of ``size`` (e.g. per P)."""
    return sum(1 for t in c.tensors.values()
               if t.role is Role.STATE and sp.Mul(*t.shape) == size)


class CompositeDerivation:
    """The derivation-shaped view of a composite that the CLI and tables use."""

    fused: dict = {}
    sources: dict = {}

    def __init__(self, comp: Composite):
        self.composite = comp
        self.component = comp.name
        self.dims = tuple(sorted(comp.dims))
        self.derived = {p.label: derive(p.component) for p in comp.parts}
        self.passes = ("step",) + tuple(f"{p.label}.{q}" for p in comp.parts for q in p.passes)
        self.memory = self._memory()
        self._count_fns: dict = {}

    def _substitution(self, part: Part) -> dict:
        return {part.component.dims[k]: v for k, v in part.dims.items()}

    def part_counts(self, part: Part, pass_name: str, conv: Convention,
                    stage: str = "optimized") -> Counts:
        d = self.derived[part.label]
        if stage in ("written", "as-written") and pass_name in ("backward", "gradient"):
            stage = "differentiated"  # a derived pass as reverse mode derived it
        cnt = d.counts(pass_name, conv, stage)
        subs = self._substitution(part)
        by_kind = {k: sp.expand(part.times * v.xreplace(subs)) for k, v in cnt.by_kind.items()}
        total = sp.expand(part.times * cnt.total.xreplace(subs))
        return Counts(conv.name, by_kind, total,
                      leading_order(total, frozenset(self.composite.ratios)))

    def counts(self, pass_name: str, convention: str | Convention = "default",
               stage: str = "optimized") -> Counts:
        conv = get_convention(convention)
        if pass_name != "step":  # noqa: S105 - a pass name, not a password
            label, _, q = pass_name.partition(".")
            part = next((p for p in self.composite.parts if p.label == label), None)
            if part is None or q not in part.passes:
                raise UsageError(f"{self.component} has no pass {pass_name!r} "
                                 f"(passes: {', '.join(self.passes)})")
            return self.part_counts(part, q, conv, stage)
        by_kind = dict.fromkeys(KINDS, sp.Integer(0))
        for part in self.composite.parts:
            for q in part.passes:
                for k, v in self.part_counts(part, q, conv, stage).by_kind.items():
                    by_kind[k] = by_kind.get(k, sp.Integer(0)) + v
        by_kind[NETWORK] = sp.Add(*[f for _, f in self.composite.network])
        by_kind = {k: sp.expand(v) for k, v in by_kind.items()}
        weights = {**conv.weights, "fma": 1, NETWORK: 1}
        total = sp.expand(sum((weights[k] * v for k, v in by_kind.items()), sp.Integer(0)))
        return Counts(conv.name, by_kind, total,
                      leading_order(total, frozenset(self.composite.ratios)))

    def count_function(self, pass_name: str, convention: str | Convention = "default",
                       stage: str = "optimized"):
        conv = get_convention(convention)
        key = (pass_name, conv.key, stage)
        if key not in self._count_fns:
            self._count_fns[key] = compile_polynomial(self.counts(pass_name, conv, stage).total)
        return self._count_fns[key]

    def _memory(self) -> Memory:
        groups: dict[str, list] = {"parameters": [], "gradients": [], "state": [], "saved": []}
        for label, what, elements in self.composite.memory_terms:
            groups[what].append((label, elements))
        return Memory(tuple(groups["parameters"]), tuple(groups["state"]),
                      tuple(groups["saved"]), (), tuple(groups["gradients"]))
