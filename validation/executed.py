"""Executed-operation counts: what the generated torch code actually runs, by kind.

``OpCounter`` is a ``TorchDispatchMode``: while the generated code of a pass runs
under it, every aten operation torch executes is recorded (operation, input and
output shapes and dtypes) and costed with ``ATEN_COSTS`` under the convention of
the symbolic counter (``symflop.core.ir``, README "Counting convention"): kinds add,
mul, div, transcendental, compare, random; an elementwise operation costs its
per-element count times the number of elements of its (broadcast) result; a sum
costs (input elements - output elements) additions; views, copies and tensor
creation from a Python number cost nothing.  An operation outside the table is
reported as unknown, never counted as zero silently.

The symbolic side is the engine's own count of the equations
(``Derivation.counts(pass).by_kind``, default convention).  It includes scalar
work on hyperparameters and sizes (``1/(B*d)``, ``1 - beta1``), which the
generated code computes once in Python floats, where the dispatcher never sees
it.  ``symbolic_array_counts`` therefore re-tallies the same program with the
engine's own lowering (``symflop.cost.counting.lowerer_for``, ``symflop.core.ir.step_root``)
and leaves out every node whose value is a Python number at run time: a node that
reads no tensor (indexed tensors, random draws, and the scalar tensors that are
torch tensors at run time).  An empty index set alone is not the criterion: in
``L = L_sum/(B*d)`` the division has no indices but divides a 0-dimensional torch
tensor, and the dispatcher sees it.

``compare`` puts the two side by side and ``explain`` accounts for every
difference, stage by stage, naming the aten operations responsible:

1. one-hot gather: the equations count ``sum_k onehot[.., k] * f`` as a gather;
   the code multiplies by the one-hot tensor (aten.mul) and sums (aten.sum);
2. stability rewrites (``symflop.rewrite.stability``): the code runs the rewritten program
   (a sum of exponentials as aten.logsumexp, ``log(1 + exp(u))`` as aten.softplus,
   ``log(1 + u)`` as aten.log1p, a logistic derivative ``exp(u)/(1 + exp(u))**2`` as
   ``1/((1 + exp(-u))*(1 + exp(u)))``, ...); the difference of the two programs'
   counts, operation by operation (``code_programs`` rebuilds the rewritten program
   as ``symflop.derive`` does and checks that it prints the stored source);
3. aten.logsumexp runs max-shifted: amax, masking of infinite maxima, shift and
   add-back on top of the exp, sum and log of the equations;
4. torch operations that count differently from the code's operation tree:
   Python's ``c / x`` on a tensor runs as ``x.reciprocal() * c``
   (``torch.Tensor.__rtruediv__``), a division and a multiplication.

Whatever the four stages leave is reported as unexplained.

Costing decisions (``ATEN_COSTS`` and ``_cost``):

* softplus: 1 transcendental per element, as the symbolic convention counts
  ``softplus`` (``symflop.core.ir.TRANSCENDENTAL``) and every library function (tanh,
  erf): the kernel's internal branch (``x > threshold ? x : log1p(exp(x))``) is
  the function's implementation, not work the program asks for.
* logsumexp over n input and m output elements: what ATen's kernel
  (ReduceOps.cpp, ``logsumexp_out_impl``; its nested ops are amax, abs, eq,
  masked_fill_, sub, exp_, sum, log_, add_) executes: amax n - m compares, the
  masking of infinite maxima (abs, == inf, masked_fill) 3m compares, the shift
  n subtractions, exp n transcendentals, the sum n - m additions, log m
  transcendentals, the add-back m additions.  In all: add 2n, compare n + 2m,
  transcendental n + m.
* pow: an exponent that is a Python ``int`` n >= 2 (how the code prints ``x**n``)
  costs n - 1 multiplications; any other exponent (a float such as a
  hyperparameter's value, or a tensor) one transcendental, a general power, as
  the symbolic convention counts ``x**gamma``.
* where(c, 1, 0) on a boolean c: the conversion of a comparison to numbers (an
  indicator ``Piecewise((1, c), (0, True))``), the same as ``_to_copy`` of a
  boolean tensor: zero, as the convention counts an indicator as its comparison
  only.  Any other where is a compare/select per element.
* reciprocal: one division per element.

Run ``python -m validation.executed [NAME ...]`` for the table of every catalogue
component and pass at its reference's sizes.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field

import sympy as sp
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from symflop.core.functions import log1p, softplus
from symflop.core.ir import Node, step_root
from symflop.core.model import Role
from symflop.core.program import Program, ref_name, tensor_refs
from symflop.cost.conventions import KINDS
from symflop.cost.counting import gather_one_hot, lowerer_for
from symflop.lower.backends import get_backend
from symflop.lower.codegen import generate
from symflop.rewrite import stability as stabilize_module
from symflop.rewrite.autodiff import grad_name
from symflop.rewrite.stability import stabilize

# aten operation (overload packet) -> (kind, operations per output element).
_ELEMENTWISE = {
    **dict.fromkeys(("add", "sub", "rsub"), ("add", 1)),
    **dict.fromkeys(("mul", "neg"), ("mul", 1)),
    **dict.fromkeys(("div", "reciprocal", "remainder", "fmod"), ("div", 1)),
    **dict.fromkeys(("exp", "log", "sqrt", "log1p", "softplus", "tanh", "sin", "cos", "erf"),
                    ("transcendental", 1)),
    **dict.fromkeys(("maximum", "minimum", "where", "ge", "gt", "le", "lt", "eq", "ne", "abs",
                     "sign", "floor", "heaviside", "masked_fill", "logical_and", "logical_or",
                     "logical_not"), ("compare", 1)),
    **dict.fromkeys(("rand", "rand_like", "uniform"), ("random", 1)),
}
# Views, copies, dtype conversions and tensor creation from a Python number: no arithmetic.
ZERO_COST = frozenset((
    "view", "_unsafe_view", "reshape", "permute", "unsqueeze", "squeeze", "expand", "clone",
    "detach", "_to_copy", "copy", "copy_", "alias", "as_strided", "t", "transpose", "slice",
    "select", "lift_fresh", "lift_fresh_copy", "scalar_tensor", "_local_scalar_dense",
))
REDUCTIONS = {"sum": "add"}  # (input elements - output elements) operations of the kind

# The table as documentation: aten operation -> what one call costs.
ATEN_COSTS = {
    **{op: f"{n} {kind} per output element" for op, (kind, n) in _ELEMENTWISE.items()},
    "pow": "int exponent n >= 2: n - 1 mul per output element; otherwise 1 transcendental",
    "sum": "input elements - output elements add",
    "logsumexp": "n input, m output elements: add 2n, compare n + 2m, transcendental n + m",
    **dict.fromkeys(ZERO_COST, "zero"),
}
ATEN_COSTS["where"] += " (where(c, 1, 0) on a boolean c: zero, a conversion)"


def logsumexp_cost(n, m) -> dict:
    """What ATen's logsumexp executes over n input and m output elements, by kind."""
    return {"compare": (n - m) + 3 * m,   # amax; abs, == inf, masked_fill of the maxima
            "add": n + (n - m) + m,       # shift x - max; the sum; add-back of the max
            "transcendental": n + m}      # exp; log


def logsumexp_equation_cost(n, m) -> dict:
    """What the equations ``log(sum(exp(x)))`` count over n input and m output elements."""
    return {"add": n - m, "transcendental": n + m}


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
    outs = _tensors(out)
    numel = sum(t.numel() for t in outs)
    if name in ZERO_COST:
        return {}, ""
    if name == "pow":
        exponent = args[1] if len(args) > 1 else kwargs.get("exponent")
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
    if name == "logsumexp":
        return logsumexp_cost(args[0].numel(), numel), "max-shifted log-sum-exp"
    if name in _ELEMENTWISE:
        kind, n = _ELEMENTWISE[name]
        return {kind: n * numel}, ""
    return None, f"no cost for {func}"


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
    values = _pass_values(fn, values)
    counter = OpCounter()
    with counter:
        out = fn(backend=xp, check=False, **values)
    return Executed(counter.by_kind, counter.unknown, counter.records, out, counter.by_op)


def _pass_values(fn, values: dict) -> dict:
    """The values a compiled pass reads (a missing one is left for it to report)."""
    return {n: v for n, v in values.items() if n in fn.signature.inputs}


# ----------------------------------------------------------------------------- symbolic side

def _int(expr, sizes: dict) -> int:
    expr = sp.sympify(expr)
    return int(expr.subs({s: sizes[s.name] for s in expr.free_symbols}))


def symbolic_counts(derivation, pass_name: str, sizes: dict) -> dict[str, int]:
    """The engine's count of the equations (default convention), by kind, at ``sizes``."""
    by_kind = derivation.counts(pass_name).by_kind
    return {k: _int(by_kind[k], sizes) for k in KINDS}


_CMP = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge", "==": "eq", "!=": "ne"}


def _label(n: Node) -> str:
    """The aten operation a node runs as."""
    if n.op in ("add", "sub", "mul", "neg", "div", "pow"):
        return f"aten.{n.op}"
    if n.op == "fn":
        return {"powf": "aten.pow", "mod": "aten.remainder", "uniform": "aten.rand"}.get(
            n.leaf, f"aten.{n.leaf}")
    if n.op in ("max", "min"):
        return f"aten.{n.op}imum"
    if n.op == "cmp":
        return f"aten.{_CMP[n.leaf]}"
    if n.op in ("and", "or", "not"):
        return f"aten.logical_{n.op}"
    return f"aten.{n.op}"


def tally(program: Program, arrays=None, gather: bool = True,
          logsumexp: str = "equation") -> dict[tuple[str, str], sp.Expr]:
    """(aten operation, kind) -> count of ``program``, as the engine counts it.

    The same lowering and rules as ``symflop.cost.counting`` (default convention: each
    step on its own, identical subexpressions once per step).  ``arrays``: None
    counts every node (the engine's count); a set of names counts only the nodes
    whose value is a torch tensor at run time, the set naming the scalar tensors
    that are torch tensors when the pass starts (non-scalar tensors always are; a
    scalar a step writes is one when its value is).  ``gather``: a one-hot sum is a
    gather (the convention) or dense (the code).  ``logsumexp``: a logsumexp node
    costs its equation (``equation``) or what ATen executes (``executed``).
    """
    lower = lowerer_for(program.tensors)
    runtime = None if arrays is None else set(arrays)
    acc: dict = defaultdict(lambda: sp.Integer(0))
    memo: dict = {}

    def is_array(n: Node) -> bool:
        hit = memo.get(n)
        if hit is None:
            if n.op == "ref":
                hit = isinstance(n.leaf, sp.Indexed) or n.leaf.name in runtime
            elif n.op == "fn" and n.leaf == "uniform":
                hit = True
            else:
                hit = any(is_array(a) for a in n.args)
            memo[n] = hit
        return hit

    for st in program.steps:
        memo.clear()  # scalar tensors may change between steps
        sizes = {k: k.upper + 1 for k in st.space}
        body, reduce = st.body, st.reduce
        if gather and reduce and st.op == "sum" and isinstance(body, sp.Mul):
            body, reduce = gather_one_hot(body, reduce, program.tensors, sizes)
        root = step_root(body, reduce, lower, st.op) if st.reduce else lower(body)
        seen: set = set()

        def size(idx, sizes=sizes) -> sp.Expr:
            return sp.Mul(*[sizes[k] for k in idx])

        def visit(n: Node, size=size, seen=seen) -> None:
            if n in seen:
                return
            seen.add(n)
            for a in n.args:
                visit(a)
            if runtime is not None and not is_array(n):
                return  # a Python number: computed outside torch
            if n.op == "where" and runtime is not None and not is_array(n.args[0]):
                return  # a Python condition: the backend returns a branch, no select
            if n.op == "sum":
                inner = n.args[0]
                present = [k for k in n.leaf if k in inner.idx]
                acc["aten.sum", "add"] += size(n.idx) * (size(present) - 1)
                if len(present) < len(n.leaf):
                    acc["aten.mul", "mul"] += size(n.idx)
                return
            if n.op == "logsumexp":
                cost = (logsumexp_cost if logsumexp == "executed" else logsumexp_equation_cost)(
                    size(n.args[0].idx), size(n.idx))
                for k, v in cost.items():
                    acc["aten.logsumexp", k] += v
                return
            if n.kind is None:
                return
            acc[_label(n), n.kind] += n.ops * size(n.idx)

        visit(root)
        if runtime is not None and (st.idx or is_array(root)):
            runtime.add(st.lhs)
    return {k: sp.expand(v) for k, v in acc.items()}


def by_kind(t: dict) -> dict[str, sp.Expr]:
    out = dict.fromkeys(KINDS, sp.Integer(0))
    for (_, kind), v in t.items():
        out[kind] += v
    return {k: sp.expand(v) for k, v in out.items()}


def symbolic_array_counts(derivation, pass_name: str, sizes: dict,
                          arrays=()) -> dict[str, int]:
    """The engine's count of the equations without the work done in Python numbers.

    ``arrays`` names the scalar tensors passed as torch tensors (0-dimensional);
    scalars passed as Python floats, hyperparameters and sizes are Python numbers.
    """
    t = by_kind(tally(derivation.programs[pass_name], arrays=set(arrays)))
    return {k: _int(t[k], sizes) for k in KINDS}


def code_programs(derivation) -> dict[str, Program]:
    """The stabilized programs the generated code was printed from, as ``symflop.derive``
    makes them; checked against the stored source (an error if they differ)."""
    first = next(iter(derivation.programs.values()))
    keep = {n for n, t in first.tensors.items()
            if t.role in (Role.OUTPUT, Role.STATE, Role.PARAMETER)}
    keep |= {grad_name(w) for w in derivation.fused}
    out: dict = {}
    replaced: dict = {}
    tensors: dict = {}
    for name, p in derivation.programs.items():
        tensors.update(p.tensors)
        stable, replaced = stabilize(Program(p.name, p.steps, dict(tensors)), keep, replaced)
        tensors.update(stable.tensors)
        source, _ = generate(stable, name.replace("-", "_").replace(".", "_"))
        if not _same_source(source, derivation.sources[name][0]):
            raise RuntimeError(f"{derivation.component}.{name}: the reconstructed stabilized "
                               "program does not print the stored source")
        out[name] = stable
    return out


def _same_source(a: str, b: str) -> bool:
    """Equal sources, up to the order of the arguments: ``symflop.lower.codegen.signature``
    lists hyperparameters in the iteration order of a set of symbols, which varies with
    PYTHONHASHSEED, so a cached derivation may have been printed with another order."""
    (ha, _, ra), (hb, _, rb) = a.partition("\n"), b.partition("\n")
    args = re.compile(r"^def (\w+)\((.*)\):$")
    ma, mb = args.match(ha), args.match(hb)
    return (ra == rb and ma is not None and mb is not None and ma[1] == mb[1]
            and sorted(ma[2].split(", ")) == sorted(mb[2].split(", ")))


# ----------------------------------------------------------------------------- comparison

@dataclass(frozen=True)
class Note:
    """Part of the difference executed - symbolic: ``delta`` by kind, caused by ``ops``."""

    cause: str
    ops: tuple[str, ...]
    delta: dict
    explained: bool = True

    def __post_init__(self):  # kinds that do not change are left out
        object.__setattr__(self, "delta", {k: v for k, v in self.delta.items() if v})

    @property
    def text(self) -> str:
        d = ", ".join(f"{k} {v:+,}" for k, v in self.delta.items() if v) or "no change by kind"
        return f"{d}: {', '.join(self.ops)}: {self.cause}"


@dataclass
class Row:
    """Symbolic and executed counts of one pass, by kind, with the explanation."""

    component: str
    pass_name: str
    sizes: dict
    symbolic: dict       # the engine's count of the equations
    array: dict          # the same without the work done in Python numbers
    executed: dict       # what the dispatcher saw
    unknown: list
    notes: list

    @property
    def scalar(self) -> dict:
        """Work the equations count that runs in Python numbers, outside torch."""
        return {k: self.symbolic[k] - self.array[k] for k in KINDS}

    @property
    def differing(self) -> list[str]:
        return [k for k in KINDS if self.executed[k] != self.array[k]]

    @property
    def matches(self) -> bool:
        return not self.differing and not self.unknown


def _sub(a: dict, b: dict) -> dict:
    return {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b)}


def _num(t: dict, sizes: dict) -> dict:
    return {key: _int(v, sizes) for key, v in t.items()}


def _kinds(t: dict) -> dict:
    out = dict.fromkeys(KINDS, 0)
    for (_, kind), v in t.items():
        out[kind] += v
    return out


def _ops(delta: dict) -> tuple[str, ...]:
    return tuple(sorted({op for (op, _), v in delta.items() if v}))


def _op_text(delta: dict) -> str:
    return "; ".join(f"{op} {v:+,} {kind}" for (op, kind), v in sorted(delta.items()) if v)


def _rewrites(eq: Program, code: Program) -> list[str]:
    """The stability rewrites (``symflop.rewrite.stability``) that changed ``eq`` into ``code``."""
    found: list[str] = []

    def add(text: str) -> None:
        if text not in found:
            found.append(text)

    logistic = getattr(stabilize_module, "rewrite_logistic", None)
    for st in eq.steps:
        logs = stabilize_module.rewrite_logs(st.body)
        if logs != st.body:
            if logs.has(softplus) and not st.body.has(softplus):
                add("log(1 + exp(u)) -> softplus(u)")
            elif logs.has(log1p) and not st.body.has(log1p):
                add("log(1 + u) -> log1p(u)")
            else:
                add("log(1/x) -> -log(x)")
        if logistic is not None and logistic(logs) != logs:
            add("exp(u)/(1 + exp(u))**n -> 1/((1 + exp(-u))*(1 + exp(u))**(n - 1))")
    if any(st.op == "logsumexp" for st in code.steps):
        add("log of a sum of exponentials -> logsumexp")
    lse = {n for n in code.tensors if n not in eq.tensors}
    for st in code.steps:
        if st.op == "logsumexp" or not any(ref_name(r) in lse
                                           for r in tensor_refs(st.body, code.tensors)):
            continue
        if isinstance(st.body, (sp.Indexed, sp.Symbol)):
            add("log(s) of a sum of exponentials s -> lse, a copy")
        else:
            add("a sum of exponentials s is read as exp(lse), exponentials combined "
                "(exp(z)/s -> exp(z - lse))")
    return found


_NORMAL = {"aten.rsub": "aten.sub"}  # torch's reflected forms, same operation


def explain(derivation, pass_name: str, executed: Executed, sizes: dict,
            arrays=(), code: dict | None = None) -> list[Note]:
    """Notes that account for executed - symbolic-array, stage by stage (module docstring).

    ``code``: ``code_programs(derivation)``, when the caller has it already."""
    eq = derivation.programs[pass_name]
    code = (code or code_programs(derivation))[pass_name]
    s0 = _num(tally(eq, arrays=set(arrays)), sizes)
    s1 = _num(tally(eq, arrays=set(arrays), gather=False), sizes)
    s2 = _num(tally(code, arrays=set(arrays), gather=False), sizes)
    s3 = _num(tally(code, arrays=set(arrays), gather=False, logsumexp="executed"), sizes)
    notes = []
    gather = _sub(s1, s0)
    if any(gather.values()):
        notes.append(Note("a sum against a one-hot tensor is counted as a gather (no "
                          "multiplications by the one-hot values, no additions along its "
                          "axis); the code computes it densely: " + _op_text(gather),
                          _ops(gather), _kinds(gather)))
    rewrites = _sub(s2, s1)
    if any(rewrites.values()):
        which = _rewrites(eq, code)
        notes.append(Note("the code runs the stability rewrites of the equations ("
                          + ("; ".join(which) or "symflop.stabilize") + "): "
                          + _op_text(rewrites), _ops(rewrites), _kinds(rewrites)))
    shift = _sub(s3, s2)
    if any(shift.values()):
        notes.append(Note("aten.logsumexp runs max-shifted (ATen's kernel: amax, masking of "
                          "infinite maxima with abs, eq and masked_fill, the shift x - max, "
                          "exp, sum, log, add-back of the max); the equations count exp, "
                          "sum and log only", ("aten.logsumexp",), _kinds(shift)))
    residual = _sub(_kinds(executed.by_op), _kinds(s3))
    # Only a reciprocal that is followed by a multiplication (a Python c / x, c != 1) adds
    # work: the generated code's own xp.reciprocal(x) is the one division counted.
    recip = min(sum(r.out_numel for r in executed.records if r.op == "aten.reciprocal"),
                max(residual.get("mul", 0), 0))
    if recip:
        notes.append(Note("Python's c / x on a tensor runs as x.reciprocal() * c "
                          "(torch.Tensor.__rtruediv__): a division and a multiplication "
                          "where the equations count one division",
                          ("aten.reciprocal", "aten.mul"), {"mul": recip}))
        residual["mul"] -= recip
    if any(residual.values()):
        ex: dict = defaultdict(int)
        for (op, kind), v in executed.by_op.items():
            ex[_NORMAL.get(op, op), kind] += v
        diff = _sub(dict(ex), s3)
        notes.append(Note("unexplained difference between the executed operations and the "
                          "code's operation tree: " + _op_text(diff), _ops(diff),
                          {k: v for k, v in residual.items() if v}, explained=False))
    return notes


def arrays_of(values: dict) -> set[str]:
    """Names of the 0-dimensional torch tensors among ``values``."""
    return {k for k, v in values.items() if isinstance(v, torch.Tensor) and v.ndim == 0}


def compare(derivation, pass_name: str, values: dict, sizes: dict, seed: int | None = None,
            backend=None) -> Row:
    """Symbolic and executed counts of one pass, side by side, with ``explain``'s notes."""
    ex = executed_counts(derivation, pass_name, values, seed, backend)
    return _row(derivation, pass_name, values, sizes, ex)


def _row(derivation, pass_name, values, sizes, ex: Executed, code=None) -> Row:
    arrays = arrays_of(_pass_values(derivation.compiled(pass_name), values))
    return Row(derivation.component, pass_name, dict(sizes),
               symbolic_counts(derivation, pass_name, sizes),
               symbolic_array_counts(derivation, pass_name, sizes, arrays),
               dict(ex.by_kind), [r.overload for r in ex.unknown],
               explain(derivation, pass_name, ex, sizes, arrays, code))


def compare_passes(derivation, values: dict, sizes: dict, seed: int | None = 0) -> list[Row]:
    """``compare`` for every pass in order, each reading what earlier passes produced
    (as ``validation.harness.run_passes``), with one backend for all random draws."""
    xp = get_backend("torch", seed)
    code = code_programs(derivation)
    env = dict(values)
    rows = []
    for name in derivation.passes:
        args = {n: env[n] for n in derivation.compiled(name).signature.inputs}
        ex = executed_counts(derivation, name, args, backend=xp)
        rows.append(_row(derivation, name, args, sizes, ex, code))
        env.update(ex.outputs)
    return rows


def format_rows(rows: list[Row]) -> str:
    """A plain-text table: per pass and kind, symbolic (Python part), array, executed."""
    lines = [f"{'component':20} {'pass':9} {'kind':14} {'symbolic':>9} {'python':>7} "
             f"{'array':>8} {'executed':>9}"]
    for r in rows:
        for k in KINDS:
            if r.symbolic[k] or r.executed[k]:
                mark = "" if r.executed[k] == r.array[k] else "  *"
                lines.append(f"{r.component:20} {r.pass_name:9} {k:14} {r.symbolic[k]:9,} "
                             f"{r.scalar[k]:7,} {r.array[k]:8,} {r.executed[k]:9,}{mark}")
        for n in r.notes:
            lines.append(f"    note {'' if n.explained else '(UNEXPLAINED) '}{n.text}")
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
