"""Operations along the last axis or over windows: softmax and log-softmax (with
torch's row maximum and its backward from the output), means of rows and global average
pooling, and max pooling."""

from __future__ import annotations

import math

import sympy as sp

from derivations import generic_ops, layers
from derivations.generic_ops import SECTION, grad_names, numel
from symflop import Component, total
from symflop.estimate.calls import Keep, OpCall, TensorRef, Unknown, Use


def softmax(log: bool = False, wrt: tuple[str, ...] = ("x",)) -> Component:
    """Softmax (or log-softmax) along the last axis of x (N rows of C values).  torch
    subtracts the row maximum first; that work (a compare and a subtraction per value)
    changes no value, and the rules count it beside this component."""
    c = Component("log-softmax" if log else "softmax", SECTION,
                  "log-softmax along the last axis" if log else "softmax along the last axis",
                  reference="torch.softmax, torch.log_softmax")
    N, C = c.dim("N C")
    i, j = c.index(i=N, j=C)
    x = c.input("x", (N, C))
    e = c.intermediate("e", (N, C))
    s = c.intermediate("s", (N,))
    y = c.output("y", (N, C))
    c.assign("forward", e[i, j], sp.exp(x[i, j]))
    c.assign("forward", s[i], total(e[i, j], j))
    c.assign("forward", y[i, j], x[i, j] - sp.log(s[i]) if log else e[i, j] / s[i])
    layers.gradient_of(c, y, wrt)
    return c


def mean_rows(wrt: tuple[str, ...] = ("x",)) -> Component:
    """Mean of each row of K values (global average pooling: K = H W)."""
    c = Component("mean-rows", SECTION, "mean over the last axis", reference="torch.mean")
    N, K = c.dim("N K")
    i, k = c.index(i=N, k=K)
    x = c.input("x", (N, K))
    y = c.output("y", (N,))
    c.assign("forward", y[i], total(x[i, k], k) / K)
    layers.gradient_of(c, y, wrt)
    return c


def max_window(window: int = 9) -> Component:
    """Max pooling's forward: the largest of ``window`` values, for each of N outputs."""
    c = Component("max-window", SECTION, f"maximum over a window of {window} values",
                  reference="torch.nn.functional.max_pool2d")
    N = c.dim("N")
    i = c.index(i=N)
    ws = [c.input(f"w{k}", (N,)) for k in range(window)]
    y = c.output("y", (N,))
    c.assign("forward", y[i], sp.Max(*[w[i] for w in ws]))
    return c


def softmax_rule(log: bool):
    def rule(call: OpCall):
        x, dim = call.args[:2]
        if dim not in (-1, len(x.shape) - 1):
            return Unknown("softmax along an axis other than the last")
        C = x.shape[-1]
        y = call.outputs[0]
        label = "log-softmax" if log else "softmax"
        N = numel(x) / C
        w = generic_ops.work
        uses = [w("row maximum", "compare", N * (C - 1)),
                w("row maximum subtracted", "add", N * C),
                Use(label, softmax, {"log": log, "wrt": grad_names(("x", x))}, {"N": N, "C": C},
                    {"x": x, "y": y}, forward_only=True)]
        if not grad_names(("x", x)):
            return uses
        # torch's backward from the output alone: log-softmax g - exp(y) sum(g);
        # softmax y g - y sum(y g)
        first = ("exp(y)", "transcendental") if log else ("y g", "mul")
        return uses + [w(f"{label} backward: {first[0]}", first[1], N * C, backward=True),
                       w(f"{label} backward: row sums", "add", N * (C - 1), backward=True),
                       w(f"{label} backward: products", "mul", N * C, backward=True),
                       w(f"{label} backward: subtracted", "add", N * C, backward=True),
                       Keep((y,))]
    return rule


def rule_mean(call: OpCall):
    x = call.args[0]
    dims = call.arg(1, "dim")
    nd = len(x.shape)
    dims = sorted(d % nd for d in dims) if dims else list(range(nd))
    if dims != list(range(nd - len(dims), nd)) or not x.floating:
        return generic_ops.RULES[call.op.rstrip("_")](call)
    K = sp.Mul(*x.shape[nd - len(dims):])
    return _mean_uses("mean", x, call.outputs[0], K)


def _mean_uses(label: str, x: TensorRef, y: TensorRef, row: sp.Expr) -> list[Use]:
    """The mean of rows of ``row`` values; torch's backward spreads the gradient over
    the row first and divides each value (one division per input value)."""
    uses = [Use(label, mean_rows, {"wrt": grad_names(("x", x))}, {"N": numel(x) / row, "K": row},
                {"x": x, "y": y}, forward_only=True)]
    if grad_names(("x", x)):
        uses.append(generic_ops.work(f"{label} backward: each value divided", "div", numel(x),
                                     backward=True))
    return uses


def rule_adaptive_avg_pool(call: OpCall):
    x, size = call.args[:2]
    if tuple(size) != (1, 1):
        return Unknown("adaptive average pooling to more than 1x1")
    return _mean_uses("global average pool", x, call.outputs[0], x.shape[-1] * x.shape[-2])


def rule_max_pool(call: OpCall):
    x, kernel = call.args[:2]
    window = math.prod(int(k) for k in kernel) if len(kernel) > 1 else int(kernel[0]) ** 2
    y = call.outputs[0]
    uses = [Use("max pool", max_window, {"window": window}, {"N": numel(y)}, {"y": y},
                forward_only=True, note="forward: window - 1 compares per output")]
    if x.requires_grad:  # each gradient added into the input position of its maximum
        uses += [generic_ops.work("gradient routed to the maxima", "add", numel(y),
                                  backward=True),
                 Keep((x, call.outputs[1]), "the input and the argmax indices")]
    return uses
