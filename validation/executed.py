"""Executed-operation counts: what the generated torch code runs, against what is counted.

``OpCounter`` is a ``TorchDispatchMode``: while the generated code of a pass runs
under it, every aten operation torch executes is recorded (operation, input and
output shapes and dtypes) and costed with ``ATEN_COSTS``: an elementwise
operation costs its per-element count times the number of elements of its
result; a sum costs (input elements - output elements) additions, a maximum as
many compares; views, copies, reads at labels (gather) and tensors created from
a Python number cost nothing; a scatter-add costs one addition per value added.
The elementary functions and their aten names come from the engine's own table
(``symflop.core.ops``).  An operation outside the table is reported as unknown,
never counted as zero silently.

The symbolic side is the engine's count of the program the code was printed from
(``Derivation.counts(pass, stage="code")``), less its ``host`` part: work on
hyperparameters and sizes only, which the generated code computes once in Python
numbers where the dispatcher never sees it.  Scalar tensors are passed to the
code as 0-dimensional torch tensors here, so that their work is seen.  Nothing
is re-derived or re-counted here: every number on the symbolic side is the
derivation's.

Run ``python -m validation.executed [NAME ...]`` for the table of every catalogue
component and pass at its reference's sizes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import sympy as sp
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from symflop.core.model import Role
from symflop.core.ops import KINDS, OPS
from symflop.lower.backends import get_backend

# aten operation (overload packet) -> (kind, operations per output element).
_ELEMENTWISE = {
    **{aten: (op.kind, 1) for op in OPS for aten in op.aten},
    **dict.fromkeys(("add", "sub", "rsub"), ("add", 1)),
    **dict.fromkeys(("mul", "neg"), ("mul", 1)),
    **dict.fromkeys(("div", "reciprocal", "remainder", "fmod"), ("div", 1)),
    **dict.fromkeys(("maximum", "minimum", "where", "ge", "gt", "le", "lt", "eq", "ne",
                     "masked_fill", "logical_and", "logical_or", "logical_not"), ("compare", 1)),
    **dict.fromkeys(("rand", "rand_like", "uniform"), ("random", 1)),
}
# Views, copies, dtype conversions, reads at given indices and tensor creation from a
# Python number: no arithmetic.
ZERO_COST = frozenset((
    "view", "_unsafe_view", "reshape", "permute", "unsqueeze", "squeeze", "expand", "clone",
    "detach", "_to_copy", "copy", "copy_", "alias", "as_strided", "t", "transpose", "slice",
    "select", "lift_fresh", "lift_fresh_copy", "scalar_tensor", "_local_scalar_dense",
    "gather", "full", "empty", "zeros", "ones", "argmax", "fill", "empty_like",
))
REDUCTIONS = {"sum": "add", "amax": "compare"}  # (input - output elements) operations
# Fused a + s*x*y and a + s*x/y: the kind of the product or quotient (plus an add, and a
# mul where s is not 1 or -1); add and sub with alpha are costed beside them.
FUSED = {"addcmul": "mul", "addcdiv": "div"}

# The table as documentation: aten operation -> what one call costs.
ATEN_COSTS = {
    **{op: f"{n} {kind} per output element" for op, (kind, n) in _ELEMENTWISE.items()},
    "pow": "integer exponent 1: zero (torch copies); an integer n >= 2: n - 1 mul per "
           "output element; otherwise 1 transcendental",
    **{op: f"input elements - output elements {kind}" for op, kind in REDUCTIONS.items()},
    "scatter_add": "1 add per value added",
    **{op: f"1 {kind} and 1 add per output element, and 1 mul where value is not 1 or -1"
       for op, kind in FUSED.items()},
    **dict.fromkeys(("mm", "bmm"), "k mul and k - 1 add per output element (k: the "
                                   "contracted size)"),
    **dict.fromkeys(ZERO_COST, "zero"),
}
ATEN_COSTS["where"] += " (where(c, 1, 0) on a boolean c: zero, a conversion)"
ATEN_COSTS["add"] = ATEN_COSTS["sub"] = ("1 add per output element, and 1 mul where alpha is "
                                         "not 1 or -1")


@dataclass(frozen=True)
class OpRecord:
    """One executed aten operation and what it costs (``counts``; None when unknown)."""

    op: str                      # e.g. "aten.mul"
    overload: str                # e.g. "aten.mul.Tensor"
    in_shapes: tuple
    in_dtypes: tuple
    out_shapes: tuple
    out_dtypes: tuple
    counts: dict | None
    note: str = ""

    @property
    def known(self) -> bool:
        return self.counts is not None

    @property
    def out_numel(self) -> int:
        return math.prod(self.out_shapes[0]) if self.out_shapes else 0


def _tensors(x) -> list:
    return [a for a in tree_flatten(x)[0] if isinstance(a, torch.Tensor)]


def _is_value(x, v) -> bool:
    return isinstance(x, torch.Tensor) and x.ndim == 0 and bool(x == v)


def _cost(func, args, kwargs, out) -> tuple[dict | None, str]:
    """(kind -> count, note) of one call; (None, why) for an operation not in the table."""
    if func.namespace != "aten":
        return None, f"not an aten operation: {func}"
    name = func.overloadpacket.__name__.rstrip("_") or func.overloadpacket.__name__
    numel = sum(t.numel() for t in _tensors(out))
    if name in ZERO_COST:
        return {}, ""
    if name == "pow":
        exponent = args[1] if len(args) > 1 else kwargs.get("exponent")
        if isinstance(exponent, int) and not isinstance(exponent, bool) and exponent == 1:
            return {}, "power 1: torch copies its input"
        if isinstance(exponent, int) and not isinstance(exponent, bool) and exponent >= 2:
            return {"mul": (exponent - 1) * numel}, f"integer power {exponent}"
        return {"transcendental": numel}, "general power"
    if name == "where":
        cond, a, b = (list(args) + [None, None, None])[:3]
        if (isinstance(cond, torch.Tensor) and cond.dtype == torch.bool
                and _is_value(a, 1) and _is_value(b, 0)):
            return {}, "indicator: where(c, 1, 0) converts a boolean to numbers"
    if name in REDUCTIONS:
        src = args[0]
        return {REDUCTIONS[name]: src.numel() - numel}, f"reduction of {src.numel()} to {numel}"
    if name in ("mm", "bmm"):  # out[.., n, m] = sum over k of a[.., n, k] * b[.., k, m]
        k = args[0].shape[-1]
        return {"mul": numel * k, "add": numel * (k - 1)}, f"matrix product over {k}"
    if name == "scatter_add":
        src = args[3] if len(args) > 3 else kwargs["src"]
        return {"add": src.numel()}, "values added at the labels"
    if name in FUSED:  # a + s*x*y, a + s*x/y: the product or quotient, the scaling, the sum
        scale = kwargs.get("value", args[3] if len(args) > 3 else 1)
        counts = {FUSED[name]: numel, "add": numel}
        if _scales(scale):
            counts["mul"] = counts.get("mul", 0) + numel
        return counts, f"fused {name}" + (f", value {scale}" if _scales(scale) else "")
    if name in ("add", "sub"):
        alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
        if _scales(alpha):  # a + alpha*x: a product and a sum
            return {"mul": numel, "add": numel}, f"{name} with alpha {alpha}"
    if name in _ELEMENTWISE:
        kind, n = _ELEMENTWISE[name]
        return {kind: n * numel}, ""
    return None, f"no cost for {func}"


def _scales(value) -> bool:
    """Is ``value`` (alpha=, value=) a multiplication?  1 and -1 are not: a sign turns
    an addition into a subtraction, which costs the same."""
    if isinstance(value, torch.Tensor):
        return True
    return value not in (1, -1)


class OpCounter(TorchDispatchMode):
    """Records every aten operation executed under it, with its cost by kind."""

    def __init__(self):
        super().__init__()
        self.records: list[OpRecord] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        ins, outs = _tensors((args, kwargs)), _tensors(out)
        counts, note = _cost(func, args, kwargs, out)
        self.records.append(OpRecord(
            f"aten.{func.overloadpacket.__name__}", str(func),
            tuple(tuple(t.shape) for t in ins), tuple(str(t.dtype) for t in ins),
            tuple(tuple(t.shape) for t in outs), tuple(str(t.dtype) for t in outs),
            counts, note))
        return out

    @property
    def by_kind(self) -> dict[str, int]:
        acc = dict.fromkeys(KINDS, 0)
        for r in self.records:
            for k, v in (r.counts or {}).items():
                acc[k] += v
        return acc

    @property
    def by_op(self) -> dict[tuple[str, str], int]:
        """(aten operation, kind) -> count."""
        acc: dict = defaultdict(int)
        for r in self.records:
            for k, v in (r.counts or {}).items():
                acc[r.op, k] += v
        return dict(acc)

    @property
    def unknown(self) -> list[OpRecord]:
        return [r for r in self.records if not r.known]


@dataclass
class Executed:
    """Executed counts of one pass: ``by_kind``, the unknown operations, every record."""

    by_kind: dict[str, int]
    unknown: list[OpRecord]
    records: list[OpRecord]
    outputs: dict
    by_op: dict = field(default_factory=dict)

    def __getitem__(self, kind: str) -> int:
        return self.by_kind[kind]


def device_values(derivation, pass_name: str, values: dict) -> dict:
    """The values a pass reads, scalar tensors as 0-dimensional torch tensors (so the
    dispatcher sees their work; hyperparameters stay Python numbers)."""
    fn = derivation.compiled(pass_name)
    tensors = derivation.stage("code").programs[pass_name].tensors
    like = next((v for v in values.values() if isinstance(v, torch.Tensor)
                 and v.is_floating_point()), None)
    dtype = like.dtype if like is not None else torch.float64
    device = like.device if like is not None else "cpu"
    out = {}
    for n, v in values.items():
        if n not in fn.signature.inputs:
            continue
        t = tensors.get(n)
        if t is not None and t.role is not Role.HYPER and not t.shape \
                and isinstance(v, (int, float)):
            v = torch.tensor(float(v), dtype=dtype, device=device)
        out[n] = v
    return out


def executed_counts(derivation, pass_name: str, values: dict, seed: int | None = None,
                    backend=None) -> Executed:
    """Run the generated torch code of ``pass_name`` on ``values`` under an ``OpCounter``.

    ``backend`` (a ``TorchBackend``) keeps random draws going across passes; otherwise
    one is made with ``seed``.  Values the pass does not read are ignored.  The
    compiled pass's NaN/Inf scans of its inputs are not run (``check=False``), so
    that only the pass's own work is recorded; shapes and sizes are still checked.
    """
    xp = backend or get_backend("torch", seed)
    fn = derivation.compiled(pass_name)
    values = device_values(derivation, pass_name, values)
    counter = OpCounter()
    with counter:
        out = fn(backend=xp, check=False, **values)
    return Executed(counter.by_kind, counter.unknown, counter.records, out, counter.by_op)


# ----------------------------------------------------------------------------- comparison

def _int(expr, sizes: dict) -> int:
    expr = sp.sympify(expr)
    return int(expr.subs({s: sizes[s.name] for s in expr.free_symbols}))


@dataclass
class Row:
    """The counted and the executed operations of one pass, by kind."""

    component: str
    pass_name: str
    sizes: dict
    symbolic: dict       # the engine's count of the code stage
    host: dict           # the part of it done in Python numbers
    executed: dict       # what the dispatcher saw
    unknown: list
    by_op: dict = field(default_factory=dict)

    @property
    def array(self) -> dict:
        """What the dispatcher should see: the count less the work in Python numbers."""
        return {k: self.symbolic[k] - self.host[k] for k in KINDS}

    @property
    def differing(self) -> list[str]:
        return [k for k in KINDS if self.executed[k] != self.array[k]]

    @property
    def matches(self) -> bool:
        return not self.differing and not self.unknown

    @property
    def notes(self) -> list[str]:
        """Where the counts differ: the aten operations of each differing kind."""
        out = []
        for k in self.differing:
            ops = ", ".join(f"{op} {v:,}" for (op, kind), v in sorted(self.by_op.items())
                            if kind == k and v)
            out.append(f"{k}: counted {self.array[k]:,}, executed {self.executed[k]:,} "
                       f"({ops or 'no operation of this kind'})")
        return out


def compare(derivation, pass_name: str, values: dict, sizes: dict, seed: int | None = None,
            backend=None) -> Row:
    """Counted and executed operations of one pass, side by side."""
    ex = executed_counts(derivation, pass_name, values, seed, backend)
    return _row(derivation, pass_name, sizes, ex)


def _row(derivation, pass_name: str, sizes: dict, ex: Executed) -> Row:
    cnt = derivation.counts(pass_name, stage="code")
    symbolic = {k: _int(cnt.by_kind[k], sizes) for k in KINDS}
    host = {k: _int(cnt.host.get(k, 0), sizes) for k in KINDS}
    return Row(derivation.component, pass_name, dict(sizes), symbolic, host,
               dict(ex.by_kind), [r.overload for r in ex.unknown], dict(ex.by_op))


def compare_passes(derivation, values: dict, sizes: dict, seed: int | None = 0) -> list[Row]:
    """``compare`` for every pass in order, each reading what earlier passes produced
    (as ``validation.harness.run_passes``), with one backend for all random draws."""
    xp = get_backend("torch", seed)
    env = dict(values)
    rows = []
    for name in derivation.passes:
        args = {n: env[n] for n in derivation.compiled(name).signature.inputs}
        ex = executed_counts(derivation, name, args, backend=xp)
        rows.append(_row(derivation, name, sizes, ex))
        env.update(ex.outputs)
    return rows


def format_rows(rows: list[Row]) -> str:
    """A plain-text table: per pass and kind, counted (Python part), array, executed."""
    lines = [f"{'component':20} {'pass':9} {'kind':14} {'counted':>9} {'python':>7} "
             f"{'array':>8} {'executed':>9}"]
    for r in rows:
        for k in KINDS:
            if r.symbolic[k] or r.executed[k]:
                mark = "" if r.executed[k] == r.array[k] else "  *"
                lines.append(f"{r.component:20} {r.pass_name:9} {k:14} {r.symbolic[k]:9,} "
                             f"{r.host[k]:7,} {r.array[k]:8,} {r.executed[k]:9,}{mark}")
        for n in r.notes:
            lines.append(f"    differs: {n}")
        for u in r.unknown:
            lines.append(f"    unknown operation {u}")
    return "\n".join(lines)


def catalogue_rows(names=None, seed: int = 0) -> list[Row]:
    """Rows for catalogue components (all with generated code by default), at their
    references' sizes, on seeded float64 inputs."""
    from derivations import CATALOGUE
    from symflop.compose import derive_any
    from symflop.core.model import Component
    from validation.inputs import torch_inputs
    from validation.references import REFERENCES

    rows = []
    for name in names or CATALOGUE:
        c = CATALOGUE[name]()
        if not isinstance(c, Component):
            continue
        d = derive_any(c)
        ref = REFERENCES[name]
        values = torch_inputs(c, d, ref, ref.sizes, seed, torch.float64)
        rows.extend(compare_passes(d, values, ref.sizes, seed))
    return rows


if __name__ == "__main__":
    import sys
    print(format_rows(catalogue_rows(sys.argv[1:] or None)))
