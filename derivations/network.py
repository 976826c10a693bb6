"""What a torch network is made of: components for its operations, and the rules that
map each aten operation of a traced forward pass onto them (``symflop estimate``).

Every component here is written like the rest of the catalogue, as SymPy equations;
the engine derives its backward pass, counts and saved tensors.  A component's
``wrt`` option lists the inputs that need a gradient, as autograd decides from
``requires_grad`` (the first convolution of a network needs no gradient of the image).

The rules (``RULES``, entry point group ``symflop.network``) read one traced
operation and say which component stands for it, with what sizes, and which traced
tensors its tensors are.  An operation without a rule is reported as unknown.
"""

from __future__ import annotations

import math

import sympy as sp

from derivations import generic_ops, layers, norm_kernels
from derivations.generic_ops import bernoulli
from symflop import Component, sigmoid, total
from symflop.estimate.calls import FREE, Keep, OpCall, TensorRef, Unknown, Use

SECTION = "Network operations"


# -- contractions (matrix products and convolutions: derivations/layers.py) -----------
def batched_matmul(wrt: tuple[str, ...] = ("a", "b")) -> Component:
    """Batched matrix product y[g] = a[g] b[g] (aten.bmm: attention scores and mixing)."""
    c = Component("batched-matmul", SECTION, "batched matrix product", reference="torch.bmm")
    G, M, K, N = c.dim("G M K N")
    g, m, k, n = c.index(g=G, m=M, k=K, n=N)
    a = c.input("a", (G, M, K))
    b = c.input("b", (G, K, N))
    y = c.output("y", (G, M, N))
    c.assign("forward", y[g, m, n], total(a[g, m, k] * b[g, k, n], k))
    layers.gradient_of(c, y, wrt)
    return c


# -- elementwise -------------------------------------------------------------------------
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


# -- along the last axis -------------------------------------------------------------------
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


# -- rules: aten operation -> components ---------------------------------------------------
def _n(x) -> sp.Expr:
    return sp.Mul(*x.shape) if isinstance(x, TensorRef) else sp.Integer(1)


def _grad(*pairs: tuple[str, object]) -> tuple[str, ...]:
    return tuple(name for name, t in pairs if isinstance(t, TensorRef) and t.requires_grad
                 and t.floating)


def _weight_kept(x, w, wrt: tuple[str, ...]) -> list:
    """The linear component keeps x; its W is a parameter, held anyway.  A weight that is
    a tensor of its own (cast to half precision under autocast, or computed) is kept
    too, where x's gradient needs it."""
    if "x" in wrt and isinstance(w, TensorRef) and w.parameter is None:
        return [Keep((w,), "the weight: a tensor of its own (a cast copy under autocast)")]
    return []


def _rule_addmm(call: OpCall):
    bias, x, w = call.args[:3]
    if x is None or len(x.shape) != 2 or len(w.shape) != 2 or _n(bias) != w.shape[1]:
        return Unknown("addmm with a bias that is not one row")
    wrt = _grad(("x", x), ("W", w), ("bias", bias))
    return [Use("matrix product", layers.linear, {"bias": True, "wrt": wrt},
                {"B": x.shape[0], "I": x.shape[1], "O": w.shape[1]},
                {"x": x, "W": w, "bias": bias, "y": call.outputs[0]}, contraction=True),
            *_weight_kept(x, w, wrt)]


def _rule_mm(call: OpCall):
    x, w = call.args[:2]
    wrt = _grad(("x", x), ("W", w))
    return [Use("matrix product", layers.linear, {"bias": False, "wrt": wrt},
                {"B": x.shape[0], "I": x.shape[1], "O": w.shape[1]},
                {"x": x, "W": w, "y": call.outputs[0]}, contraction=True),
            *_weight_kept(x, w, wrt)]


def _rule_bmm(call: OpCall):
    a, b = call.args[:2]
    G, M, K = a.shape
    return [Use("batched product", batched_matmul, {"wrt": _grad(("a", a), ("b", b))},
                {"G": G, "M": M, "K": K, "N": b.shape[2]},
                {"a": a, "b": b, "y": call.outputs[0]}, contraction=True)]


def _fold_pairs(size: int, kernel: int, stride: int, pad: int, dilation: int,
                out: int) -> tuple[int, int]:
    """Along one axis: (kernel taps that land inside the input, input positions hit)."""
    hits = [0] * size
    for o in range(out):
        for k in range(kernel):
            pos = o * stride - pad + k * dilation
            if 0 <= pos < size:
                hits[pos] += 1
    return sum(hits), sum(1 for h in hits if h)


def grouped_conv(bias: bool = True, wrt: tuple[str, ...] = ("cols", "W", "bias")
                 ) -> Component:
    """A grouped convolution over unfolded patches: G groups, each a product of its own
    O x K weights with its own K rows of patches (depthwise: K = kh kw, O = 1)."""
    c = Component("conv2d-grouped", SECTION,
                  "grouped 2-D convolution as products over unfolded patches",
                  reference="torch.nn.functional.conv2d (groups)")
    B, G, O, K, S = c.dim("B G O K S")
    b, g, o, k, s = c.index(b=B, g=G, o=O, k=K, s=S)
    cols = c.input("cols", (B, G, K, S))
    W = c.parameter("W", (G, O, K))
    y = c.output("y", (B, G, O, S))
    rhs = total(W[g, o, k] * cols[b, g, k, s], k)
    if bias:
        rhs += c.parameter("bias", (G, O))[g, o]
    c.assign("forward", y[b, g, o, s], rhs)
    layers.gradient_of(c, y, wrt)
    return c


def _fold_extra(rows: sp.Expr, channels: int, grid: tuple, kernel: tuple, stride, padding,
                dilation, over: tuple) -> sp.Expr:
    """Additions of a fold (col2im) onto ``grid``: every tap beyond the first landing on a
    position adds, for each of ``rows`` x ``channels`` planes."""
    ph, hh = _fold_pairs(grid[0], kernel[0], stride[0], padding[0], dilation[0], over[0])
    pw, hw = _fold_pairs(grid[1], kernel[1], stride[1], padding[1], dilation[1], over[1])
    return rows * channels * (ph * pw - hh * hw)


def _rule_convolution(call: OpCall):
    """A 2-D convolution as products over unfolded patches (grouped: one product per
    group); the input gradient's fold adds where patches overlap.  A transposed
    convolution is the same product read the other way: each input pixel times the
    weights gives kh kw patches per output channel, folded onto the output (the fold's
    additions, then the bias, are forward work; its input gradient unfolds)."""
    x, w, bias = call.args[:3]
    stride, padding, dilation, transposed, _out_pad, groups = call.args[3:9]
    if len(x.shape) != 4:
        return Unknown("only 2-D convolutions have a rule")
    y = call.outputs[0]
    kh, kw = int(w.shape[2]), int(w.shape[3])
    grid_in, grid_out = (int(x.shape[2]), int(x.shape[3])), (int(y.shape[2]), int(y.shape[3]))
    B, C, O = x.shape[0], int(x.shape[1]), int(y.shape[1])
    wrt = _grad(("cols", x), ("W", w), ("bias", bias))
    if transposed:
        dims = {"B": B, "G": groups, "O": O // groups * kh * kw, "K": C // groups,
                "S": grid_in[0] * grid_in[1]}
        uses = [Use("transposed convolution", grouped_conv,
                    {"bias": False, "wrt": tuple(n for n in wrt if n != "bias")}, dims,
                    {"cols": x, "W": w}, contraction=True,
                    note="each input pixel times the weights, then folded")]
        extra = _fold_extra(B, O, grid_out, (kh, kw), stride, padding, dilation, grid_in)
        if extra != 0:
            uses.append(generic_ops.work("fold onto the output", "add", extra))
        if bias is not None:
            sizes, pattern = generic_ops.broadcast_pattern(tuple(y.shape), [y, bias])
            uses.append(Use("bias", generic_ops.pointwise,
                            {"op": "add", "axes": len(sizes), "pattern": pattern + (None,),
                             "numbers": (None, None, 1),
                             "wrt": ("a1",) if "bias" in wrt else ()},
                            {f"D{j}": s for j, s in enumerate(sizes)},
                            {"a1": bias, "y": y}, keep=False))
        return uses
    K = C // groups * kh * kw
    S = grid_out[0] * grid_out[1]
    tensors = {"cols": x, "W": w, "y": y} | ({"bias": bias} if bias is not None else {})
    if groups == 1:
        uses = [Use("convolution", layers.conv2d_im2col, {"bias": bias is not None,
                                                         "wrt": wrt},
                    {"B": B, "O": O, "K": K, "S": S}, tensors, contraction=True,
                    note="cols = unfold(x): the input is what is kept")]
    else:
        uses = [Use("grouped convolution", grouped_conv, {"bias": bias is not None,
                                                         "wrt": wrt},
                    {"B": B, "G": groups, "O": O // groups, "K": K, "S": S}, tensors,
                    contraction=True, note="cols = unfold(x): the input is what is kept")]
    if "cols" in wrt:  # fold(grad_cols): every tap beyond the first into a position adds
        extra = _fold_extra(B, C, grid_in, (kh, kw), stride, padding, dilation, grid_out)
        if extra != 0:
            uses.append(Use("fold of the input gradient", binary,
                            {"kind": "add", "wrt": ()}, {"N": extra}, backward_only=True,
                            note="col2im: overlapping patches summed"))
    return uses


def _activation(kind: str):
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
        return [Use(name, activation, {"kind": name, "wrt": _grad(("x", x))}, {"N": _n(x)},
                    {"x": x, "y": y}, kept_as=kept)]
    return rule


def _binary(kind: str):
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
                        {"kind": kind, "wrt": _grad(("a", t))}, {"N": _n(t)},
                        {"a": t, "y": y})]
        if tuple(a.shape) == tuple(b.shape):
            return [Use(kind, binary, {"kind": kind, "wrt": _grad(("a", a), ("b", b))},
                        {"N": _n(a)}, {"a": a, "b": b, "y": y})]
        big, small = (a, b) if len(a.shape) >= len(b.shape) else (b, a)
        trail = tuple(small.shape)
        while trail and trail[0] == 1:
            trail = trail[1:]
        if kind in ("add", "mul") and trail and tuple(big.shape[-len(trail):]) == trail \
                and tuple(y.shape) == tuple(big.shape):
            d = _n(small)
            return [Use(f"{kind} along rows", binary,
                        {"kind": kind, "rows": True,
                         "wrt": _grad(("a", big), ("b", small))},
                        {"N": _n(big) / d, "d": d}, {"a": big, "b": small, "y": y})]
        return generic_ops.RULES[call.op.rstrip("_")](call)
    return rule


def _rule_bernoulli(call: OpCall):
    return [Use("keep mask", bernoulli, {}, {"N": _n(call.args[0])},
                {"mask": call.outputs[0]}, forward_only=True)]


def _rule_native_dropout(call: OpCall):
    """CUDA's dropout kernel (``symflop.estimate.gpu``): y = x mask / (1 - p) with a bool
    mask, two multiplications a value each way; its backward keeps the mask only."""
    x = call.args[0]
    y, mask = call.outputs[:2]
    n = _n(x)
    return [Use("keep mask", bernoulli, {}, {"N": n}, {"mask": mask}, forward_only=True),
            Use("scale by 1/(1-p)", scalar_op, {"kind": "mul", "wrt": _grad(("a", x))},
                {"N": n}, {"a": x}),
            Use("times the mask", binary, {"kind": "mul", "wrt": _grad(("a", x))},
                {"N": n}, {"b": mask, "y": y})]


def _softmax(log: bool):
    def rule(call: OpCall):
        x, dim = call.args[:2]
        if dim not in (-1, len(x.shape) - 1):
            return Unknown("softmax along an axis other than the last")
        C = x.shape[-1]
        y = call.outputs[0]
        label = "log-softmax" if log else "softmax"
        N = _n(x) / C
        w = generic_ops.work
        uses = [w("row maximum", "compare", N * (C - 1)),
                w("row maximum subtracted", "add", N * C),
                Use(label, softmax, {"log": log, "wrt": _grad(("x", x))}, {"N": N, "C": C},
                    {"x": x, "y": y}, forward_only=True)]
        if not _grad(("x", x)):
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


def _rule_mean(call: OpCall):
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
    uses = [Use(label, mean_rows, {"wrt": _grad(("x", x))}, {"N": _n(x) / row, "K": row},
                {"x": x, "y": y}, forward_only=True)]
    if _grad(("x", x)):
        uses.append(generic_ops.work(f"{label} backward: each value divided", "div", _n(x),
                                     backward=True))
    return uses


def _rule_adaptive_avg_pool(call: OpCall):
    x, size = call.args[:2]
    if tuple(size) != (1, 1):
        return Unknown("adaptive average pooling to more than 1x1")
    return _mean_uses("global average pool", x, call.outputs[0], x.shape[-1] * x.shape[-2])


def _rule_max_pool(call: OpCall):
    x, kernel = call.args[:2]
    window = math.prod(int(k) for k in kernel) if len(kernel) > 1 else int(kernel[0]) ** 2
    y = call.outputs[0]
    uses = [Use("max pool", max_window, {"window": window}, {"N": _n(y)}, {"y": y},
                forward_only=True, note="forward: window - 1 compares per output")]
    if x.requires_grad:  # each gradient added into the input position of its maximum
        uses += [generic_ops.work("gradient routed to the maxima", "add", _n(y),
                                  backward=True),
                 Keep((x, call.outputs[1]), "the input and the argmax indices")]
    return uses


def _rule_flash_attention(call: OpCall):
    """Fused attention (flash, memory-efficient) as torch's CPU flash kernel runs it, for
    G = batch x heads, L query rows, S keys, head sizes d and dv:

    * forward: the scores q k^T (a product), scaled (a float or boolean mask added), the
      row maximum (S compares a row, the old maximum included), exp(s - max) and its row
      sum, the row's running sum kept (per row an exp, a multiplication and two
      additions), p v (a product), the output divided by the row sum (a reciprocal per
      row, a multiplication per value), the log-sum-exp (a log and an addition per row);
    * backward: the rows' sum of grad_out * out; the scores again (their product and
      scale, the mask as s * 1 + mask), p = exp(s - lse); the four products' gradients
      (grad_v, grad_p, grad_q, grad_k), each accumulated into its gradient (an addition
      per value) and grad_q, grad_k scaled (a multiplication per value); grad_s =
      p (grad_p - D) (a subtraction and a multiplication per score).

    Every score is computed: a causal kernel that skips the key blocks past the diagonal
    does less once L is past a block (32 to 256 rows: FlashAttentionKernel.cpp); the
    positions it fills with -inf are a fill, not arithmetic.  The kernel keeps q, k, v, its
    output and the rows' log-sum-exp, not the probabilities."""
    q, k, v = call.args[:3]
    efficient = call.op == "aten._scaled_dot_product_efficient_attention"
    mask = call.arg(3, "attn_bias") if efficient else call.kwargs.get("attn_mask")
    dropout = call.arg(5 if efficient else 3, "dropout_p", 0.0)
    if len(q.shape) != 4:
        return Unknown("fused attention on tensors that are not (batch, heads, rows, dim)")
    B, H, L, d = q.shape
    S, dv = k.shape[2], v.shape[3]
    G = B * H
    n = G * L * S
    rows = G * L
    out = call.outputs[0]
    grad = _grad(("q", q), ("k", k), ("v", v))
    if not grad:
        return Unknown("fused attention outside autograd (nothing needs its gradient)")
    masked = isinstance(mask, TensorRef)
    w = generic_ops.work
    scores = Use("attention scores", batched_matmul,
                 {"wrt": tuple(n for n, t in (("a", "q"), ("b", "k")) if t in grad)},
                 {"G": G, "M": L, "K": d, "N": S}, {"a": q, "b": k}, contraction=True,
                 keep=False)
    forward = [scores, w("attention scale", "mul", n)]
    forward += [w("attention mask added", "add", n)] if masked else []
    forward += [w("attention row maximum", "compare", n),
                w("attention exp(s - max) and row sum", "add", n + rows * (S - 1)),
                w("attention exp(s - max)", "transcendental", n),
                w("attention running sum (exp, products, sums)", "add", 2 * rows),
                w("attention running sum (exp)", "transcendental", rows),
                w("attention running sum (products)", "mul", rows)]
    if dropout:
        forward += [Use("attention dropout mask", bernoulli, {}, {"N": n},
                        forward_only=True),
                    w("attention dropout (mask, scale)", "mul", 2 * n),
                    w("attention dropout of the gradient", "mul", 2 * n, backward=True)]
    mix = Use("attention output", batched_matmul,
              {"wrt": ("a",) + (("b",) if "v" in grad else ())},
              {"G": G, "M": L, "K": S, "N": dv}, {"b": v, "y": out}, contraction=True,
              keep=False)
    forward += [mix,
                w("attention output / row sum (reciprocals)", "div", rows),
                w("attention output / row sum", "mul", rows * dv),
                w("attention log-sum-exp (log)", "transcendental", rows),
                w("attention log-sum-exp (add)", "add", rows)]
    backward = [
        w("attention backward: rows of grad_out * out", "mul", rows * dv, backward=True),
        w("attention backward: rows of grad_out * out (sum)", "add", rows * (dv - 1),
          backward=True),
        Use("attention scores (recomputed)", batched_matmul, scores.options, scores.dims,
            backward_only=True, contraction=True, keep=False),
        w("attention scale (recomputed)", "mul", n, backward=True),
        *([w("attention mask (s * 1)", "mul", n, backward=True),
           w("attention mask added", "add", n, backward=True)] if masked else []),
        w("attention p = exp(s - lse)", "add", n, backward=True),
        w("attention p = exp(s - lse) (exp)", "transcendental", n, backward=True),
        w("attention grad_s = p (grad_p - D)", "add", n, backward=True),
        w("attention grad_s = p (grad_p - D) (product)", "mul", n, backward=True),
        w("attention gradients accumulated", "add",
          sum((m for t, m in (("v", G * S * dv), ("q", rows * d), ("k", G * S * d))
               if t in grad), sp.Integer(0)), backward=True),
        w("attention grad_q, grad_k scaled", "mul",
          sum((m for t, m in (("q", rows * d), ("k", G * S * d)) if t in grad),
              sp.Integer(0)), backward=True)]
    return forward + backward + [Keep((q, k, v, *call.outputs),
                                      "q, k, v, the output, the log-sum-exps")]


def _rule_hardtanh(call: OpCall):
    """hardtanh (ReLU6): each value clamped to [min, max], a compare per bound; torch's
    backward passes the gradient where min < x < max: two compares, their union (on
    booleans) and a select per value, from the input it keeps."""
    x = call.args[0]
    n = _n(x)
    w = generic_ops.work
    uses = [w("clamped to [min, max]", "compare", 2 * n)]
    if _grad(("x", x)):
        uses += [w("hardtanh backward: x <= min, x >= max", "compare", 2 * n, backward=True),
                 w("hardtanh backward: the union of both", "compare", n, backward=True,
                   integer=True),
                 w("hardtanh backward: gradient selected", "compare", n, backward=True),
                 Keep((x,), "the input")]
    return uses


def _rule_upsample_bilinear(call: OpCall):
    """Bilinear upsampling as torch's CPU kernel writes it (UpSampleKernel.cpp): each
    output h0 (w0 x00 + w1 x01) + h1 (w0 x10 + w1 x11), six multiplications and three
    additions; its backward adds h w g into each of the four inputs, two multiplications
    and an addition each.  The weights and source indices, computed from the positions,
    are not counted."""
    x = call.args[0]
    n = _n(call.outputs[0])
    w = generic_ops.work
    uses = [w("bilinear interpolation (products)", "mul", 6 * n),
            w("bilinear interpolation (sums)", "add", 3 * n)]
    if _grad(("x", x)):
        uses += [w("bilinear interpolation backward (products)", "mul", 8 * n,
                   backward=True),
                 w("bilinear interpolation backward (sums)", "add", 4 * n, backward=True)]
    return uses


def _rule_embedding(call: OpCall):
    """A table lookup: no arithmetic forward; backward adds each gradient row into its
    row of the table's gradient (torch's index_add), one addition per value."""
    weight, indices = call.args[:2]
    y = call.outputs[0]
    if not weight.requires_grad:
        return FREE
    if call.arg(3, "scale_grad_by_freq", False):
        return Unknown("embedding with scale_grad_by_freq")
    return [Use("embedding gradient (index_add)", binary, {"kind": "add", "wrt": ()},
                {"N": _n(y)}, backward_only=True),
            Keep((indices,), "the indices")]


def _free(_call: OpCall):
    return FREE


_VIEWS = ("view", "_unsafe_view", "reshape", "t", "transpose", "permute",
          "select", "slice", "unsqueeze", "squeeze", "detach", "alias", "empty_like",
          "empty", "clone", "contiguous", "flatten", "split", "split_with_sizes", "chunk",
          "unbind", "lift_fresh", "as_strided", "_reshape_alias", "zeros_like", "zero",
          "fill", "copy", "_to_copy", "lift_fresh_copy")

RULES = {
    **generic_ops.RULES,
    **{f"aten.{v}": _free for v in _VIEWS},
    "aten.addmm": _rule_addmm,
    "aten.mm": _rule_mm,
    "aten.bmm": _rule_bmm,
    "aten.convolution": _rule_convolution,
    "aten.native_batch_norm": norm_kernels.batch_norm,
    "aten.native_layer_norm": norm_kernels.layer_norm,
    "aten.relu": _activation("relu"),
    "aten.gelu": _activation("gelu"),
    "aten.silu": _activation("silu"),
    "aten.sigmoid": _activation("sigmoid"),
    "aten.tanh": _activation("tanh"),
    **{f"aten.{k}": _binary(k) for k in BINARY},
    "aten.bernoulli": _rule_bernoulli,
    "aten.native_dropout": _rule_native_dropout,
    "aten._softmax": _softmax(False),
    "aten._safe_softmax": _softmax(False),
    "aten._log_softmax": _softmax(True),
    "aten.mean": _rule_mean,
    "aten._adaptive_avg_pool2d": _rule_adaptive_avg_pool,
    "aten.adaptive_avg_pool2d": _rule_adaptive_avg_pool,
    "aten.max_pool2d_with_indices": _rule_max_pool,
    "aten._scaled_dot_product_flash_attention_for_cpu": _rule_flash_attention,
    "aten._scaled_dot_product_flash_attention": _rule_flash_attention,
    "aten._scaled_dot_product_efficient_attention": _rule_flash_attention,
    "aten.embedding": _rule_embedding,
    "aten.upsample_bilinear2d": _rule_upsample_bilinear,
    "aten.hardtanh": _rule_hardtanh,
}
