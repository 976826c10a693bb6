"""The claims' query language, and what the ledgers of several sections share.

A ``Query`` is how a claim's quantity is derived: ``flops`` and ``memory`` read a pass
or the memory of a catalogue component, ``computed`` wraps any other function of the
convention.  The one cache of built and derived components is here, with the section
names ``S_*`` and the premises, figures and reasons that claims of two or more document
sections use (a helper of one section stays in that section's ledger).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import sympy as sp

from derivations import CATALOGUE, examples
from derivations.claims.document_components import AS_THE_DOCUMENT_WRITES
from symflop import Component, Derivation
from symflop.compose import Composite, CompositeDerivation, derive_any
from symflop.core.model import size_symbol
from symflop.core.stages import as_written_stage
from symflop.cost.counting import leading_order
from symflop.report import claims as engine
from symflop.report.claims import Claim, Underivable
from symflop.rewrite.fused import FusedGradient, inline

RESNET_P = 25_600_000        # the document's ResNet-50 parameter count (a premise)


# -- the catalogue, built and derived once ------------------------------------------

@cache
def component(name: str, **options) -> Component | Composite:
    """The catalogue's component ``name`` (or one written as the document writes it),
    built once per options."""
    build = CATALOGUE.get(name) or AS_THE_DOCUMENT_WRITES[name]
    return build(**options) if options else build()


@cache
def derivation(name: str, **options) -> Derivation | CompositeDerivation:
    """The derivation of ``component(name, **options)``, derived once."""
    return derive_any(component(name, **options))


def _size_values(name: str, sizes: dict) -> dict:
    """Sizes by name -> the component's size symbols."""
    return {size_symbol(k): v for k, v in sizes.items()}


class Query:
    """A derivation of a claim: a function of the convention (and, with ``by_stage``, of
    the stage: the optimized program or the equations as written), with a one-line
    ``how``."""

    def __init__(self, fn: Callable, how: str, by_convention: bool = True, by_stage: bool = False):
        self.fn, self.how = fn, how
        self.by_convention, self.by_stage = by_convention, by_stage

    def __call__(self, conv: str, stage: str = "optimized"):
        return self.fn(conv, stage) if self.by_stage else self.fn(conv)


def claim(id_: str, section: str, quote: str, claimed: str, q: Query | None = None,
          reason: str = "", how: str = "", assumed: Query | None = None, assumption: str = "",
          table: str = "", scope: str = "") -> Claim:
    if q is None:
        return Claim(id_, section, quote, claimed, how, None, False, reason)
    return Claim(id_, section, quote, claimed, how or q.how, q, q.by_convention, reason,
                 q.by_stage, assumed, assumption, table, scope)


def cannot_derive(id_: str, section: str, quote: str, claimed: str, reason: str) -> Claim:
    return claim(id_, section, quote, claimed, None, reason)


# -- derivations of quantities --------------------------------------------------------

def _stage_to_read(name: str, pass_name: str, stage: str, **options) -> str:
    """The stage to read: as written, a derived pass is the one reverse mode derived."""
    if stage != "written":
        return stage
    d = derivation(name, **options)
    return as_written_stage(d, pass_name) if hasattr(d, "stages") else stage


def _pass_counts(name: str, pass_name: str, conv: str, steps: tuple[str, ...] = (),
                 stage: str = "optimized", exclude: tuple[str, ...] = (), **options):
    """(total, by_kind) of a pass, or of the named steps of it (None if the stage has none
    of them: the optimized program may have inlined them), or of all but ``exclude``."""
    d = derivation(name, **options)
    stage = _stage_to_read(name, pass_name, stage, **options)
    if not steps and not exclude:
        cnt = d.counts(pass_name, conv, stage)
        return cnt.total, dict(cnt.by_kind)
    pairs = [(st, cnt) for st, cnt in d.step_counts(pass_name, conv, stage)
             if (st.lhs in steps if steps else st.lhs not in exclude)]
    missing = set(steps) - {st.lhs for st, _ in pairs}
    if missing:
        if stage == "written" or stage == "differentiated":
            raise KeyError(f"{name}.{pass_name} has no step(s) {sorted(missing)}")
        return None
    tot = sp.expand(sp.Add(*[c.total for _, c in pairs]))
    kinds: dict = {}
    for _, c in pairs:
        for k, v in c.by_kind.items():
            kinds[k] = sp.expand(kinds.get(k, 0) + v)
    return tot, kinds


def flops(name: str, pass_name: str, steps: tuple[str, ...] = (), kinds: bool = False,
          at: dict | None = None, leading: bool = False, rename: dict | None = None,
          per: str | None = None, stage: str | None = None, exclude: tuple[str, ...] = (),
          **options) -> Query:
    """FLOPs of ``name``'s pass (or of its ``steps``, or all but ``exclude``): total, or
    per kind with ``kinds``; at each stage, or at ``stage`` only.

    ``rename`` maps size names to the document's expressions, ``per`` divides by a
    product of sizes (a per-element figure), ``leading`` keeps the leading order,
    ``at`` evaluates at sizes."""
    def run(conv: str, at_stage: str = "optimized"):
        got = _pass_counts(name, pass_name, conv, steps, stage or at_stage, exclude, **options)
        if got is None:
            return None
        tot, by_kind = got
        value = by_kind if kinds else tot

        def post(e):
            e = sp.sympify(e)
            if leading or rename:
                e = leading_order(e)
            if rename:
                e = sp.expand(e.xreplace({size_symbol(k): v for k, v in rename.items()}))
            if per:
                e = sp.expand(e / engine.parse_polynomial(per))
            if at:
                e = e.xreplace(_size_values(name, at))
            return e

        return {k: post(v) for k, v in value.items()} if kinds else post(value)

    where = f"steps {', '.join(steps)} of " if steps else ""
    if exclude:
        where = f"all but {', '.join(exclude)} of "
    what = "counts per kind" if kinds else ("leading order" if leading or rename else "FLOPs")
    how = f"{name}: {what} of {where}the {pass_name} pass"
    if stage:
        how += f" ({stage} stage)"
    if per:
        how += f", per element (/ {per})"
    if rename:
        how += ", with " + ", ".join(f"{k} = {v}" for k, v in rename.items())
    if at:
        how += " at " + ", ".join(f"{k}={v:,}" for k, v in at.items())
    return Query(run, how, by_stage=stage is None)


def memory(name: str, what: str | tuple[str, ...], tensors: tuple[str, ...] = (),
           elements: bool = False, at: dict | None = None, rename: dict | None = None,
           **options) -> Query:
    """Bytes (float32) or elements of ``what`` (parameters, gradients, state, saved); what
    is saved for backward depends on the stage, the rest does not."""
    whats = (what,) if isinstance(what, str) else what

    def run(_conv: str, stage: str = "optimized"):
        d = derivation(name, **options)
        mem = d.memory_at("differentiated" if stage == "written" else stage) \
            if hasattr(d, "memory_at") else d.memory
        out = sp.Integer(0)
        for w in whats:
            if tensors:
                out += sum((n for t, n in getattr(mem, w) if t in tensors), sp.Integer(0))
            else:
                out += mem.elements(w)
        out = sp.expand(out if elements else 4 * out)
        if rename:
            out = sp.expand(out.xreplace({size_symbol(k): v for k, v in rename.items()}))
        return out.xreplace(_size_values(name, at)) if at else out

    unit = "elements" if elements else "bytes (float32)"
    how = f"{name}: {unit} of {' + '.join(whats)}"
    if tensors:
        how += f" ({', '.join(tensors)})"
    if at:
        how += " at " + ", ".join(f"{k}={v:,}" for k, v in at.items())
    return Query(run, how, by_convention=False, by_stage="saved" in whats)


def computed(fn: Callable, how: str, by_convention: bool = True) -> Query:
    """Any function of the convention as a claim's derivation, with its ``how``."""
    return Query(fn, how, by_convention)


def count_at(name: str, pass_name: str, conv: str, stage: str = "optimized",
             **sizes) -> int:
    """The FLOPs of a pass at the given sizes, a number."""
    stage = _stage_to_read(name, pass_name, stage)
    return int(derivation(name).count_function(pass_name, conv, stage)(**sizes))


# -- stated equations -----------------------------------------------------------------

def tensor_symbol(name: str, tensor: str) -> sp.Basic:
    """The SymPy object standing for ``tensor`` of component ``name``."""
    return component(name).tensors[tensor].symbol


def indexed_base(expr: sp.Expr, name: str) -> sp.IndexedBase:
    """The indexed base named ``name`` in ``expr`` (a gradient's incoming adjoint)."""
    for b in expr.atoms(sp.IndexedBase):
        if str(b.label) == name:
            return b
    raise KeyError(name)


def fused_gradient(name: str, wrt: str) -> FusedGradient:
    """The fused gradient of component ``name`` with respect to ``wrt``."""
    return derivation(name).fused[wrt]


def inlined_step(name: str, pass_name: str, target: str) -> tuple[sp.Expr, tuple]:
    """A step of a derived program with every step it reads from the same program
    substituted in: the quantity as one expression of the forward tensors."""
    d = derivation(name)
    prog = d.stage(as_written_stage(d, pass_name)).programs[pass_name]
    defs = {st.lhs: st for st in prog.steps}
    st = defs[target]
    return inline(st.rhs(), defs, prog.tensors, exclude=target), st.idx


# -- figures of the worked examples ---------------------------------------------------

def example_row(example: str, label: str) -> float:
    """The value of row ``label`` of the worked example ``example``."""
    ex = examples.EXAMPLES[example]()
    for r in ex.rows:
        if r.label == label:
            return r.value
    raise KeyError(f"{example} has no row {label!r}")


def example_figure(example: str, label: str, scale: float = 1.0) -> Query:
    """A worked example's figure times ``scale`` (MiB or GiB to bytes, say)."""
    return Query(lambda _c: sp.Float(example_row(example, label) * scale),
                 f"example {example}: {label}", by_convention=False)


# -- figures that are choices, and figures of other figures ---------------------------

def hyperparameter_choice(name: str, keys: tuple[str, ...], what: str) -> Query:
    """A stated default: a choice, not derivable (the catalogue's defaults shown)."""
    def run(_conv):
        c = component(name)
        shown = ", ".join(f"{k} = {c.defaults[k]:g}" for k in keys)
        return Underivable(f"{what} is a choice, not a consequence of the equations "
                           f"(the catalogue's {name} defaults: {shown})")
    return Query(run, "", by_convention=False)


def difference(a: Query, b: Query, how: str, by_convention: bool = True) -> Query:
    """``a`` minus ``b`` (None where either is)."""
    def run(conv, stage="optimized"):
        x, y = a(conv, stage), b(conv, stage)
        return None if x is None or y is None else sp.expand(sp.sympify(x) - sp.sympify(y))
    return Query(run, how, by_convention, by_stage=a.by_stage or b.by_stage)


def plus_data_gradient(name: str) -> Query:
    """The penalty's gradient plus its addition to the data gradient (P additions)."""
    def run(conv, stage="optimized"):
        return sp.expand(flops(name, "gradient")(conv, stage) + size_symbol("P"))
    return Query(run, f"{name}: gradient FLOPs plus P additions to the data gradient",
                 by_stage=True)


def elements_of(name: str, tensors: tuple[str, ...], unit: int = 1) -> Query:
    """The elements of a component's ``tensors`` (times ``unit``), whatever it saves."""
    c = component(name)
    total_ = sp.Add(*[sp.Mul(*c.tensors[n].shape) for n in tensors])
    return Query(lambda _conv: sp.expand(unit * total_), f"{name}: elements of "
                 f"{', '.join(tensors)}", by_convention=False)


# -- the reasons several sections give, and the sections' names -------------------

WITH_DATA_GRADIENT = ("the total includes adding the penalty's gradient to the data "
                      "gradient (P additions), as the document's sum does; the component "
                      "is the penalty's gradient alone")
BN_CACHE = ("caching xhat, mu and var, as the document does (the optimized backward reads "
            "xhat and var only)")
BN_BACKWARD = ("as written, the document's own backward equations, dL/dgamma and dL/dbeta "
               "included, keep the sum of (x - mu), which is zero, and compute x - mu again; "
               "optimized, that sum is gone (centered-sum), x - mu is read as "
               "xhat*sqrt(var + eps) and the sums of dL/dgamma and dL/dbeta serve dL/dx "
               "too; the document's figure is neither")

S_MSE = "Losses: mean squared error"
S_CE = "Losses: cross-entropy"
S_LOSS = "Losses: other losses"
S_SGD = "Optimizers: SGD"
S_MOM = "Optimizers: momentum"
S_NAG = "Optimizers: Nesterov"
S_ADAG = "Optimizers: AdaGrad"
S_RMS = "Optimizers: RMSProp"
S_ADAM = "Optimizers: Adam"
S_BIAS = "Optimizers: Adam bias correction example"
S_ADAMW = "Optimizers: AdamW"
S_CMP = "Optimizers: comparison table"
S_25M = "Optimizers: 25.6M-parameter table"
S_L1 = "Regularization: L1"
S_L2 = "Regularization: L2"
S_DROP = "Regularization: dropout"
S_AUG = "Regularization: data augmentation"
S_BN = "Normalization: BatchNorm"
S_BNX = "Normalization: BatchNorm example"
S_TI = "Normalization: training vs inference"
S_LN = "Normalization: LayerNorm"
S_GN = "Normalization: GroupNorm"
S_NCMP = "Normalization: comparison table"
S_LR = "Learning-rate schedules"
S_SUM = "Summary table"
S_MEM = "Memory total"
