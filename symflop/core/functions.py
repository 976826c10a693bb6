"""Functions that SymPy lacks but stable code needs: ``log1p``, ``softplus``, ``sigmoid``;
and the tests for infinite and NaN values that an overflow check reads (``isinf``, ``isnan``)."""

from __future__ import annotations

import sympy as sp


class log1p(sp.Function):  # noqa: N801 - printed name matches numpy/torch
    """log(1 + x), accurate for small x."""

    def fdiff(self, argindex=1):
        return 1 / (1 + self.args[0])

    def _eval_evalf(self, prec):
        return sp.log(1 + self.args[0])._eval_evalf(prec)

    def _eval_rewrite_as_log(self, x, **kwargs):
        return sp.log(1 + x)

    def _latex(self, printer):
        return r"\operatorname{log1p}\left(" + printer._print(self.args[0]) + r"\right)"


class uniform(sp.Function):  # noqa: N801
    """An independent draw from U(0, 1) for each value of its index arguments.

    ``uniform(i, j)`` is one random number per (i, j); it has no derivative and
    counts as one random draw per element.
    """

    is_real = True

    def fdiff(self, argindex=1):
        return sp.S.Zero

    def _latex(self, printer):
        args = ",".join(printer._print(a) for a in self.args)
        return r"\mathcal{U}_{" + args + "}"


def draws_random(expr: sp.Basic) -> bool:
    """Does ``expr`` draw random numbers?  Such a value is drawn once and kept,
    never recomputed (a second draw would be a different number)."""
    return expr.has(uniform)


class softplus(sp.Function):  # noqa: N801
    """log(1 + exp(x)), evaluated without overflow."""

    is_real = True

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])

    def _eval_evalf(self, prec):
        return sp.log(1 + sp.exp(self.args[0]))._eval_evalf(prec)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    def _latex(self, printer):
        return r"\operatorname{softplus}\left(" + printer._print(self.args[0]) + r"\right)"


class sigmoid(sp.Function):  # noqa: N801
    """The logistic function 1/(1 + exp(-x)); its derivative is sigmoid(x)*(1 - sigmoid(x))."""

    is_real = True

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.S.Half

    def fdiff(self, argindex=1):
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _eval_evalf(self, prec):
        return (1 / (1 + sp.exp(-self.args[0])))._eval_evalf(prec)

    def _latex(self, printer):
        return r"\sigma\left(" + printer._print(self.args[0]) + r"\right)"


class _Indicator(sp.Function):
    """A 0/1 test of one value: no derivative; SymPy numbers evaluate."""

    is_real = True
    is_nonnegative = True

    def fdiff(self, argindex=1):
        return sp.S.Zero

    def _latex(self, printer):
        return (r"\operatorname{" + type(self).__name__ + r"}\left(" + printer._print(self.args[0])
                + r"\right)")


class isinf(_Indicator):  # noqa: N801 - printed name matches numpy/torch
    """1 where x is +inf or -inf, else 0 (NaN included)."""

    @classmethod
    def eval(cls, x):
        if x.is_number:
            return sp.S.One if x in (sp.oo, -sp.oo, sp.zoo) else sp.S.Zero


class isnan(_Indicator):  # noqa: N801 - printed name matches numpy/torch
    """1 where x is NaN, else 0."""

    @classmethod
    def eval(cls, x):
        if x.is_number:
            return sp.S.One if x is sp.nan else sp.S.Zero
