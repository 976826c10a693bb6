"""Every other aten operation that computes, by what it does: an elementwise function
under any broadcast, a reduction over any axes, integer and boolean work.

Why this way: one rule per aten operation does not scale (a transformers model runs
some fifty kinds), while nearly all of them are one of four shapes.  An elementwise
operation is written once as a SymPy function of its operands (``FUNCTIONS``); the
rule reads the traced shapes, merges neighbouring axes that every operand has or
lacks alike (as torch's TensorIterator does), and builds a component whose equation
is ``y[i...] = f(a[...], b[...], ...)`` with each operand indexed by the axes it
spans.  The engine derives its backward pass as for any component: the gradient of
a broadcast operand is the sum over the axes it lacks, with no rule written for it.
A reduction is a component with a ``Sum`` over the reduced axes.  Data movement
(concatenation, indexing, padding) has a module of its own, ``derivations/movement_ops.py``.
Work on integers and booleans (attention masks, positions, indices) is counted apart
from FLOPs, marked ``integer``.
"""

from __future__ import annotations

import sympy as sp

from derivations import layers
from symflop import Component, sigmoid, softplus, total
from symflop.estimate.calls import FREE, Keep, OpCall, TensorRef, Unknown, Use

SECTION = "Network operations"


# -- the elementwise functions: aten name -> (operand positions, SymPy function) ---------
def _select(c, a, b):
    return sp.Piecewise((a, sp.Ne(c, 0)), (b, True))


def _test(rel):
    return lambda a, b: sp.Piecewise((1, rel(a, b)), (0, True))


def _clamp(a, lo=None, hi=None):
    out = a if lo is None else sp.Max(a, lo)
    return out if hi is None else sp.Min(out, hi)


def _hardsigmoid(a):
    return sp.Min(sp.Max(a / 6 + sp.Rational(1, 2), 0), 1)


# Each operand is (position, keyword, default); a default of None means "absent".
# ``CONCRETE`` names the operands whose Python value decides the count (an exponent,
# a scale of 1): they enter the equation as numbers, every other number as a symbol.
_A = (0, "self", None)
_B = (1, "other", None)
_ALPHA = (2, "alpha", 1)
FUNCTIONS: dict[str, tuple[tuple, object]] = {
    "add": ((_A, _B, _ALPHA), lambda a, b, al: a + al * b),
    "sub": ((_A, _B, _ALPHA), lambda a, b, al: a - al * b),
    "rsub": ((_A, _B, _ALPHA), lambda a, b, al: b - al * a),
    "mul": ((_A, _B), lambda a, b: a * b),
    "div": ((_A, _B), lambda a, b: a / b),
    "true_divide": ((_A, _B), lambda a, b: a / b),
    "neg": ((_A,), lambda a: -a),
    "reciprocal": ((_A,), lambda a: 1 / a),
    "exp": ((_A,), sp.exp),
    "expm1": ((_A,), lambda a: sp.exp(a) - 1),
    "log": ((_A,), sp.log),
    "log1p": ((_A,), lambda a: sp.log(1 + a)),
    "sqrt": ((_A,), sp.sqrt),
    "rsqrt": ((_A,), lambda a: 1 / sp.sqrt(a)),
    "sin": ((_A,), sp.sin),
    "cos": ((_A,), sp.cos),
    "tanh": ((_A,), sp.tanh),
    "sigmoid": ((_A,), sigmoid),
    "erf": ((_A,), sp.erf),
    "atan": ((_A,), sp.atan),
    "abs": ((_A,), sp.Abs),
    "sign": ((_A,), sp.sign),
    "floor": ((_A,), sp.floor),
    "ceil": ((_A,), lambda a: -sp.floor(-a)),
    "trunc": ((_A,), lambda a: sp.sign(a) * sp.floor(sp.Abs(a))),
    "round": ((_A,), lambda a: sp.floor(a + sp.Rational(1, 2))),
    "pow": (((0, "self", None), (1, "exponent", None)), lambda a, b: a ** b),
    "square": ((_A,), lambda a: a ** 2),
    "softplus": ((_A,), softplus),
    "silu": ((_A,), lambda a: a * sigmoid(a)),
    "mish": ((_A,), lambda a: a * sp.tanh(softplus(a))),
    "hardsigmoid": ((_A,), _hardsigmoid),
    "hardswish": ((_A,), lambda a: a * _hardsigmoid(a)),
    "leaky_relu": ((_A, (1, "negative_slope", 0.01)),
                   lambda a, s: sp.Piecewise((a, a > 0), (s * a, True))),
    "elu": ((_A, (1, "alpha", 1.0)),
            lambda a, s: sp.Piecewise((a, a > 0), (s * (sp.exp(a) - 1), True))),
    "clamp": ((_A, (1, "min", None), (2, "max", None)), _clamp),
    "clamp_min": ((_A, (1, "min", None)), lambda a, lo: sp.Max(a, lo)),
    "clamp_max": ((_A, (1, "max", None)), lambda a, hi: sp.Min(a, hi)),
    "hardtanh": ((_A, (1, "min_val", -1.0), (2, "max_val", 1.0)), _clamp),
    "minimum": ((_A, _B), sp.Min),
    "maximum": ((_A, _B), sp.Max),
    "fmin": ((_A, _B), sp.Min),
    "fmax": ((_A, _B), sp.Max),
    "where": (((0, "condition", None), (1, "self", None), (2, "other", None)), _select),
    "masked_fill": ((_A, (1, "mask", None), (2, "value", None)),
                    lambda a, m, v: _select(m, v, a)),
    "eq": ((_A, _B), _test(sp.Eq)),
    "ne": ((_A, _B), _test(sp.Ne)),
    "lt": ((_A, _B), _test(sp.Lt)),
    "le": ((_A, _B), _test(sp.Le)),
    "gt": ((_A, _B), _test(sp.Gt)),
    "ge": ((_A, _B), _test(sp.Ge)),
    "logical_not": ((_A,), lambda a: sp.Piecewise((1, sp.Eq(a, 0)), (0, True))),
    "bitwise_not": ((_A,), lambda a: sp.Piecewise((1, sp.Eq(a, 0)), (0, True))),
    **{f"{p}_{k}": ((_A, _B), f) for p in ("logical", "bitwise")
       for k, f in (("and", sp.Min), ("or", sp.Max), ("xor", _test(sp.Ne)))},
    "lerp": ((_A, (1, "end", None), (2, "weight", None)), lambda a, b, w: a + w * (b - a)),
    "addcmul": ((_A, (1, "tensor1", None), (2, "tensor2", None), (3, "value", 1)),
                lambda s, a, b, v: s + v * a * b),
    "addcdiv": ((_A, (1, "tensor1", None), (2, "tensor2", None), (3, "value", 1)),
                lambda s, a, b, v: s + v * a / b),
}
CONCRETE = {"add": (2,), "sub": (2,), "rsub": (2,), "pow": (1,), "addcmul": (3,),
            "addcdiv": (3,)}


def _number(v) -> sp.Expr:
    """A Python number as an exact SymPy number (2.0 -> 2, 0.5 -> 1/2)."""
    if isinstance(v, bool):
        return sp.Integer(int(v))
    return sp.nsimplify(v, rational=True) if isinstance(v, float) else sp.sympify(v)


def is_tensor(v) -> bool:
    return isinstance(v, TensorRef)


def integer_work(call: OpCall) -> bool:
    """Work on integers and booleans only (masks, positions, indices): not FLOPs."""
    ts = call.tensor_args() + list(call.outputs)
    return bool(ts) and not any(t.floating for t in ts)


def grad_names(*named: tuple[str, object]) -> tuple[str, ...]:
    """The names of the tensors among ``named`` that need a gradient."""
    return tuple(n for n, t in named if is_tensor(t) and t.requires_grad and t.floating)


# -- broadcast patterns ---------------------------------------------------------------------
def broadcast_pattern(out_shape: tuple, operands: list) -> tuple[list, tuple]:
    """(sizes of the merged axes of the output, per operand the merged axes it spans; None
    for a Python number).  Axes of size 1 are dropped; neighbouring axes that every
    operand spans or lacks alike are merged into one."""
    rank = len(out_shape)
    axes = [j for j in range(rank) if out_shape[j] != 1]
    spans = []
    for t in operands:
        if not is_tensor(t):
            spans.append(None)
            continue
        off = rank - len(t.shape)
        spans.append(tuple(j - off >= 0 and t.shape[j - off] != 1 for j in axes))
    groups: list[list[int]] = []
    for p in range(len(axes)):
        if groups and all(s is None or s[p] == s[groups[-1][-1]] for s in spans):
            groups[-1].append(p)
        else:
            groups.append([p])
    if not groups:
        return [sp.Integer(1)], tuple(None if s is None else (0,) for s in spans)
    sizes = [sp.Mul(*[out_shape[axes[p]] for p in g]) for g in groups]
    pattern = tuple(None if s is None else tuple(k for k, g in enumerate(groups) if s[g[0]])
                    for s in spans)
    return sizes, pattern


def _indexed(c: Component, name: str, dims: list, idx: tuple, axes: tuple):
    t = c.input(name, tuple(dims[j] for j in axes))
    return t[tuple(idx[j] for j in axes)] if axes else t.symbol


def pointwise(op: str = "mul", axes: int = 1, pattern: tuple = ((0,), (0,)),
              numbers: tuple = (), wrt: tuple[str, ...] = ("a0",)) -> Component:
    """y = f(a0, a1, ...) elementwise, f from ``FUNCTIONS[op]``, over ``axes`` merged axes;
    operand n spans the axes ``pattern[n]`` (None: a number, ``numbers[n]`` if given,
    else a hyperparameter ``sN``)."""
    f = FUNCTIONS[op][1]
    c = Component(op, SECTION, f"elementwise {op}", reference=f"torch.ops.aten.{op}")
    dims = [c.dim(f"D{j}") for j in range(axes)]
    idx = tuple(sp.Idx(f"i{j}", dims[j]) for j in range(axes))
    values = []
    for n, p in enumerate(pattern):
        if p is not None:
            values.append(_indexed(c, f"a{n}", dims, idx, p))
        elif n < len(numbers) and numbers[n] is not None:
            values.append(numbers[n])
        else:
            values.append(c.hyper(f"s{n}", **{f"s{n}": 0.5}))
    y = c.output("y", tuple(dims))
    c.assign("forward", y[idx], f(*values))
    layers.gradient_of(c, y, wrt)
    return c


def _rule_pointwise(op: str):
    positions, _f = FUNCTIONS[op]

    def rule(call: OpCall):
        operands = [call.arg(p, kw, default) for p, kw, default in positions]
        y = call.outputs[0]
        if any(v is None for v in operands):  # clamp with one bound: drop the other
            if op not in ("clamp", "hardtanh"):
                return Unknown(f"{op} without its operand")
            return _clamp_rule(call, operands)
        sizes, pattern = broadcast_pattern(tuple(y.shape), operands)
        concrete = CONCRETE.get(op, ())
        numbers = tuple(_number(v) if p is None and n in concrete else None
                        for n, (v, p) in enumerate(zip(operands, pattern)))
        named = [(f"a{n}", v) for n, v in enumerate(operands)]
        integer = integer_work(call)
        wrt = () if integer else grad_names(*named)
        tensors = {n: v for n, v in named if is_tensor(v)} | {"y": y}
        return [Use(op, pointwise, {"op": op, "axes": len(sizes), "pattern": pattern,
                                    "numbers": numbers, "wrt": wrt},
                    {f"D{j}": s for j, s in enumerate(sizes)}, tensors, integer=integer)]
    return rule


def _clamp_rule(call: OpCall, operands: list):
    a, lo, hi = operands
    if lo is None and hi is None:
        return FREE
    op = "clamp_min" if hi is None else "clamp_max"
    fake = OpCall(f"aten.{op}", call.overload, call.module, call.module_type,
                  (a, lo if hi is None else hi), {}, call.outputs)
    return _rule_pointwise(op)(fake)


# -- reductions -----------------------------------------------------------------------------
def reduction(op: str = "sum", reduced: tuple[bool, ...] = (False, True),
              wrt: tuple[str, ...] = ("x",)) -> Component:
    """y over the kept axes = the sum (``mean``: the mean) of x over the reduced ones;
    x's axes merged where neighbours are both kept or both reduced."""
    c = Component(f"{op}-over-axes", SECTION, f"{op} over some axes",
                  reference=f"torch.{op}")
    dims = [c.dim(f"D{j}") for j in range(len(reduced))]
    idx = tuple(sp.Idx(f"i{j}", dims[j]) for j in range(len(reduced)))
    x = c.input("x", tuple(dims))
    kept = [j for j, r in enumerate(reduced) if not r]
    gone = [idx[j] for j, r in enumerate(reduced) if r]
    body = total(x[idx], *gone)
    if op == "mean":
        body = body / sp.Mul(*[dims[j] for j, r in enumerate(reduced) if r])
    if kept:
        y = c.output("y", tuple(dims[j] for j in kept))
        c.assign("forward", y[tuple(idx[j] for j in kept)], body)
    else:
        y = c.output("y")
        c.assign("forward", y, body)
    layers.gradient_of(c, y, wrt)
    return c


def _reduced_axes(call: OpCall, x: TensorRef) -> tuple[list, tuple] | None:
    """Merged axis sizes of x and which are reduced, from the call's ``dim``."""
    nd = len(x.shape)
    dims = call.arg(1, "dim")
    if isinstance(dims, int):
        dims = [dims]
    gone = {d % nd for d in dims} if dims else set(range(nd))
    flags = [(x.shape[j], j in gone) for j in range(nd) if x.shape[j] != 1]
    if not flags:
        return None
    sizes, reduced = [flags[0][0]], [flags[0][1]]
    for size, r in flags[1:]:
        if r == reduced[-1]:
            sizes[-1] = sizes[-1] * size
        else:
            sizes.append(size)
            reduced.append(r)
    return sizes, tuple(reduced)


def _rule_reduction(op: str):
    def rule(call: OpCall):
        x = call.args[0]
        merged = _reduced_axes(call, x)
        if merged is None:
            return FREE
        sizes, reduced = merged
        if not any(reduced):
            return FREE
        integer = integer_work(call)
        kind = "mean" if op == "mean" else "sum"
        wrt = () if integer else grad_names(("x", x))
        use = Use(op, reduction, {"op": kind, "reduced": reduced, "wrt": wrt},
                  {f"D{j}": s for j, s in enumerate(sizes)},
                  {"x": x, "y": call.outputs[0]}, integer=integer,
                  forward_only=kind == "mean")
        if kind != "mean" or not wrt:
            return [use]
        # torch's mean backward spreads the gradient first, then divides each value
        return [use, work("mean backward: each value divided", "div", numel(x),
                          backward=True)]
    return rule


def counted(kind: str = "add", wrt: tuple[str, ...] = ()) -> Component:
    """N operations of one kind: work whose count is known but whose values do not matter
    here (a scatter's additions, a maximum's compares)."""
    c = Component(f"{kind}-work", SECTION, f"N operations of kind {kind}")
    N = c.dim("N")
    i = c.index(i=N)
    a, b = c.input("a", (N,)), c.input("b", (N,))
    y = c.output("y", (N,))
    body = {"add": a[i] + b[i], "mul": a[i] * b[i], "div": a[i] / b[i],
            "compare": sp.Piecewise((1, sp.Lt(a[i], b[i])), (0, True)),
            "transcendental": sp.exp(a[i])}[kind]
    c.assign("forward", y[i], body)
    layers.gradient_of(c, y, wrt)
    return c


def work(label: str, kind: str, n: sp.Expr, backward: bool = False,
         integer: bool = False) -> Use:
    """A Use counting ``n`` operations of ``kind`` (in the backward pass if asked)."""
    return Use(label, counted, {"kind": kind}, {"N": sp.expand(n)}, backward_only=backward,
               integer=integer)


def numel(t) -> sp.Expr:
    return sp.Mul(*t.shape) if is_tensor(t) else sp.Integer(1)


def _rule_extremum(call: OpCall):
    """amax/amin/max.dim/min.dim/argmax: (n - 1) compares per output; backward (values
    that need a gradient) as torch's: a mask of the maxima (a compare per input value),
    its count (a sum), the gradient shared out (a division per output, a multiplication
    per input value)."""
    x = call.args[0]
    y = call.outputs[0]
    n_in, n_out = numel(x), numel(y)
    integer = integer_work(call)
    uses = [work("maximum over axes", "compare", n_in - n_out, integer=integer)]
    if not integer and x.requires_grad and y.floating and x.floating:
        uses += [work("maximum: mask of the maxima", "compare", n_in, backward=True),
                 work("maximum: count of the maxima", "add", n_in - n_out, backward=True),
                 work("maximum: gradient shared", "div", n_out, backward=True),
                 work("maximum: gradient masked", "mul", n_in, backward=True),
                 Keep((x, y), "the input and the maxima")]
    return uses


def _rule_cumsum(call: OpCall):
    """A running sum along one axis: (n - 1) additions per row, and the same in the
    backward (a reversed running sum)."""
    x, dim = call.args[:2]
    n = x.shape[dim % len(x.shape)]
    adds = numel(x) / n * (n - 1)
    integer = integer_work(call)
    uses = [work("running sum", "add", adds, integer=integer)]
    if not integer and x.requires_grad:
        uses.append(work("running sum (reversed)", "add", adds, backward=True))
    return uses


def _rule_sort(call: OpCall):
    """A sort of each row of n values: n ceil(log2 n) compares (a comparison sort's
    bound; torch's kernel is one), where n is a number; a symbolic n has no polynomial
    count: unknown.  The backward puts each gradient back at its index."""
    x = call.args[0]
    dim = call.arg(1, "dim", -1)
    dim = dim if isinstance(dim, int) else -1
    n = x.shape[dim % len(x.shape)] if x.shape else sp.Integer(1)
    if not n.is_number:
        return Unknown("a sort along a symbolic size (n log n compares: not a polynomial)")
    depth = max(int(n) - 1, 0).bit_length()     # ceil(log2 n)
    outputs = [t for t in call.outputs if not t.floating]
    return [work("sort", "compare", numel(x) * depth, integer=integer_work(call)),
            *([Keep(tuple(outputs), "the indices")] if x.requires_grad and outputs else [])]


def _rule_topk(call: OpCall):
    """The k largest of each row of n: k passes of (n - 1) compares (a selection); the
    backward puts each gradient back at its index (no arithmetic)."""
    x, k = call.args[:2]
    dim = call.arg(2, "dim", -1)
    n = x.shape[dim % len(x.shape)]
    return [work("top-k selection", "compare", numel(x) / n * k * (n - 1),
                 integer=integer_work(call)),
            Keep((call.outputs[1],), "the indices")]


RULES = {
    **{f"aten.{op}": _rule_pointwise(op) for op in FUNCTIONS},
    "aten.sum": _rule_reduction("sum"),
    "aten.mean": _rule_reduction("mean"),
    **{f"aten.{op}": _rule_extremum for op in ("amax", "amin", "max", "min", "argmax",
                                               "argmin", "any", "all")},
    "aten.cumsum": _rule_cumsum,
    "aten.topk": _rule_topk,
    "aten.sort": _rule_sort,
    "aten.argsort": _rule_sort,
}
