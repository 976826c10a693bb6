"""Lowering of elementwise SymPy expressions to a small operation tree.

The counter (``symflop.cost.counting``) and the code printer
(``symflop.lower.codegen``) both work on this tree, so the code of a program
executes what is counted for it.  Each node records the indices it depends on;
a node is evaluated once over the index space of those indices, so a
loop-invariant subexpression (``1/(B*d)``, ``sqrt(var[j] + eps)``) is computed
once per distinct value, not once per element.

Lowering rules (the counting convention is stated in terms of them):

* ``a + b + c``: terms are combined from the fewest indices up; a term with a
  negative coefficient is subtracted (``a + (-1)*b`` is one subtraction); a
  common numeric factor is pulled out first (SymPy distributes ``2*(a - b)``).
* one sign for ``a - b`` and ``b - a``: of an expression and its negation the
  one with fewer negative terms (then the first in SymPy's sort order) is
  computed, and the other is its negation, which is folded into the enclosing
  sum, product, even power or even function (``abs``, ``cos``) at no cost.  So
  ``abs(yhat - y)`` and ``(y - yhat)**2`` share one subtraction.
* ``a * b / (c * d)``: factors that depend on fewer indices than the product
  are combined first (hoisted); the numerator and the denominator are each
  multiplied out and joined by one division.
* ``x**n`` (integer n >= 2): n - 1 multiplications; ``x**(1/2)``: a square root;
  any other power: one general power (transcendental).
* a reduction: factors of its body that do not depend on the reduced indices
  multiply the sum once per output element; a body that uses none of them is
  n copies.
* ``Piecewise((1, c), (0, True))`` is the comparison c itself; ``Mod`` is a
  division, ``uniform(...)`` one random draw; every other function is a row of
  ``symflop.core.ops`` and costs what its row says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sympy as sp

from symflop.core.ops import BY_NAME, BY_SYMPY
from symflop.errors import ComponentError

COMPARE_NODES = {"max", "min", "where", "cmp", "and", "or", "not"}
EVEN_FUNCTIONS = {"abs", "cos"}
ODD_FUNCTIONS = {"sign", "sin", "tanh", "atan", "erf"}


@dataclass(frozen=True)
class Node:
    """One operation: ``op`` on ``args``; ``leaf`` holds the SymPy leaf or function name."""

    op: str
    args: tuple[Node, ...] = ()
    leaf: Any = None  # a SymPy leaf, a function's name, the reduced indices, ...
    idx: frozenset = frozenset()

    @property
    def kind(self) -> str | None:
        """Kind of operation this node costs (``None`` for leaves and reductions)."""
        if self.op in ("ref", "const", "indicator", "sum", "amax"):
            return None  # reductions are tallied by the counter from their sizes
        if self.op in ("add", "sub"):
            return "add"
        if self.op in ("mul", "neg", "pow"):
            return "mul"
        if self.op == "div":
            return "div"
        if self.op in COMPARE_NODES:
            return "compare"
        if self.op == "fn":
            if self.leaf == "powf":
                return "transcendental"
            if self.leaf == "mod":
                return "div"
            if self.leaf == "uniform":
                return "random"
            return BY_NAME[self.leaf].kind
        raise ComponentError(f"no operation kind for {self.op!r}")

    @property
    def ops(self) -> int:
        """How many operations of ``kind`` one evaluation costs."""
        return int(self.leaf) - 1 if self.op == "pow" else (0 if self.kind is None else 1)

    @property
    def reads_tensor(self) -> bool:
        """Does the value depend on a tensor (else it is a Python number at run time)?"""
        return _reads_tensor(self)


_READS: dict = {}


def _reads_tensor(n: Node) -> bool:
    hit = _READS.get(n)
    if hit is None:
        if n.op == "ref" or (n.op == "fn" and n.leaf == "uniform"):
            hit = True
        else:
            hit = any(_reads_tensor(a) for a in n.args)
        if len(_READS) > 1 << 17:
            _READS.clear()
        _READS[n] = hit
    return hit


def _node(op: str, *args: Node, leaf=None) -> Node:
    idx = frozenset().union(*(a.idx for a in args)) if args else frozenset()
    return Node(op, tuple(args), leaf, idx)


def _negate(n: Node) -> Node:
    return n.args[0] if n.op == "neg" else _node("neg", n)


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


def _negative_terms(e: sp.Expr) -> int:
    return sum(1 for t in sp.Add.make_args(e) if t.as_coeff_Mul()[0].is_negative)


def canonical_first(a: sp.Expr, b: sp.Expr) -> bool:
    """Is ``a`` computed rather than ``b = -a``?  Fewer negative terms first, then
    SymPy's sort order, so that exactly one of the two is ever computed."""
    ka, kb = _negative_terms(a), _negative_terms(b)
    if ka != kb:
        return ka < kb
    return sp.default_sort_key(a) < sp.default_sort_key(b)


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
        acc, sign, neg = _fold_all("add", neg), -1, []
    for n in _order(neg):
        acc = _node("sub", acc, n)
    if not low:
        return acc, sign
    part, psign = _signed_sum(low)
    if psign == sign:
        return _node("add", acc, part), sign
    return (_node("sub", acc, part), sign) if sign > 0 else (_node("sub", part, acc), psign)


def _fold_all(op: str, nodes: list[Node]) -> Node:
    """``_fold`` of operands known to be there (an expression's arguments)."""
    acc = _fold(op, nodes)
    if acc is None:
        raise ComponentError(f"{op} of no operands")
    return acc


def _fold(op: str, nodes: list[Node]) -> Node | None:
    acc = None
    for n in _order(nodes):
        acc = n if acc is None else _node(op, acc, n)
    return acc


def reduction_root(body: sp.Expr, reduce: tuple, lower: Lowerer, op: str = "sum",
                   labelled: tuple = ()) -> Node:
    """The operation tree of a reduction (``sum`` or ``amax``) over ``reduce`` of ``body``.

    Factors of a sum's body that do not depend on the reduced indices are applied
    once per output element, after the sum (``sum_i c[j]*f[i, j]`` is
    ``c[j] * sum_i f[i, j]``).  An index in ``labelled`` has one value (a label).
    """
    bound = set(reduce)
    if op == "amax":
        inner = lower(body)
        if not inner.idx & bound:
            return inner  # the maximum of equal values
        return Node("amax", (inner,), tuple(reduce), inner.idx - bound)
    factors = sp.Mul.make_args(body)
    outer = [f for f in factors if not (f.free_symbols & bound)]
    summed = [f for f in factors if f.free_symbols & bound]
    if not summed:  # nothing depends on the summed indices: a sum of equal terms
        return lower(sp.Mul(*outer, *[k.upper + 1 for k in reduce if k not in labelled]))
    inner_node = lower(sp.Mul(*summed))
    reduced = Node("sum", (inner_node,), tuple(reduce), inner_node.idx - bound)
    if not outer:
        return reduced
    stand_in = sp.Dummy("reduced", real=True)
    lower.bind(stand_in, reduced)
    return lower(sp.Mul(*outer, stand_in))


def step_root(step, lower: Lowerer) -> Node:
    """The operation tree of a normal-form step (``symflop.core.program.Step``).

    Indices gathered at a one-hot tensor's label are reduced over too: they have
    one value per output element, so that sum adds nothing."""
    reduce = step.reduce + tuple(k for k, _ in step.gather)
    if not reduce:
        return settle(lower(step.body))
    return settle(reduction_root(step.body, reduce, lower,
                                 "amax" if step.reduce_op == "max" else "sum", step.labelled))


def settle(root: Node) -> Node:
    """Negations no parent absorbed, done without a multiplication where possible:
    ``-(a - b)`` is ``b - a``, ``-(c*x)`` and ``-(c/x)`` take the sign into the constant.
    A node used twice is not rewritten: its value is needed as it is."""
    uses: dict[Node, int] = {}

    def count(n: Node) -> None:
        uses[n] = uses.get(n, 0) + 1
        if uses[n] == 1:
            for a in n.args:
                count(a)

    count(root)
    shared = {n for n, k in uses.items() if k > 1}
    memo: dict[Node, Node] = {}

    def go(n: Node) -> Node:
        hit = memo.get(n)
        if hit is not None:
            return hit
        args = tuple(go(a) for a in n.args)
        out = Node(n.op, args, n.leaf, n.idx) if args != n.args else n
        if out.op == "neg":
            out = _free_negation(out.args[0], shared) or out
        memo[n] = out
        return out

    return go(root)


def _free_negation(n: Node, shared=frozenset()) -> Node | None:
    """A node computing ``-n`` with no more operations than ``n`` (and no node of
    ``shared`` rewritten), if there is one."""
    if n.op == "neg":
        return n.args[0]
    if n in shared:
        return None
    if n.op == "sub":
        return Node("sub", n.args[::-1], n.leaf, n.idx)
    if n.op in ("mul", "div") and n.args[0].op == "const" \
            and not isinstance(n.args[0].leaf, sp.Symbol):
        return Node(n.op, (Node("const", (), -n.args[0].leaf), n.args[1]), n.leaf, n.idx)
    if n.op in ("mul", "div"):  # -(a*b) = (-a)*b, -(a/b) = (-a)/b
        for k in (0, 1):
            f = _free_negation(n.args[k], shared)
            if f is not None:
                args = (f, n.args[1]) if k == 0 else (n.args[0], f)
                return Node(n.op, args, n.leaf, n.idx)
    if n.op == "add":
        for a, b in (n.args, n.args[::-1]):
            f = _free_negation(a, shared)
            if f is not None:
                return Node("sub", (f, b), None, n.idx)
    return None


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

    def _unsigned(self, e: sp.Expr) -> tuple[Node, bool]:
        """``e`` lowered, with a negation taken off: (node, negated)."""
        n = self(e)
        return (n.args[0], True) if n.op == "neg" else (n, False)

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
            return _fold_all("max" if isinstance(e, sp.Max) else "min",
                             [self(a) for a in e.args])
        if isinstance(e, sp.Piecewise):
            return self._piecewise(e)
        if isinstance(e, sp.core.relational.Relational):
            return _node("cmp", self(e.lhs), self(e.rhs), leaf=e.rel_op)
        if isinstance(e, (sp.And, sp.Or)):
            return _fold_all("and" if isinstance(e, sp.And) else "or",
                             [self(a) for a in e.args])
        if isinstance(e, sp.Not):
            return _node("not", self(e.args[0]))
        if isinstance(e, sp.Function) and e.func.__name__ == "uniform":
            if not all(isinstance(a, sp.Idx) for a in e.args):
                raise ComponentError(f"uniform() takes index variables only: {e}")
            return Node("fn", (), "uniform", frozenset(e.args))
        if isinstance(e, sp.Mod):
            return _node("fn", self(e.args[0]), self(e.args[1]), leaf="mod")
        if e.func in BY_SYMPY:
            return self._fn(e)
        if isinstance(e, sp.Sum):
            raise ComponentError(f"a sum inside an elementwise body was not split: {e}")
        if isinstance(e, sp.Function):
            raise ComponentError(
                f"unsupported function {e.func.__name__!r} in {e}: it has no row in "
                "symflop's table of elementary functions (symflop/core/ops.py)")
        raise ComponentError(f"unsupported operation {type(e).__name__} in {e}")

    def _fn(self, e: sp.Expr) -> Node:
        op = BY_SYMPY[e.func]
        args = e.args
        if op.name == "heaviside" and len(args) == 2:
            if args[1] != sp.S.Half:
                raise ComponentError(f"Heaviside with H(0) = {args[1]}: only 1/2 is supported")
            args = args[:1]
        if len(args) != 1:
            raise ComponentError(f"{op.name} takes one argument: {e}")
        inner, negated = self._unsigned(args[0])
        if negated and op.name in EVEN_FUNCTIONS:
            return _node("fn", inner, leaf=op.name)
        if negated and op.name in ODD_FUNCTIONS:
            return _negate(_node("fn", inner, leaf=op.name))
        return _node("fn", self(args[0]), leaf=op.name)

    def _add(self, e: sp.Add) -> Node:
        neg = -e
        if not canonical_first(e, neg):
            return _negate(self(neg))
        content, prim = e.primitive()
        if all(t.as_coeff_Mul()[0].is_negative for t in sp.Add.make_args(prim)):
            content, prim = -content, -prim  # -2*x - 2*y is (-2)*(x + y)
        if _worth_pulling(content, prim):
            return self._mul(sp.Mul(content, prim, evaluate=False))
        terms = []
        for t in e.args:
            coeff, rest = t.as_coeff_Mul()
            if coeff.is_negative:
                node, negated = self._unsigned(rest if coeff == -1 else -t)
                terms.append((node, 1 if negated else -1))
            else:
                node, negated = self._unsigned(t)
                terms.append((node, -1 if negated else 1))
        node, sign = _signed_sum(terms)
        return node if sign > 0 else _negate(node)

    def _mul(self, e: sp.Expr) -> Node:
        coeff, factors = e.as_coeff_mul()
        pulled = []
        for f in factors:  # 2*(a - b) was distributed by SymPy: take the 2 back out
            if isinstance(f, sp.Add):
                content, prim = f.primitive()
                if _worth_pulling(content, prim):
                    coeff, f = coeff * content, prim
            pulled.append(f)
        negative = bool(coeff.is_negative)
        nums, dens = [], []
        for f in pulled:
            base, ex = f.as_base_exp() if isinstance(f, sp.Pow) else (f, sp.Integer(1))
            if ex.is_Number and ex.is_negative:
                node, negated = self._unsigned(base if ex == -1 else sp.Pow(base, -ex))
                dens.append(node)
            else:
                node, negated = self._unsigned(f)
                nums.append(node)
            negative ^= negated
        magnitude = abs(coeff)
        negate = False
        if magnitude != 1:
            nums.append(Node("const", (), -magnitude if negative else magnitude))
        else:
            negate = negative
        full = frozenset().union(*(n.idx for n in nums + dens))
        if negate:  # a factor that negates for free takes the sign (b - a for a - b)
            for group in (nums, dens):
                for node in _order(group):
                    free = _free_negation(node)
                    if free is not None:
                        group[group.index(node)] = free
                        negate = False
                        break
                if not negate:
                    break
        if negate and any(n.idx < full for n in nums + dens):
            nums.append(Node("const", (), sp.Integer(-1)))  # absorbed by the hoisted factor
            negate = False
        low_n = [n for n in nums if n.idx < full]
        low_d = [n for n in dens if n.idx < full]
        l_num, l_den = _fold("mul", low_n), _fold("mul", low_d)
        h_num = _fold("mul", [n for n in nums if n.idx == full])
        h_den = _fold("mul", [n for n in dens if n.idx == full])
        coef: Node | None
        if l_num is not None and l_den is not None:
            coef, l_den = _node("div", l_num, l_den), None
        else:
            coef = l_num
        top = _times(coef, h_num)
        bottom = _times(l_den, h_den)
        if bottom is not None and top is None:  # a reciprocal: -1/x is one division
            top, negate = Node("const", (), sp.Integer(-1 if negate else 1)), False
        if top is None:
            top = Node("const", (), sp.Integer(1))
        if bottom is not None:
            top = _node("div", top, bottom)
        return _negate(top) if negate else top

    def _pow(self, e: sp.Pow) -> Node:
        base, ex = e.args
        if ex.is_Number and ex.is_negative:
            return self._mul(sp.Mul(sp.Integer(1), e, evaluate=False))
        if ex.is_Integer and ex >= 2:
            inner, negated = self._unsigned(base)
            node = _node("pow", inner, leaf=int(ex))
            return _negate(node) if negated and ex % 2 else node
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
