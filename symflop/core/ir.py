"""Lowering of elementwise SymPy expressions to a small operation tree.

The counter and the code printer both work on this tree, so the code of a
program executes what is counted for it, with two exceptions that are stated
where they arise: counts are taken of the equations, while the code runs them
after the stability rewrites (``symflop.rewrite.stability``: log-sum-exp adds a max and a
shift, softplus replaces log(1 + exp)); and a sum against a one-hot tensor is
counted as a gather but computed as a dense product.  Each node records the
indices it depends on; a node is evaluated once over the index space of those
indices, so a loop-invariant subexpression (``1/(B*d)``, ``sqrt(var[j] + eps)``)
is computed once per distinct value, not once per element.

Lowering rules (the counting convention is stated in terms of them):

* ``a + b + c``: terms are combined from the fewest indices up; a term with a
  negative coefficient is subtracted (``a + (-1)*b`` is one subtraction); a
  common numeric factor is pulled out first (SymPy distributes ``2*(a - b)``).
* ``a * b / (c * d)``: factors that depend on fewer indices than the product
  are combined first (hoisted); the numerator and the denominator are each
  multiplied out and joined by one division.
* ``x**n`` (integer n >= 2): n - 1 multiplications; ``x**(1/2)``: a square root;
  any other power: one general power (transcendental).
* a sum: factors of its body that do not depend on the summed indices multiply
  the sum once per output element; a body that uses none of them is n copies.
* ``Piecewise((1, c), (0, True))`` is the comparison c itself; ``floor`` is a
  compare/select, ``Mod`` a division, ``uniform(...)`` one random draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symflop.errors import ComponentError

TRANSCENDENTAL = {"exp", "log", "sqrt", "log1p", "softplus", "tanh", "sin", "cos", "erf", "powf"}
COMPARE = {"abs", "sign", "max", "min", "where", "cmp", "and", "or", "not", "heaviside", "floor"}
DIVIDE = {"mod"}
RANDOM = {"uniform"}

_FUNCS = {
    sp.exp: "exp", sp.log: "log", sp.Abs: "abs", sp.sign: "sign", sp.tanh: "tanh",
    sp.sin: "sin", sp.cos: "cos", sp.erf: "erf", sp.Heaviside: "heaviside",
    sp.floor: "floor",
}


@dataclass(frozen=True)
class Node:
    """One operation: ``op`` on ``args``; ``leaf`` holds the SymPy leaf or function name."""

    op: str
    args: tuple[Node, ...] = ()
    leaf: object = None
    idx: frozenset = frozenset()

    @property
    def kind(self) -> str | None:
        """Kind of operation this node costs (``None`` for leaves)."""
        if self.op in ("ref", "const", "indicator", "sum", "logsumexp"):
            return None  # sums are tallied by the counter from their sizes
        if self.op in ("add", "sub"):
            return "add"
        if self.op in ("mul", "neg", "pow"):
            return "mul"
        if self.op == "div" or self.leaf in DIVIDE:
            return "div"
        name = self.leaf if self.op == "fn" else self.op
        if name in TRANSCENDENTAL:
            return "transcendental"
        if name in COMPARE:
            return "compare"
        if name in RANDOM:
            return "random"
        raise ComponentError(f"no operation kind for {name!r}")

    @property
    def ops(self) -> int:
        """How many operations of ``kind`` one evaluation costs."""
        return int(self.leaf) - 1 if self.op == "pow" else (0 if self.kind is None else 1)


def _node(op: str, *args: Node, leaf=None) -> Node:
    idx = frozenset().union(*(a.idx for a in args)) if args else frozenset()
    return Node(op, tuple(args), leaf, idx)


def _order(nodes):
    """Fewest indices first (hoisting); ties broken by a stable textual key."""
    return sorted(nodes, key=lambda n: (len(n.idx), repr(n)))


def _times(a: Node | None, b: Node | None) -> Node | None:
    if a is None or b is None:
        return b if a is None else a
    return _node("mul", a, b)


def _worth_pulling(content: sp.Expr, prim: sp.Expr) -> bool:
    """Take a common numeric factor out of a sum only when that saves work: every term
    of what is left has coefficient +/-1 (2*a - 2*b, a/2 - b/2; not a + b/2)."""
    return content != 1 and all(abs(t.as_coeff_Mul()[0]) == 1 for t in sp.Add.make_args(prim))


def _signed_sum(terms: list[tuple[Node, int]]) -> tuple[Node, int]:
    """Sum of +/- terms, combining terms over fewer indices first; returns (node, sign).

    A sign of -1 means the node holds the negated sum, so that ``x - a - b``
    becomes ``x - (a + b)`` with ``a + b`` computed over a's and b's indices.
    """
    full = frozenset().union(*(n.idx for n, _ in terms))
    low = [t for t in terms if t[0].idx < full]
    high = [t for t in terms if t[0].idx == full]
    if not high:  # e.g. a[i] + b[j]: no term spans the sum; start from the widest terms
        widest = max(len(n.idx) for n, _ in terms)
        high = [t for t in terms if len(t[0].idx) == widest]
        low = [t for t in terms if len(t[0].idx) < widest]
    pos = [n for n, s in high if s > 0]
    neg = [n for n, s in high if s < 0]
    acc, sign = _fold("add", pos), 1
    if acc is None:
        acc, sign, neg = _fold("add", neg), -1, []
    for n in _order(neg):
        acc = _node("sub", acc, n)
    if not low:
        return acc, sign
    part, psign = _signed_sum(low)
    if psign == sign:
        return _node("add", acc, part), sign
    return (_node("sub", acc, part), sign) if sign > 0 else (_node("sub", part, acc), psign)


def _fold(op: str, nodes: list[Node]) -> Node | None:
    acc = None
    for n in _order(nodes):
        acc = n if acc is None else _node(op, acc, n)
    return acc


def step_root(body: sp.Expr, reduce: tuple, lower: Lowerer, op: str = "sum") -> Node:
    """The operation tree of ``op`` (sum or logsumexp) over ``reduce`` of ``body``.

    Factors of a sum's body that do not depend on the summed indices are applied
    once per output element, after the sum (``sum_i c[j]*f[i, j]`` is
    ``c[j] * sum_i f[i, j]``).
    """
    bound = set(reduce)
    factors = sp.Mul.make_args(body) if op == "sum" else (body,)
    outer = [f for f in factors if not (f.free_symbols & bound)]
    inner = [f for f in factors if f.free_symbols & bound]
    if not inner:  # nothing depends on the summed indices: a sum of equal terms
        return lower(sp.Mul(*outer, *[k.upper + 1 for k in reduce]))
    inner_node = lower(sp.Mul(*inner))
    reduced = Node(op, (inner_node,), tuple(reduce), inner_node.idx - bound)
    if not outer:
        return reduced
    stand_in = sp.Dummy("reduced", real=True)
    lower.bind(stand_in, reduced)
    return lower(sp.Mul(*outer, stand_in))


class Lowerer:
    """Turns an elementwise SymPy expression into a ``Node`` tree."""

    def __init__(self, is_tensor_symbol):
        self.is_tensor_symbol = is_tensor_symbol
        self._memo: dict = {}

    def bind(self, e: sp.Expr, node: Node) -> None:
        """Let ``e`` stand for an already lowered node (e.g. a reduction's result)."""
        self._memo[e] = node

    def __call__(self, e: sp.Expr) -> Node:
        hit = self._memo.get(e)
        if hit is None:
            hit = self._memo[e] = self._lower(e)
        return hit

    def _lower(self, e: sp.Expr) -> Node:
        if isinstance(e, sp.Indexed):
            return Node("ref", (), e, frozenset(e.indices))
        if isinstance(e, sp.Idx):
            raise ComponentError(f"index {e} used as a value; only tensors can be indexed by it")
        if isinstance(e, sp.Symbol):
            return Node("ref" if self.is_tensor_symbol(e) else "const", (), e)
        if e.is_Number or e in (sp.pi, sp.E):
            return Node("const", (), e)
        if isinstance(e, sp.Add):
            return self._add(e)
        if isinstance(e, sp.Mul):
            return self._mul(e)
        if isinstance(e, sp.Pow):
            return self._pow(e)
        if isinstance(e, (sp.Max, sp.Min)):
            return _fold("max" if isinstance(e, sp.Max) else "min", [self(a) for a in e.args])
        if isinstance(e, sp.Piecewise):
            return self._piecewise(e)
        if isinstance(e, sp.core.relational.Relational):
            return _node("cmp", self(e.lhs), self(e.rhs), leaf=e.rel_op)
        if isinstance(e, (sp.And, sp.Or)):
            return _fold("and" if isinstance(e, sp.And) else "or", [self(a) for a in e.args])
        if isinstance(e, sp.Not):
            return _node("not", self(e.args[0]))
        if e.func in _FUNCS:
            return _node("fn", self(e.args[0]), leaf=_FUNCS[e.func])
        if isinstance(e, sp.Function) and e.func.__name__ == "uniform":
            if not all(isinstance(a, sp.Idx) for a in e.args):
                raise ComponentError(f"uniform() takes index variables only: {e}")
            return Node("fn", (), "uniform", frozenset(e.args))
        if isinstance(e, sp.Function) and e.func.__name__ in ("log1p", "softplus"):
            return _node("fn", *[self(a) for a in e.args], leaf=e.func.__name__)
        if isinstance(e, sp.Mod):
            return _node("fn", self(e.args[0]), self(e.args[1]), leaf="mod")
        if isinstance(e, sp.Sum):
            raise ComponentError(f"a sum inside an elementwise body was not split: {e}")
        raise ComponentError(f"unsupported operation {type(e).__name__} in {e}")

    def _add(self, e: sp.Add) -> Node:
        content, prim = e.primitive()
        if all(t.as_coeff_Mul()[0].is_negative for t in sp.Add.make_args(prim)):
            content, prim = -content, -prim  # -2*x - 2*y is (-2)*(x + y)
        if _worth_pulling(content, prim):
            return self._mul(sp.Mul(content, prim, evaluate=False))
        terms = []
        for t in e.args:
            coeff, rest = t.as_coeff_Mul()
            if coeff.is_negative:
                terms.append((self(rest if coeff == -1 else -t), -1))
            else:
                terms.append((self(t), 1))
        node, sign = _signed_sum(terms)
        return node if sign > 0 else _node("neg", node)

    def _mul(self, e: sp.Expr) -> Node:
        coeff, factors = e.as_coeff_mul()
        pulled = []
        for f in factors:  # 2*(a - b) was distributed by SymPy: take the 2 back out
            if isinstance(f, sp.Add):
                content, prim = f.primitive()
                if _worth_pulling(content, prim):
                    coeff, f = coeff * content, prim
            pulled.append(f)
        factors = pulled
        negate = coeff == -1
        nums, dens = [], []
        if coeff not in (1, -1):
            nums.append(Node("const", (), coeff))
        for f in factors:
            base, ex = f.as_base_exp() if isinstance(f, sp.Pow) else (f, sp.Integer(1))
            if ex.is_Number and ex.is_negative:
                dens.append(self(base if ex == -1 else sp.Pow(base, -ex)))
            else:
                nums.append(self(f))
        full = frozenset().union(*(n.idx for n in nums + dens))
        if negate and any(n.idx < full for n in nums + dens):
            nums.append(Node("const", (), sp.Integer(-1)))  # absorbed by the hoisted factor
            negate = False
        low_n = [n for n in nums if n.idx < full]
        low_d = [n for n in dens if n.idx < full]
        l_num, l_den = _fold("mul", low_n), _fold("mul", low_d)
        h_num = _fold("mul", [n for n in nums if n.idx == full])
        h_den = _fold("mul", [n for n in dens if n.idx == full])
        if l_num is not None and l_den is not None:
            coef, l_den = _node("div", l_num, l_den), None
        else:
            coef = l_num
        top = _times(coef, h_num)
        bottom = _times(l_den, h_den)
        if bottom is not None and top is None:  # a reciprocal: -1/x is one division
            top, negate = Node("const", (), sp.Integer(-1 if negate else 1)), False
        if bottom is not None:
            top = _node("div", top, bottom)
        return _node("neg", top) if negate else top

    def _pow(self, e: sp.Pow) -> Node:
        base, ex = e.args
        if ex.is_Number and ex.is_negative:
            return self._mul(sp.Mul(sp.Integer(1), e, evaluate=False))
        if ex.is_Integer and ex >= 2:
            return _node("pow", self(base), leaf=int(ex))
        if ex == sp.Rational(1, 2):
            return _node("fn", self(base), leaf="sqrt")
        return _node("fn", self(base), self(ex), leaf="powf")

    def _piecewise(self, e: sp.Piecewise) -> Node:
        *pieces, (last, cond) = e.args
        if cond is not sp.true:
            raise ComponentError(f"Piecewise needs a final (value, True) branch: {e}")
        if len(pieces) == 1 and pieces[0][0] == 1 and last == 0:
            # 1 where the condition holds, else 0: the comparison itself, as a number
            return _node("indicator", self(pieces[0][1]))
        acc = self(last)
        for val, c in reversed(pieces):
            acc = _node("where", self(c), self(val), acc)
        return acc
