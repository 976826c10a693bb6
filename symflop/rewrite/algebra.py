"""Simplify: algebraic rules that use facts derived from the program's definitions.

Each rule takes a step's right-hand side (sums included) and returns an
equivalent one, or None.  Rules marked cost-driven are kept only where the
counter says the result is cheaper (``symflop.rewrite.rules``).
"""

from __future__ import annotations

import sympy as sp

from symflop.core.functions import sigmoid, softplus
from symflop.core.model import Role
from symflop.core.program import index_symbols
from symflop.rewrite.rules import Context, rule
from symflop.rewrite.sums import rewrite_sums

MAX_EXPAND_OPS = 160  # larger right-hand sides are not expanded (SymPy time, and no gain seen)


@rule("rows-sum-to-one", "simplify")
def rows_sum_to_one(expr: sp.Expr, ctx: Context):
    """A sum over the last axis of a tensor whose rows sum to 1 is 1 (an assumption, said)."""
    def choose(s, out, _complete, used):
        ctx.assumptions.update(f.why for f in used)
        return out if used else s

    return rewrite_sums(expr, [k for k in ctx.facts.known if k.name is None], ctx.tensors,
                        choose)


@rule("centered-sum", "simplify")
def centered_sum(expr: sp.Expr, ctx: Context):
    """sum_K (t - m)*f = 0 when m is the mean of t over K and f does not depend on K."""
    def choose(s, out, complete, _used):
        return sp.Integer(0) if complete and sp.expand(out) == 0 else s

    return rewrite_sums(expr, [k for k in ctx.facts.known if k.name is not None],
                        ctx.tensors, choose)


@rule("logistic", "simplify")
def logistic(expr: sp.Expr, ctx: Context):
    """(1 + exp(-u))**-n -> sigmoid(u)**n and exp(u)*sigmoid(-u) -> sigmoid(u)."""
    if not expr.has(sp.exp):
        return None

    def pow_fix(p: sp.Pow) -> sp.Expr:
        base, ex = p.args
        if ex.is_Integer and ex < 0 and isinstance(base, sp.Add) and len(base.args) == 2 \
                and sp.S.One in base.args:
            other = base - 1
            if isinstance(other, sp.exp):
                return sigmoid(-other.args[0]) ** (-ex)
        return p

    def mul_fix(m: sp.Mul) -> sp.Expr:
        factors = list(m.args)
        for n, f in enumerate(factors):
            if not isinstance(f, sp.exp):
                continue
            for q, g in enumerate(factors):
                base, ex = g.as_base_exp()
                if isinstance(base, sigmoid) and ex.is_Integer and ex > 0 \
                        and base.args[0] == -f.args[0]:
                    rest = [h for r, h in enumerate(factors) if r not in (n, q)]
                    return sp.Mul(*rest, sigmoid(f.args[0]), base ** (ex - 1))
        return m

    new = expr.replace(lambda e: isinstance(e, sp.Pow), pow_fix)
    if new.has(sigmoid):
        new = new.replace(lambda e: isinstance(e, sp.Mul), mul_fix)
    return new if new != expr else None


@rule("log-sigmoid", "simplify")
def log_sigmoid(expr: sp.Expr, ctx: Context):
    """log(sigmoid(u)) -> -softplus(-u), log(1 - sigmoid(u)) -> -softplus(u),
    log(1 + exp(u)) -> softplus(u)."""
    if not expr.has(sp.log):
        return None

    def fix(lg: sp.log) -> sp.Expr:
        a = lg.args[0]
        if isinstance(a, sigmoid):
            return -softplus(-a.args[0])
        base, ex = a.as_base_exp()
        if isinstance(base, sigmoid) and ex.is_Integer:
            return -ex * softplus(-base.args[0])
        if isinstance(a, sp.Add) and len(a.args) == 2 and sp.S.One in a.args:
            rest = a - 1
            if isinstance(rest, sp.exp):
                return softplus(rest.args[0])
            if isinstance(-rest, sigmoid):
                return -softplus((-rest).args[0])
        return lg

    new = expr.replace(lambda e: isinstance(e, sp.log), fix)
    return new if new != expr else None


def _reflect(expr: sp.Expr, func, mirror) -> sp.Expr | None:
    """Rewrite ``func(-u)`` by ``mirror(u)`` (u the form SymPy would not negate), then
    distribute products, so that the two halves can cancel."""
    if not expr.has(func) or sp.count_ops(expr) > MAX_EXPAND_OPS:
        return None
    hits = [e for e in expr.atoms(func) if e.args[0].could_extract_minus_sign()]
    if not hits:
        return None
    new = expr.xreplace({e: mirror(-e.args[0]) for e in hits})
    return sp.expand_mul(new)


@rule("sigmoid-reflection", "simplify", cost_driven=True)
def sigmoid_reflection(expr: sp.Expr, ctx: Context):
    """sigmoid(-u) -> 1 - sigmoid(u), products distributed."""
    return _reflect(expr, sigmoid, lambda u: 1 - sigmoid(u))


@rule("softplus-reflection", "simplify", cost_driven=True)
def softplus_reflection(expr: sp.Expr, ctx: Context):
    """softplus(-u) -> softplus(u) - u, products distributed."""
    return _reflect(expr, softplus, lambda u: softplus(u) - u)


@rule("affine-form", "reuse", cost_driven=True)
def affine_form(expr: sp.Expr, ctx: Context):
    """Collect the body in the values that vary with every index (coefficients hoisted):
    dx = a[j]*dy[i, j] + b[j]*xhat[i, j] + c[j].

    A value less a statistic of the forward pass (x[i, j] - mu[j], x - running_mean) is
    never multiplied out: a*x - a*mu loses every digit x and mu share in floating point,
    a*(x - mu) does not, and activations often sit far from zero against their spread."""
    if isinstance(expr, sp.Sum):
        body = affine_form(expr.function, ctx)
        return None if body is None else sp.Sum(body, *expr.limits)
    if expr.has(sp.Sum) or sp.count_ops(expr) > MAX_EXPAND_OPS:
        return None
    full = index_symbols(expr)
    if not full:
        return None
    statistics = {k.name for k in ctx.facts.known if k.name is not None}
    statistics |= {n for n, t in ctx.tensors.items() if t.role is Role.STATE}

    def centered(e: sp.Expr) -> bool:
        return _centered(e, full, statistics)

    atoms = _varying_atoms(expr, full, centered)
    if not atoms or len(atoms) > 4:
        return None
    expanded = distribute_products(expr, centered)
    groups = sp.collect(expanded, atoms, evaluate=False)
    new = sp.Add(*[mono * sp.factor_terms(coef) for mono, coef in groups.items()])
    return new if new != expr else None


def _centered(e: sp.Expr, full: set, statistics: set[str]) -> bool:
    """A sum of a term that varies with every index and a statistic of the forward pass
    (x[i, j] - mu[j]): the two may nearly cancel."""
    if not isinstance(e, sp.Add):
        return False
    spans = [index_symbols(t) == full for t in e.args]
    return any(spans) and any(
        r.base.label.name in statistics for t, s in zip(e.args, spans) if not s
        for r in t.atoms(sp.Indexed))


def distribute_products(e: sp.Expr, keep=lambda f: False) -> sp.Expr:
    """Products distributed over sums, but never inside a denominator or a function, nor
    over a sum ``keep`` says to keep whole."""
    if isinstance(e, sp.Add):
        return sp.Add(*[distribute_products(a, keep) for a in e.args])
    if isinstance(e, sp.Mul):
        terms = [sp.Integer(1)]
        for f in e.args:
            if isinstance(f, sp.Add) and not keep(f):
                f = distribute_products(f, keep)
                terms = [a * b for a in terms for b in sp.Add.make_args(f)]
            else:
                terms = [a * f for a in terms]
        return sp.Add(*terms)
    return e


def _varying_atoms(expr: sp.Expr, full: set, centered) -> list:
    """Tensor references and non-polynomial subexpressions that depend on every index."""
    out = set()
    stack = [expr]
    while stack:
        e = stack.pop()
        if index_symbols(e) != full:
            continue
        if isinstance(e, sp.Indexed) or isinstance(e, sp.Function) or centered(e):
            out.add(e)
            continue
        if isinstance(e, sp.Pow) and not e.exp.is_Integer:
            out.add(e)
            continue
        stack.extend(e.args)
    return sorted(out, key=sp.default_sort_key)
