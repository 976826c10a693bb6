"""Matrix products and convolutions of a traced network: ``aten.addmm``, ``mm`` and
``bmm`` as the catalogue's linear layer or a batched product, and ``aten.convolution``
as products over unfolded patches (grouped, transposed), with the additions of the fold
where patches overlap.  The layers themselves are ``derivations/layers.py``'s."""

from __future__ import annotations

import math

import sympy as sp

from derivations import generic_ops, layers
from derivations.generic_ops import SECTION, grad_names, numel
from derivations.network.elementwise import binary
from symflop import Component, total
from symflop.estimate.calls import Keep, OpCall, TensorRef, Unknown, Use


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


def _weight_kept(x, w, wrt: tuple[str, ...]) -> list:
    """The linear component keeps x; its W is a parameter, held anyway.  A weight that is
    a tensor of its own (cast to half precision under autocast, or computed) is kept
    too, where x's gradient needs it."""
    if "x" in wrt and isinstance(w, TensorRef) and w.parameter is None:
        return [Keep((w,), "the weight: a tensor of its own (a cast copy under autocast)")]
    return []


def rule_addmm(call: OpCall):
    bias, x, w = call.args[:3]
    if x is None or len(x.shape) != 2 or len(w.shape) != 2 or numel(bias) != w.shape[1]:
        return Unknown("addmm with a bias that is not one row")
    wrt = grad_names(("x", x), ("W", w), ("bias", bias))
    return [Use("matrix product", layers.linear, {"bias": True, "wrt": wrt},
                {"B": x.shape[0], "I": x.shape[1], "O": w.shape[1]},
                {"x": x, "W": w, "bias": bias, "y": call.outputs[0]}, contraction=True),
            *_weight_kept(x, w, wrt)]


def rule_mm(call: OpCall):
    x, w = call.args[:2]
    wrt = grad_names(("x", x), ("W", w))
    return [Use("matrix product", layers.linear, {"bias": False, "wrt": wrt},
                {"B": x.shape[0], "I": x.shape[1], "O": w.shape[1]},
                {"x": x, "W": w, "y": call.outputs[0]}, contraction=True),
            *_weight_kept(x, w, wrt)]


def rule_bmm(call: OpCall):
    a, b = call.args[:2]
    G, M, K = a.shape
    return [Use("batched product", batched_matmul, {"wrt": grad_names(("a", a), ("b", b))},
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
    pairs = [_fold_pairs(*axis) for axis in zip(grid, kernel, stride, padding, dilation,
                                                over)]
    taps, hit = math.prod(p for p, _ in pairs), math.prod(h for _, h in pairs)
    return rows * channels * (taps - hit)


def rule_convolution(call: OpCall):
    """A convolution (1-, 2- or 3-D) as products over unfolded patches (grouped: one
    product per group); the input gradient's fold adds where patches overlap.  A
    transposed convolution is the same product read the other way: each input position
    times the weights gives one patch per output channel, folded onto the output (the
    fold's additions, then the bias, are forward work; its input gradient unfolds)."""
    x, w, bias = call.args[:3]
    stride, padding, dilation, transposed, _out_pad, groups = call.args[3:9]
    if len(x.shape) < 3:
        return Unknown("a convolution without a spatial axis")
    y = call.outputs[0]
    kernel = tuple(int(k) for k in w.shape[2:])
    grid_in = tuple(int(n) for n in x.shape[2:])
    grid_out = tuple(int(n) for n in y.shape[2:])
    taps = math.prod(kernel)
    B, C, O = x.shape[0], int(x.shape[1]), int(y.shape[1])
    wrt = grad_names(("cols", x), ("W", w), ("bias", bias))
    if transposed:
        dims = {"B": B, "G": groups, "O": O // groups * taps, "K": C // groups,
                "S": math.prod(grid_in)}
        uses = [Use("transposed convolution", grouped_conv,
                    {"bias": False, "wrt": tuple(n for n in wrt if n != "bias")}, dims,
                    {"cols": x, "W": w}, contraction=True,
                    note="each input pixel times the weights, then folded")]
        extra = _fold_extra(B, O, grid_out, kernel, stride, padding, dilation, grid_in)
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
    K = C // groups * taps
    S = math.prod(grid_out)
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
        extra = _fold_extra(B, C, grid_in, kernel, stride, padding, dilation, grid_out)
        if extra != 0:
            uses.append(Use("fold of the input gradient", binary,
                            {"kind": "add", "wrt": ()}, {"N": extra}, backward_only=True,
                            note="col2im: overlapping patches summed"))
    return uses
