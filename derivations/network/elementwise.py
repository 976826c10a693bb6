"""Elementwise operations of a traced network: activations, binary operations (same
shapes, a row broadcast, a constant), dropout's mask and scaling, and hardtanh.  A
call these components do not fit (another broadcast, an alpha) falls back on the
generic elementwise rules of ``derivations/generic_ops.py``."""

from __future__ import annotations

import sympy as sp

from derivations import generic_ops, layers
from derivations.generic_ops import SECTION, grad_names, numel
from derivations.movement_ops import bernoulli
from symflop import Component, sigmoid
from symflop.estimate.calls import Keep, OpCall, TensorRef, Use


def _gelu(x):
    return x / 2 * (1 + sp.erf(x / sp.sqrt(2)))


def _gelu_tanh(x):
    return x / 2 * (1 + sp.tanh(sp.sqrt(2 / sp.pi) * (x + sp.Rational(44715, 1000000) * x ** 3)))


ACTIVATIONS = {
    "relu": (lambda x: sp.Max(x, 0), "max(x, 0)"),
    "gelu": (_gelu, "x/2 (1 + erf(x/sqrt(2)))"),
    "gelu-tanh": (_gelu_tanh, "x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"),
    "silu": (lambda x: x * sigmoid(x), "x sigmoid(x)"),
    "sigmoid": (sigmoid, "sigmoid(x)"),
    "tanh": (sp.tanh, "tanh(x)"),
}


def activation(kind: str = "relu", wrt: tuple[str, ...] = ("x",)) -> Component:
    """An elementwise activation y = f(x) over N values."""
    f, text = ACTIVATIONS[kind]
    c = Component(kind, SECTION, f"activation {text}", reference=f"torch.nn.functional.{kind}")
    N = c.dim("N")
    i = c.index(i=N)
    x = c.input("x", (N,))
    y = c.output("y", (N,))
    c.assign("forward", y[i], f(x[i]))
    layers.gradient_of(c, y, wrt)
    return c


BINARY = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b,
          "mul": lambda a, b: a * b, "div": lambda a, b: a / b}


def binary(kind: str = "add", rows: bool = False,
           wrt: tuple[str, ...] = ("a", "b")) -> Component:
    """y = a (op) b elementwise over N values; with ``rows``, b has d values broadcast over
    the N rows of a (a bias or a scale on the last axis)."""
    c = Component(f"{kind}{'-rows' if rows else ''}", SECTION, f"elementwise {kind}",
                  reference=f"torch.{kind}")
    if rows:
        N, d = c.dim("N d")
        i, j = c.index(i=N, j=d)
        a, b = c.input("a", (N, d)), c.input("b", (d,))
        y = c.output("y", (N, d))
        c.assign("forward", y[i, j], BINARY[kind](a[i, j], b[j]))
    else:
        N = c.dim("N")
        i = c.index(i=N)
        a, b = c.input("a", (N,)), c.input("b", (N,))
        y = c.output("y", (N,))
        c.assign("forward", y[i], BINARY[kind](a[i], b[i]))
    layers.gradient_of(c, y, wrt)
    return c


def scalar_op(kind: str = "mul", wrt: tuple[str, ...] = ("a",)) -> Component:
    """y = a (op) s with a Python number s (aten's mul.Scalar, div.Scalar, add.Scalar)."""
    c = Component(f"{kind}-scalar", SECTION, f"elementwise {kind} by a constant",
                  reference=f"torch.{kind}")
    N = c.dim("N")
    i = c.index(i=N)
    a = c.input("a", (N,))
    s = c.hyper("s", s=2.0)
    y = c.output("y", (N,))
    c.assign("forward", y[i], BINARY[kind](a[i], s))
    layers.gradient_of(c, y, wrt)
    return c


def activation_rule(kind: str):
    def rule(call: OpCall):
        x = call.args[0]
        if kind == "gelu" and call.kwargs.get("approximate", "none") == "tanh":
            name = "gelu-tanh"
        else:
            name = kind
        y = call.outputs[0]
        # torch's backward of relu (where x > 0), sigmoid (y (1 - y)) and tanh (1 - y^2)
        # reads the output: it keeps y
        kept = {"x": y} if name in ("relu", "sigmoid", "tanh") else {}
        return [Use(name, activation, {"kind": name, "wrt": grad_names(("x", x))}, {"N": numel(x)},
                    {"x": x, "y": y}, kept_as=kept)]
    return rule


def binary_rule(kind: str):
    def rule(call: OpCall):
        a, b = call.args[:2]
        y = call.outputs[0]
        if call.kwargs.get("alpha", 1) != 1 or (len(call.args) > 2 and call.args[2] != 1) \
                or not any(isinstance(t, TensorRef) and t.floating for t in (a, b)) \
                or not y.floating:
            return generic_ops.RULES[call.op.rstrip("_")](call)
        if not isinstance(b, TensorRef) or not isinstance(a, TensorRef):
            t = a if isinstance(a, TensorRef) else b
            return [Use(f"{kind} by a constant", scalar_op,
                        {"kind": kind, "wrt": grad_names(("a", t))}, {"N": numel(t)},
                        {"a": t, "y": y})]
        if tuple(a.shape) == tuple(b.shape):
            return [Use(kind, binary, {"kind": kind, "wrt": grad_names(("a", a), ("b", b))},
                        {"N": numel(a)}, {"a": a, "b": b, "y": y})]
        big, small = (a, b) if len(a.shape) >= len(b.shape) else (b, a)
        trail = tuple(small.shape)
        while trail and trail[0] == 1:
            trail = trail[1:]
        if kind in ("add", "mul") and trail and tuple(big.shape[-len(trail):]) == trail \
                and tuple(y.shape) == tuple(big.shape):
            d = numel(small)
            return [Use(f"{kind} along rows", binary,
                        {"kind": kind, "rows": True,
                         "wrt": grad_names(("a", big), ("b", small))},
                        {"N": numel(big) / d, "d": d}, {"a": big, "b": small, "y": y})]
        return generic_ops.RULES[call.op.rstrip("_")](call)
    return rule


def rule_bernoulli(call: OpCall):
    return [Use("keep mask", bernoulli, {}, {"N": numel(call.args[0])},
                {"mask": call.outputs[0]}, forward_only=True)]


def rule_native_dropout(call: OpCall):
    """CUDA's dropout kernel (``symflop.estimate.gpu``): y = x mask / (1 - p) with a bool
    mask, two multiplications a value each way; its backward keeps the mask only."""
    x = call.args[0]
    y, mask = call.outputs[:2]
    n = numel(x)
    return [Use("keep mask", bernoulli, {}, {"N": n}, {"mask": mask}, forward_only=True),
            Use("scale by 1/(1-p)", scalar_op, {"kind": "mul", "wrt": grad_names(("a", x))},
                {"N": n}, {"a": x}),
            Use("times the mask", binary, {"kind": "mul", "wrt": grad_names(("a", x))},
                {"N": n}, {"b": mask, "y": y})]


def rule_hardtanh(call: OpCall):
    """hardtanh (ReLU6): each value clamped to [min, max], a compare per bound; torch's
    backward passes the gradient where min < x < max: two compares, their union (on
    booleans) and a select per value, from the input it keeps."""
    x = call.args[0]
    n = numel(x)
    w = generic_ops.work
    uses = [w("clamped to [min, max]", "compare", 2 * n)]
    if grad_names(("x", x)):
        uses += [w("hardtanh backward: x <= min, x >= max", "compare", 2 * n, backward=True),
                 w("hardtanh backward: the union of both", "compare", n, backward=True,
                   integer=True),
                 w("hardtanh backward: gradient selected", "compare", n, backward=True),
                 Keep((x,), "the input")]
    return uses
