"""Normal form: every step is an elementwise map or one reduction of an elementwise body.

``normalize`` checks an author's assignments (known tensors, plain indices whose
ranges match the axes) and splits each ``Sum`` nested inside a larger expression
into a step of its own, writing to a new intermediate tensor.  Differentiation,
counting and code generation all work on this form.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from symflop.core.functions import draws_random, uniform
from symflop.core.model import Component, Role, Tensor
from symflop.errors import ComponentError


@dataclass(frozen=True)
class Step:
    """``lhs[idx] = body`` (``reduce`` empty) or ``lhs[idx] = R over reduce of body``.

    ``reduce_op`` is the reduction R: ``"sum"`` for every step an author or the
    differentiator writes, ``"max"`` for the shift the stability rewrites add to a
    log-sum-exp.  Two forms run a sum against a one-hot tensor ``y`` (its last index
    ``k``) at the labels only (``symflop.rewrite.algebra``):

    * ``gather = ((k, y[..., k]),)``: ``sum_k y[..., k] * body`` is ``body`` at
      ``k = label``; ``k`` is an axis of size one of the step's space;
    * ``scatter = (k, y[..., k], base)``: ``base[idx] + y[..., k] * body`` adds ``body``
      to ``base`` at the labels only.

    ``rhs()`` always gives the mathematical form (the dense product with ``y``).
    """

    lhs: str
    idx: tuple[sp.Idx, ...]
    body: sp.Expr
    reduce: tuple[sp.Idx, ...] = ()
    reduce_op: str = "sum"
    gather: tuple[tuple[sp.Idx, sp.Indexed], ...] = ()
    scatter: tuple[sp.Idx, sp.Indexed, str] | None = None

    @property
    def space(self) -> tuple[sp.Idx, ...]:
        """Index space the body runs over: output indices, reduced ones, gathered ones."""
        return self.idx + self.reduce + tuple(k for k, _ in self.gather)

    @property
    def labelled(self) -> tuple[sp.Idx, ...]:
        """Indices fixed at a one-hot tensor's label (size one when counting)."""
        out = tuple(k for k, _ in self.gather)
        return out + ((self.scatter[0],) if self.scatter else ())

    def rhs(self) -> sp.Expr:
        body = self.body
        for _k, y in self.gather:
            body = y * body
        limits = [(k, k.lower, k.upper) for k in self.reduce + tuple(k for k, _ in self.gather)]
        if self.scatter is not None:
            _k, y, base = self.scatter
            t = sp.IndexedBase(base, real=True)
            return (t[self.idx] if self.idx else sp.Symbol(base, real=True)) + y * body
        if not limits:
            return body
        if self.reduce_op == "max":
            return _MaxOver(body, *[sp.Tuple(*lim) for lim in limits])
        return sp.Sum(body, *limits)


class _MaxOver(sp.Function):  # noqa: N801 - display only: max of body over the limits
    """``max`` over index ranges, for printing a max-reduction step."""

    def _sympystr(self, printer):
        body, *limits = self.args
        return "Max(" + printer._print(body) + ", " + ", ".join(
            printer._print(lim) for lim in limits) + ")"

    def _latex(self, printer):
        body, *limits = self.args
        below = ",".join(printer._print(lim[0]) for lim in limits)
        return r"\max_{" + below + "} " + printer._print(body)


@dataclass
class Program:
    """Normalized steps of one pass, with every tensor they mention."""

    name: str
    steps: list[Step]
    tensors: dict[str, Tensor]

    def defining_step(self, name: str) -> Step | None:
        found = None
        for s in self.steps:
            if s.lhs == name:
                found = s
        return found


def walk(expr: sp.Expr):
    """Pre-order traversal that treats ``x[i, j]`` as a leaf."""
    stack = [expr]
    while stack:
        e = stack.pop()
        yield e
        if not isinstance(e, (sp.Indexed, sp.Idx)):
            stack.extend(reversed(e.args))


def index_symbols(expr: sp.Expr) -> set[sp.Idx]:
    """Free index variables of an expression."""
    return {s for s in expr.free_symbols if isinstance(s, sp.Idx)}


def tensor_refs(expr: sp.Expr, tensors: dict[str, Tensor]) -> list[sp.Expr]:
    """References to non-hyperparameter tensors (``x[i, j]`` or scalar symbols), sorted."""
    leaves = _leaves(expr)
    out = [a for a in leaves if isinstance(a, sp.Indexed)]
    for a in leaves:
        if isinstance(a, sp.Symbol):
            t = tensors.get(a.name)
            if t is not None and t.role is not Role.HYPER and t.is_scalar:
                out.append(a)
    return sorted(out, key=_ref_key)


def _ref_key(ref: sp.Expr) -> tuple:
    """A stable order of references that needs no printing (SymPy's sort key prints)."""
    if isinstance(ref, sp.Indexed):
        return (ref.base.label.name, tuple(str(k) for k in ref.indices))
    return (ref.name, ())


@lru_cache(maxsize=1 << 16)
def _leaves(expr: sp.Expr) -> tuple:
    """The distinct tensor references and plain symbols of ``expr`` (cached: programs are
    read many times by the rewrite search)."""
    out = set()
    for a in walk(expr):
        if isinstance(a, sp.Indexed) or (isinstance(a, sp.Symbol) and not isinstance(a, sp.Idx)):
            out.add(a)
    return tuple(out)


def step_reads(step: Step, tensors: dict[str, Tensor]) -> set[str]:
    """Names of the tensors a step reads (its body, a one-hot tensor, a scatter's base)."""
    out = {ref_name(r) for r in tensor_refs(step.body, tensors)}
    out |= {y.base.label.name for _k, y in step.gather}
    if step.scatter is not None:
        out |= {str(step.scatter[1].base), step.scatter[2]}
    return out


def label_inputs(program: Program) -> frozenset[str]:
    """One-hot tensors the program reads at their labels only (gathers and scatters):
    they are passed as integer labels; any other one-hot tensor is passed densely."""
    gathered, dense = set(), set()
    for st in program.steps:
        gathered |= {y.base.label.name for _k, y in st.gather}
        if st.scatter is not None:
            gathered.add(str(st.scatter[1].base))
        dense |= {ref_name(r) for r in tensor_refs(st.body, program.tensors)}
    return frozenset(gathered - dense)


def host_scalars(program: Program) -> frozenset[str]:
    """Scalar tensors a step computes from hyperparameters and sizes alone: the generated
    code holds them as Python numbers, so work on them alone is done outside any array."""
    host: set[str] = set()
    for st in program.steps:
        if not st.idx and not st.gather and st.scatter is None \
                and step_reads(st, program.tensors) <= host and not draws_random(st.body):
            host.add(st.lhs)
        else:
            host.discard(st.lhs)
    return frozenset(host)


def ref_name(ref: sp.Expr) -> str:
    return ref.base.label.name if isinstance(ref, sp.Indexed) else ref.name


def ref_indices(ref: sp.Expr) -> tuple[sp.Idx, ...]:
    return tuple(ref.indices) if isinstance(ref, sp.Indexed) else ()


def normalize(c: Component, pass_name: str) -> Program:
    """Check a pass and bring it to normal form."""
    if pass_name not in c.passes:
        raise ComponentError(f"component {c.name!r} has no pass {pass_name!r}")
    tensors = dict(c.tensors)
    steps: list[Step] = []
    for a in c.passes[pass_name].assignments:
        where = f"{c.name}.{pass_name}: {a.lhs.name}"
        _check_lhs(a.lhs, a.idx, where)
        _check_expr(a.rhs, tensors, set(a.idx), where)
        steps.extend(split_step(a.lhs.name, a.idx, a.rhs, tensors))
    return Program(pass_name, steps, tensors)


def split_step(lhs: str, idx: tuple[sp.Idx, ...], rhs: sp.Expr,
               tensors: dict[str, Tensor], suffix: str = "sum") -> list[Step]:
    """Split ``rhs`` into normal-form steps, creating intermediates for nested sums.

    The intermediates are named ``{lhs}_{suffix}``, ``{lhs}_{suffix}2``, ...; the
    backward pass uses another suffix so that they never collide with the
    adjoints (``grad_...``) of forward intermediates.
    """
    out: list[Step] = []
    counter = [0]

    def temp_name(kind: str = suffix) -> str:
        while True:
            counter[0] += 1
            name = f"{lhs}_{kind}" + (str(counter[0]) if counter[0] > 1 else "")
            if name not in tensors:
                return name

    lifted: dict[sp.Sum, sp.Expr] = {}

    def lift(expr: sp.Expr, order: tuple[sp.Idx, ...]) -> sp.Expr:
        if isinstance(expr, sp.Sum) and expr in lifted:
            return lifted[expr]
        if isinstance(expr, sp.Sum):
            bound = _limits(expr)
            body = lift(expr.function, order + bound)
            free = index_symbols(expr)
            free_idx = tuple(k for k in order if k in free)
            name = temp_name()
            t = Tensor(name, tuple(k.upper + 1 for k in free_idx), Role.INTERMEDIATE)
            tensors[name] = t
            out.append(Step(name, free_idx, body, bound))
            lifted[expr] = t.symbol[free_idx] if free_idx else t.symbol
            return lifted[expr]
        if isinstance(expr, uniform):
            return draw(expr, order)
        if not expr.args or not expr.has(sp.Sum, uniform):
            return expr
        return expr.func(*[lift(a, order) for a in expr.args])

    def draw(expr: sp.Expr, order: tuple[sp.Idx, ...]) -> sp.Expr:
        """A random draw becomes a tensor of its own, so every later use reads the same
        numbers (the backward pass included) and its memory is counted."""
        if expr in lifted:
            return lifted[expr]
        free_idx = tuple(k for k in order if k in expr.args)
        name = temp_name("draw")
        t = Tensor(name, tuple(k.upper + 1 for k in free_idx), Role.INTERMEDIATE)
        tensors[name] = t
        out.append(Step(name, free_idx, expr.func(*free_idx)))
        lifted[expr] = t.symbol[free_idx] if free_idx else t.symbol
        return lifted[expr]

    if isinstance(rhs, uniform) and tuple(rhs.args) == tuple(idx):
        out.append(Step(lhs, idx, rhs))
    elif isinstance(rhs, sp.Sum):
        bound = _limits(rhs)
        body = lift(rhs.function, idx + bound)
        out.append(Step(lhs, idx, body, bound))
    else:
        out.append(Step(lhs, idx, lift(rhs, idx)))
    return out


def to_steps(lhs: str, idx: tuple[sp.Idx, ...], rhs: sp.Expr, tensors: dict[str, Tensor],
             suffix: str = "part") -> list[Step]:
    """``lhs[idx] = rhs`` in normal form, keeping a factor of one sum inside its step:
    ``c[j] * Sum(f, i)`` is the reduction ``Sum(c[j]*f, i)`` (the counter applies ``c``
    once per output element), not a sum step and a product step."""
    factors = sp.Mul.make_args(rhs)
    sums = [f for f in factors if isinstance(f, sp.Sum)]
    if len(sums) == 1 and not isinstance(rhs, sp.Sum):
        s = sums[0]
        others = [f for f in factors if f is not s]
        bound = {lim[0] for lim in s.limits}
        if not any(f.has(sp.Sum) or f.free_symbols & bound for f in others):
            rhs = sp.Sum(sp.Mul(*others) * s.function, *s.limits)
    return split_step(lhs, idx, rhs, tensors, suffix)


def _limits(s: sp.Sum) -> tuple[sp.Idx, ...]:
    bound = []
    for k, lo, hi in s.limits:
        if not isinstance(k, sp.Idx) or lo != k.lower or hi != k.upper:
            raise ComponentError(
                f"sum over {k} must run over the whole range of an Idx (0..size-1)")
        bound.append(k)
    return tuple(bound)


def _check_lhs(t: Tensor, idx: tuple, where: str) -> None:
    if t.role is Role.HYPER:
        raise ComponentError(f"{where}: cannot assign to hyperparameter {t.name!r}")
    if len(idx) != len(t.shape):
        raise ComponentError(f"{where}: {len(t.shape)} axes, assigned with {len(idx)} indices")
    if len(set(idx)) != len(idx):
        raise ComponentError(f"{where}: repeated index on the left-hand side")
    for k, size in zip(idx, t.shape):
        if not isinstance(k, sp.Idx) or k.upper != size - 1:
            raise ComponentError(f"{where}: index {k} does not range over axis size {size}")


def _check_scopes(expr: sp.Expr, in_scope: set, where: str) -> None:
    """A summation index may not reuse an index already in scope (left side or outer sum)."""
    if isinstance(expr, sp.Sum):
        bound = _limits(expr)
        clash = [k for k in bound if k in in_scope]
        if clash or len(set(bound)) != len(bound):
            name = clash[0] if clash else bound[0]
            raise ComponentError(f"{where}: summation index {name} is already in use here; "
                                 "sum over an index of its own")
        _check_scopes(expr.function, in_scope | set(bound), where)
        return
    if isinstance(expr, (sp.Indexed, sp.Idx)):
        return
    for a in expr.args:
        _check_scopes(a, in_scope, where)


def _check_expr(expr: sp.Expr, tensors: dict[str, Tensor], free: set, where: str) -> None:
    _check_scopes(expr, set(free), where)
    stray = index_symbols(expr) - free
    if stray:
        names = ", ".join(sorted(map(str, stray)))
        raise ComponentError(f"{where}: index {names} is free on the right but not on the left "
                             "(sum over it, or index the left-hand side with it)")
    for a in walk(expr):
        if isinstance(a, sp.Indexed):
            name = a.base.label.name
            t = tensors.get(name)
            if t is None:
                raise ComponentError(f"{where}: unknown tensor {name!r}")
            if len(a.indices) != len(t.shape):
                raise ComponentError(f"{where}: {name} has {len(t.shape)} axes, "
                                     f"indexed with {len(a.indices)}")
            if len(set(a.indices)) != len(a.indices):
                raise ComponentError(f"{where}: repeated index in {a}")
            for k, size in zip(a.indices, t.shape):
                if not isinstance(k, sp.Idx) or k.upper != size - 1:
                    raise ComponentError(
                        f"{where}: {a}: index {k} is not a plain index over axis size {size}")
        elif isinstance(a, sp.Symbol) and not isinstance(a, sp.Idx):
            t = tensors.get(a.name)
            if t is None and not (a.is_integer and a.is_positive):
                raise ComponentError(f"{where}: unknown symbol {a.name!r}")
            if t is not None and not t.is_scalar:
                raise ComponentError(f"{where}: tensor {a.name!r} used without indices")
