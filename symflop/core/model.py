"""Component model: dimensions, tensors with roles, and programs of indexed assignments.

A component is written as SymPy: tensors are ``IndexedBase`` objects (scalars are
plain symbols), indices are ``Idx`` objects whose range is a symbolic dimension,
and each pass is an ordered list of assignments ``lhs[idx] = rhs``.  Everything
else (gradients, counts, memory, code) is derived from these assignments.
"""

from __future__ import annotations

import enum
import keyword
import re
from dataclasses import dataclass, field, replace

import sympy as sp

from symflop.errors import ComponentError

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
DERIVED_PASSES = ("backward", "gradient")  # the engine writes these; an author may not
# Names the engine generates: adjoints and the intermediates of split sums.
_RESERVED = re.compile(r"^grad_|_(sum|part|lse|draw)\d*$")


def size_symbol(name: str) -> sp.Symbol:
    """A size (B, d, P, ...): a positive integer symbol. SymPy tells symbols apart by
    their assumptions, so every size is made here, the same wherever it is made."""
    return sp.Symbol(name, integer=True, positive=True)

class Role(enum.Enum):
    """What a tensor is for; roles decide what is differentiated and what is state."""

    INPUT = "input"
    TARGET = "target"
    PARAMETER = "parameter"
    HYPER = "hyperparameter"
    STATE = "state"
    INTERMEDIATE = "intermediate"
    OUTPUT = "output"


class Fact(enum.Enum):
    """Facts about a tensor's values that a derivation may rely on (and must say so)."""

    ROWS_SUM_TO_ONE = "rows sum to 1 along the last axis"
    ONE_HOT = "one-hot along the last axis"
    NONNEGATIVE = "non-negative"
    MAY_BE_NONFINITE = "may hold infinite or NaN values (the equations test for them)"


def grad_name(name: str) -> str:
    """The name of the tensor that holds the loss's gradient with respect to ``name``."""
    return f"grad_{name}"


@dataclass(frozen=True, eq=False)
class Tensor:
    """A named tensor with a symbolic shape and a role."""

    name: str
    shape: tuple[sp.Expr, ...]
    role: Role
    facts: frozenset[Fact] = frozenset()
    doc: str = ""
    initial: float | None = None    # a state's value before the first step (None: 0)
    labels: bool = False            # class indices: shape[-1] is the number of classes

    @property
    def symbol(self) -> sp.Symbol | sp.IndexedBase:
        """The SymPy object that stands for this tensor in equations."""
        if self.role is Role.HYPER:
            return sp.Symbol(self.name, positive=True)
        if not self.shape:
            return sp.Symbol(self.name, real=True)
        return sp.IndexedBase(self.name, real=True)

    @property
    def is_scalar(self) -> bool:
        return not self.shape

    def __getitem__(self, idx) -> sp.Expr:
        if self.is_scalar:
            raise ComponentError(f"tensor {self.name!r} is a scalar and cannot be indexed")
        idx = idx if isinstance(idx, tuple) else (idx,)
        if self.labels and len(idx) == len(self.shape) - 1:
            return label_of(self.symbol, *idx)  # a class index: only ever an index
        if len(idx) != len(self.shape):
            raise ComponentError(
                f"tensor {self.name!r} has {len(self.shape)} axes, indexed with {len(idx)}"
            )
        return self.symbol[idx]

    def has(self, fact: Fact) -> bool:
        if fact is Fact.ROWS_SUM_TO_ONE and Fact.ONE_HOT in self.facts:
            return True
        return fact in self.facts

    # A scalar tensor (a step count, a loss) takes part in arithmetic as its symbol.
    def _sympy_(self) -> sp.Expr:
        if not self.is_scalar:
            names = ", ".join("ijklmnpq"[:len(self.shape)])
            raise ComponentError(f"tensor {self.name!r} has {len(self.shape)} axes: index "
                                 f"it ({self.name}[{names}]) to use it in an equation")
        return self.symbol

    def _arith(self, other, op, reflected=False):
        a, b = self._sympy_(), sp.sympify(other)
        return op(b, a) if reflected else op(a, b)

    def __add__(self, o): return self._arith(o, lambda a, b: a + b)            # noqa: E704
    def __radd__(self, o): return self._arith(o, lambda a, b: a + b, True)     # noqa: E704
    def __sub__(self, o): return self._arith(o, lambda a, b: a - b)            # noqa: E704
    def __rsub__(self, o): return self._arith(o, lambda a, b: a - b, True)     # noqa: E704
    def __mul__(self, o): return self._arith(o, lambda a, b: a * b)            # noqa: E704
    def __rmul__(self, o): return self._arith(o, lambda a, b: a * b, True)     # noqa: E704
    def __truediv__(self, o): return self._arith(o, lambda a, b: a / b)        # noqa: E704
    def __rtruediv__(self, o): return self._arith(o, lambda a, b: a / b, True)  # noqa: E704
    def __pow__(self, o): return self._arith(o, lambda a, b: a ** b)           # noqa: E704
    def __rpow__(self, o): return self._arith(o, lambda a, b: a ** b, True)    # noqa: E704
    def __neg__(self): return -self._sympy_()                                  # noqa: E704


class label_of(sp.Function):  # noqa: N801 - reads like the index it stands for
    """``lab[i]`` of a labels tensor: the class index of row i, allowed only as an index
    (``z[i, lab[i]]``); ``Component.assign`` turns it into a read at the labels."""


@dataclass(frozen=True)
class Assignment:
    """One line of a program: ``lhs[idx] = rhs`` as the author wrote it."""

    lhs: Tensor
    idx: tuple[sp.Idx, ...]
    rhs: sp.Expr


@dataclass
class Pass:
    """An ordered program of assignments (``forward``, ``backward``, ``step``, ...)."""

    name: str
    assignments: list[Assignment] = field(default_factory=list)


@dataclass
class Component:
    """A training component written once as SymPy equations."""

    name: str
    section: str
    summary: str
    reference: str = ""
    tensors: dict[str, Tensor] = field(default_factory=dict)
    dims: dict[str, sp.Symbol] = field(default_factory=dict)
    passes: dict[str, Pass] = field(default_factory=dict)
    differentiate: str | None = None
    wrt: tuple[str, ...] = ()
    grad_pass: str | None = None
    defaults: dict[str, float] = field(default_factory=dict)
    shared: dict[str, sp.Expr] = field(default_factory=dict)

    # -- in a notebook ------------------------------------------------------------
    def _repr_latex_(self) -> str:
        """The equations as written, pass by pass (Jupyter renders this)."""
        rows = [rf"\text{{{self.name}: {_tex_text(self.summary)}}}\\"]
        for p in self.passes.values():
            rows.append(rf"\textbf{{{p.name}}}\\")
            for a in p.assignments:
                lhs = a.lhs.symbol[a.idx] if a.idx else a.lhs.symbol
                rows.append(rf"{_tex(lhs)} &= {_tex(a.rhs)}\\")
        if self.differentiate:
            rows.append(rf"\text{{gradient of {self.differentiate} with respect to "
                        rf"{', '.join(self.wrt)}}}")
        return r"$$\begin{aligned}" + "\n".join(rows) + r"\end{aligned}$$"

    # -- building ---------------------------------------------------------------
    def dim(self, names: str) -> sp.Symbol | tuple[sp.Symbol, ...]:
        """Declare symbolic sizes (positive integers): ``B, d = c.dim("B d")``."""
        out = []
        for n in names.split():
            self._check_name(n, allow_existing_dim=True)
            out.append(self.dims.setdefault(n, size_symbol(n)))
        return out[0] if len(out) == 1 else tuple(out)

    def index(self, **ranges: sp.Expr) -> tuple[sp.Idx, ...]:
        """Declare index variables with their ranges: ``i, j = c.index(i=B, j=d)``."""
        out = []
        for n, size in ranges.items():
            if size not in self.dims.values():
                raise ComponentError(f"index {n!r}: range {size} is not a declared dimension")
            out.append(sp.Idx(n, size))
        return tuple(out) if len(out) != 1 else out[0]

    def tensor(self, name: str, shape: tuple = (), role: Role = Role.INTERMEDIATE,
               facts: tuple[Fact, ...] = (), doc: str = "") -> Tensor:
        self._check_name(name)
        for s in shape:
            if s not in self.dims.values():
                raise ComponentError(f"tensor {name!r}: axis size {s} is not a declared dimension")
        t = Tensor(name, tuple(shape), role, frozenset(facts), doc)
        self.tensors[name] = t
        return t

    def input(self, name, shape=(), **kw) -> Tensor:
        return self.tensor(name, shape, Role.INPUT, **kw)

    def target(self, name, shape=(), **kw) -> Tensor:
        return self.tensor(name, shape, Role.TARGET, **kw)

    def parameter(self, name, shape=(), **kw) -> Tensor:
        return self.tensor(name, shape, Role.PARAMETER, **kw)

    def state(self, name, shape=(), initial: float | None = None, **kw) -> Tensor:
        """Persistent state; ``initial`` is its value before the first step (default 0),
        e.g. 1.0 for a running product."""
        t = self.tensor(name, shape, Role.STATE, **kw)
        if initial is not None:
            t = self.tensors[name] = replace(t, initial=float(initial))
        return t

    def labels(self, name, shape, classes, role: Role = Role.TARGET, doc: str = "") -> Tensor:
        """Class indices, one per element of ``shape``, each in 0..classes-1 (an integer
        tensor).  ``lab[i]`` indexes another tensor: ``z[i, lab[i]]`` reads z at the
        labels, counted as a gather, differentiated as a scatter.  Stored as a one-hot
        tensor over ``classes`` that the generated code reads as integer labels."""
        if classes not in self.dims.values():
            raise ComponentError(f"labels {name!r}: classes {classes} is not a declared "
                                 "dimension")
        t = self.tensor(name, (*shape, classes), role, (Fact.ONE_HOT,), doc)
        t = self.tensors[name] = replace(t, labels=True)
        return t

    def output(self, name, shape=(), **kw) -> Tensor:
        return self.tensor(name, shape, Role.OUTPUT, **kw)

    def intermediate(self, name, shape=(), **kw) -> Tensor:
        return self.tensor(name, shape, Role.INTERMEDIATE, **kw)

    def gradient(self, t: Tensor) -> Tensor:
        """The tensor the derived passes hold the loss's gradient with respect to ``t``
        in (``grad_y`` for ``y``), to name a term of the gradient with ``name_shared``."""
        return Tensor(grad_name(t.name), t.shape, Role.INTERMEDIATE)

    def name_shared(self, name: str, expr: sp.Expr) -> None:
        """A name for a subexpression the rewrite may compute once and share between
        steps (``c.name_shared("xc", x[i, j] - mu[j])``): the step that computes it is
        named so, not after its first reader (``var_sum_cse``).  Indices match by
        position, whatever their names in the step."""
        if name in self.tensors or name in self.shared:
            raise ComponentError(f"{self.name}: {name!r} is already a tensor or shared name")
        self.shared[name] = sp.sympify(expr)

    def hyper(self, names: str, **defaults: float) -> sp.Symbol | tuple[sp.Symbol, ...]:
        """Scalar hyperparameters (positive symbols), never differentiated.

        Keyword arguments record customary values (``lr=1e-3``), used by worked
        examples and checks, never by a derivation.
        """
        out = [self.tensor(n, (), Role.HYPER).symbol for n in names.split()]
        unknown = set(defaults) - set(names.split())
        if unknown:
            raise ComponentError(f"default for undeclared hyperparameter(s) {sorted(unknown)}")
        self.defaults.update(defaults)
        return out[0] if len(out) == 1 else tuple(out)

    def assign(self, pass_name: str, lhs, rhs) -> None:
        """Append ``lhs = rhs`` to a pass; ``lhs`` is ``t[i, j]`` or a scalar tensor."""
        self._check_pass_name(pass_name)
        tensor, idx = self._split_lhs(lhs)
        try:
            value = sp.sympify(rhs, strict=True)
        except (sp.SympifyError, TypeError, ValueError):
            value = None
        if not isinstance(value, sp.Expr):
            raise ComponentError(f"component {self.name!r}, pass {pass_name!r}: the right-hand "
                                 f"side of {tensor.name!r} must be a SymPy expression or a "
                                 f"number, not {type(rhs).__name__} {rhs!r:.60}")
        if value.has(label_of):
            value = self._read_at_labels(value, tensor.name)
        self.passes.setdefault(pass_name, Pass(pass_name)).assignments.append(
            Assignment(tensor, idx, value))

    def _check_pass_name(self, pass_name) -> None:
        """A pass names a generated function: an identifier, and not one the engine
        derives (``backward``, ``gradient``), which would silently replace it."""
        function = pass_name.replace("-", "_") if isinstance(pass_name, str) else ""
        if not _NAME.match(function) or keyword.iskeyword(function) or function in ("xp",):
            raise ComponentError(f"component {self.name!r}: pass name {pass_name!r} must be "
                                 "letters, digits, '_' and '-' (not a Python keyword): it "
                                 "names a generated function")
        if pass_name in DERIVED_PASSES:
            raise ComponentError(f"component {self.name!r}: pass {pass_name!r} is derived by "
                                 "the engine from set_gradient; give a hand-written pass "
                                 "another name")

    def set_gradient(self, of: Tensor, wrt: tuple[Tensor, ...],
                     pass_name: str | None = None) -> None:
        """Declare what reverse mode differentiates: ``of`` with respect to ``wrt``.

        ``pass_name`` is the pass that computes ``of`` (default: the first that does).
        """
        if pass_name is not None:
            self._check_pass_name(pass_name)
        self.differentiate = of.name
        self.wrt = tuple(t.name for t in wrt)
        self.grad_pass = pass_name

    def _read_at_labels(self, value: sp.Expr, lhs: str) -> sp.Expr:
        """``z[i, lab[i]]`` -> sum_k lab[i, k] z[i, k] with lab one-hot: the form the
        engine counts as a gather and differentiates as a scatter."""
        reads = {}
        for node in value.atoms(sp.Indexed):
            labelled = [a for a in node.indices if isinstance(a, label_of)]
            if not labelled:
                continue
            if len(labelled) > 1:
                raise ComponentError(f"component {self.name!r}, {lhs}: {node} is indexed "
                                     "by two labels")
            lab = labelled[0]
            t = self.tensors[str(lab.args[0])]
            k = sp.Idx(f"{t.name}_class", t.shape[-1])
            pos = list(node.indices).index(lab)
            moved = node.base[tuple(k if n == pos else a for n, a in enumerate(node.indices))]
            reads[node] = sp.Sum(t.symbol[(*lab.args[1:], k)] * moved, (k, 0, k.upper))
        value = value.xreplace(reads)
        if value.has(label_of):
            raise ComponentError(f"component {self.name!r}, {lhs}: a labels tensor "
                                 "(lab[i]) can only index another tensor, as in z[i, lab[i]]")
        return value

    # -- helpers ------------------------------------------------------------------
    def _split_lhs(self, lhs) -> tuple[Tensor, tuple[sp.Idx, ...]]:
        if isinstance(lhs, Tensor):
            if not lhs.is_scalar:
                raise ComponentError(f"assignment to {lhs.name!r} needs indices")
            return lhs, ()
        if isinstance(lhs, sp.Indexed):
            name = str(lhs.base)
            if name not in self.tensors:
                raise ComponentError(f"assignment to unknown tensor {name!r}")
            return self.tensors[name], tuple(lhs.indices)
        if isinstance(lhs, sp.Symbol) and lhs.name in self.tensors:
            return self.tensors[lhs.name], ()
        raise ComponentError(f"cannot assign to {lhs!r}")

    def _check_name(self, name: str, allow_existing_dim: bool = False) -> None:
        if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name) \
                or name in ("xp",):
            raise ComponentError(f"component {self.name!r}: {name!r} is not a valid name "
                                 "(letters, digits, underscore; not a Python keyword)")
        if _RESERVED.search(name):
            raise ComponentError(f"component {self.name!r}: {name!r}: names starting 'grad_' "
                                 "or ending '_sum', '_part', '_lse' or '_draw' are reserved "
                                 "for derived tensors")
        if name in self.tensors or (name in self.dims and not allow_existing_dim):
            raise ComponentError(f"{name!r} is declared twice in component {self.name!r}")


def _tex(e: sp.Expr) -> str:
    """LaTeX with index variables printed as their names (not with their ranges)."""
    plain = {i: sp.Symbol(i.name) for i in e.atoms(sp.Idx)}
    return sp.latex(e.xreplace(plain))


def _tex_text(text: str) -> str:
    return "".join("\\" + ch if ch in "&%$#_{}" else ch for ch in text)


def total(expr: sp.Expr, *indices: sp.Idx) -> sp.Sum:
    """``Sum`` of ``expr`` over the full range of each index."""
    return sp.Sum(expr, *[(k, k.lower, k.upper) for k in indices])
