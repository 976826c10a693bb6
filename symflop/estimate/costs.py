"""What a catalogue component costs where the traced step uses it.

Why one object per estimate: a network repeats a few components many times (ResNet-50
runs one BatchNorm component at a few sizes 53 times), so each component's counts are
made once per pass and sizes.  ``Costs`` holds those memos for one ``estimate()`` call
(and the traces it fits over), and weighs raw counts under the estimate's convention as
the engine does (``apply_convention``).

One memo outlives the call: each component and its derivation (``_DERIVED``), keyed by
how it is built (the rule's builder and options, or the catalogue's name).  The disk
cache keeps one entry per component name, so the components one builder makes with
other options (the pointwise operation of each aten operation) evict each other there
and would be derived anew by every estimate of a process: the checkpoint budget's
search estimates the same model many times (``tests/test_budget.py``: 27 s with the
memo, 71 s without).
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

from symflop.core.model import Component
from symflop.cost.conventions import Convention
from symflop.cost.counting import Tally, apply_convention
from symflop.derive import Derivation, derive
from symflop.errors import UsageError
from symflop.estimate.calls import TensorRef, Use
from symflop.estimate.result import ZERO, Line
from symflop.estimate.work import Saved, Work, add_into, read
from symflop.registry import get_component


class _Derived:
    """A component and, once asked for, its derivation."""

    def __init__(self, component: Component):
        self.component = component
        self._derivation: Derivation | None = None

    @property
    def derivation(self) -> Derivation:
        if self._derivation is None:
            self._derivation = derive(self.component)
        return self._derivation


_DERIVED: dict[tuple, _Derived] = {}   # see the module's text: the memo that outlives a call


class Costed:
    """One component of the estimate, counted once per pass and sizes."""

    def __init__(self, derived: _Derived, convention: Convention):
        self.component = derived.component
        self.convention = convention
        self._derived = derived
        self._symbolic: dict = {}     # pass -> its Counts under the convention
        self._sized: dict = {}        # (pass, sizes) -> (counts by kind, total)

    @property
    def derivation(self) -> Derivation:
        return self._derived.derivation

    def substitution(self, dims: dict[str, sp.Expr]) -> dict:
        """The component's size symbols -> the trace's sizes ``dims``."""
        c = self.component
        missing = set(c.dims) - set(dims)
        if missing:
            raise UsageError(f"rule for {c.name!r} gives no size for {sorted(missing)}")
        return {c.dims[n]: v for n, v in dims.items()}

    def counts(self, pass_name: str, dims: dict) -> tuple[dict, sp.Expr]:
        """Counts of a pass at the trace's sizes (a network repeats the same layer)."""
        key = (pass_name, tuple(sorted(dims.items(), key=str)))
        hit = self._sized.get(key)
        if hit is None:
            if pass_name not in self._symbolic:
                self._symbolic[pass_name] = self.derivation.counts(pass_name, self.convention)
            counts = self._symbolic[pass_name]
            sub = self.substitution(dims)
            hit = self._sized[key] = (
                {k: sp.expand(v.xreplace(sub)) for k, v in counts.by_kind.items()},
                sp.expand(counts.total.xreplace(sub)))
        return dict(hit[0]), hit[1]


class Costs:
    """The components of one estimate under its convention (see the module's text)."""

    def __init__(self, convention: Convention):
        self.convention = convention
        self._costed: dict[tuple, Costed] = {}

    def _get(self, key: tuple, build: Callable[[], Component]) -> Costed:
        hit = self._costed.get(key)
        if hit is None:
            derived = _DERIVED.get(key)
            if derived is None:
                derived = _DERIVED[key] = _Derived(build())
            hit = self._costed[key] = Costed(derived, self.convention)
        return hit

    def of(self, use: Use) -> Costed:
        """The component a rule's ``use`` builds (once per builder and options)."""
        options = tuple(sorted(use.options.items()))
        return self._get(("rule", use.build, options), lambda: use.build(**dict(options)))

    def catalogue(self, name: str) -> Costed:
        """The catalogue's component ``name`` (the loss, the optimizer, the schedule): the
        registry's object, derived again if the registry holds another one now."""
        c = get_component(name)
        key = ("catalogue", name)
        derived = _DERIVED.get(key)
        if derived is not None and derived.component is not c:
            del _DERIVED[key]
            self._costed.pop(key, None)
        return self._get(key, lambda: c)

    def weigh(self, by_kind: dict[str, sp.Expr]) -> sp.Expr:
        """FLOPs of raw counts by kind under the estimate's convention."""
        return apply_convention(Tally(tuple(by_kind.items())), self.convention).total


def apply_use(line: Line, use: Use, costed: Costed, saved: Saved, reads: dict, work: Work,
              keep: bool = True, overwritten: TensorRef | None = None) -> None:
    """Add what ``use`` of the component ``costed`` does to ``line`` and ``work``.
    ``overwritten``: the tensor an in-place operation writes over; if its backward needs
    the old values, autograd keeps a copy of them (torch's original_self)."""
    c = costed.component
    fwd, fwd_total = costed.counts("forward", use.dims)
    if use.integer:
        line.integer = sp.expand(line.integer + sum(fwd.values(), ZERO))
        return
    if use.backward_only:
        add_into(line.backward, fwd)
        line.flops_backward += fwd_total
        return
    add_into(line.forward, fwd)
    add_into(work.forward, fwd)
    line.flops_forward += fwd_total
    work.flops += fwd_total
    if use.contraction:
        line.macs_forward += fwd["mul"]
        work.macs += fwd["mul"]
    for name in c.wrt:  # a gradient flows back to each: one more gradient to add
        t = use.tensors.get(name)
        if isinstance(t, TensorRef):
            read(reads, t)
    if use.forward_only or not c.wrt:
        return
    bwd, bwd_total = costed.counts("backward", use.dims)
    add_into(line.backward, bwd)
    line.flops_backward += bwd_total
    if use.contraction:
        line.macs_backward += bwd["mul"]
    if use.keep:
        _keep(line, use, costed, saved, work, keep, overwritten)


def _keep(line: Line, use: Use, costed: Costed, saved: Saved, work: Work, keep: bool,
          overwritten: TensorRef | None) -> None:
    """What the backward of ``use`` keeps: traced storages, or tensors of its own."""
    sub = costed.substitution(use.dims)
    out = use.tensors.get("y")
    itemsize = out.itemsize if isinstance(out, TensorRef) else 4
    for name, elements in costed.derivation.memory.saved:
        t = use.kept_as.get(name, use.tensors.get(name))
        if isinstance(t, TensorRef) and overwritten is not None and name != "y" \
                and name not in use.kept_as and t.key == overwritten.key:
            work.keeps.add("itself")
            work.new_kept += t.numel * t.itemsize     # kept when run (or run again)
            if keep:
                line.saved_bytes += saved.new(t.numel * t.itemsize)
        elif isinstance(t, TensorRef):
            work.keeps.add(t.storage)
            if t.parameter is None and keep:
                line.saved_bytes += saved.add(t.storage, t.storage_elements * t.itemsize)
        else:
            work.keeps.add("itself")
            nbytes = sp.expand(elements.xreplace(sub)) * itemsize
            work.new_kept += nbytes                       # kept when run (or run again)
            if keep:
                line.saved_bytes += saved.new(nbytes)
