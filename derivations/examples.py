"""The reference document's worked examples, recomputed from their inputs.

Every figure comes from a derivation of the catalogue evaluated at the
example's sizes; the document's own figure is recorded beside it (as text to
check, never used in a computation).  "MB" in the document means 2**20 bytes
(25.6M parameters * 4 bytes = 97.7 MB), so memory is shown in MiB here.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from derivations import layers, normalization, optimizers, regularization, resnet50
from symflop.core.model import size_symbol
from symflop.derive import derive
from symflop.report.examples import Example

MIB = 2 ** 20
BACKWARD = "ResNet-50's backward FLOPs, one image (symflop estimate)"  # an input key


def _flops(c, pass_name: str, stage: str = "optimized", **sizes) -> int:
    return int(derive(c).count_function(pass_name, stage=stage)(**sizes))


STAGES = (("as written", "written"), ("optimized", "optimized"))


def _bytes(d, what: str, dtype: str = "float32", **sizes) -> int:
    subs = {size_symbol(k): v for k, v in sizes.items()}
    return int(d.memory.bytes(what, dtype).xreplace(subs))


def optimizers_25m() -> Example:
    """The optimizer table for a 25.6M-parameter model (ResNet-50): each step's share of
    ResNet-50's backward pass of one image, as ``symflop estimate`` counts it (the
    document divides by 7.6G, its figure for that backward)."""
    P, backprop = 25_600_000, resnet50.backward_one_image()
    ex = Example("optimizers-25.6m", "optimizer state, per-step FLOPs and share of backprop "
                 "for P = 25.6M parameters", {"P": P, BACKWARD: backprop})
    claims = {"sgd": (0.0, 51.2e6, 0.67), "momentum": (97.7, 102.4e6, 1.35),
              "adam": (195.3, 358.4e6, 4.72)}
    for name, (mb, flops, pct) in claims.items():
        c = optimizers.COMPONENTS[name]()
        state = _bytes(derive(c), "state", P=P)
        step = _flops(c, "step", "written", P=P)
        ex.add(f"{name} state memory", state / MIB, "MiB", f"{derive(c).memory.bytes('state')} "
               "bytes", mb, f"{mb} MB", rel_tol=0.001)
        ex.add(f"{name} step FLOPs", step, "", str(derive(c).counts("step", stage="written")
                                                    .total) + ", as written",
               flops, f"{flops / 1e6:.1f}M", rel_tol=0.001)
        best = _flops(c, "step", P=P)
        if best != step:
            ex.add(f"{name} step FLOPs, optimized", best, "",
                   str(derive(c).counts("step").total))
        ex.add(f"{name} share of backward", 100 * step / backprop, "%",
               f"step / {backprop / 1e9:.4g}G; the document divides by 7.6G",
               pct, f"{pct}%", rel_tol=0, abs_tol=0.005)  # the document rounds to 0.01%
    return ex


def batchnorm_conv() -> Example:
    """BatchNorm after a 3x3 convolution 128 -> 256 channels, B=32, 56x56."""
    B, C, H, W, C_in = 32, 256, 56, 56, 128
    N = B * H * W
    bn = normalization.batchnorm()
    conv = layers.conv2d_im2col()
    ex = Example("batchnorm-conv", "BatchNorm cost against the preceding 3x3 convolution",
                 {"B": B, "C": C, "H": H, "W": W, "C_in": C_in})
    ex.add("N = B*H*W", N, "", "values per channel", 100_352, "100,352", rel_tol=0)
    for label, stage in STAGES:
        fwd = _flops(bn, "forward", stage, N=N, d=C)
        ex.add(f"forward FLOPs ({label})", fwd, "", str(derive(bn).counts(
            "forward", stage=stage).total), 180e6, "~180M (7Nd)", rel_tol=0.02)
    for label, stage in STAGES:
        stage = "differentiated" if stage == "written" else stage
        bwd = _flops(bn, "backward", stage, N=N, d=C)
        ex.add(f"backward FLOPs ({label})", bwd, "", str(derive(bn).counts(
            "backward", stage=stage).total), 257e6, "~257M (10Nd)", rel_tol=0.02)
    K, S = C_in * 3 * 3, H * W
    conv_flops = _flops(conv, "forward", B=B, O=C, K=K, S=S)
    ex.add("3x3 conv forward FLOPs", conv_flops, "", "im2col product, K = C_in*9, S = H*W",
           14.8e9, "~14.8G", rel_tol=0.02)
    fwd = _flops(bn, "forward", "written", N=N, d=C)
    ex.add("BatchNorm forward / conv forward", 100 * fwd / conv_flops, "%", "", 1.2, "1.2%",
           rel_tol=0.1)
    ex.add("BatchNorm parameters", int(derive(bn).memory.elements("parameters").xreplace(
        {bn.dims["d"]: C})), "", "gamma and beta", 512, "512", rel_tol=0)
    conv_params = derive(conv).memory.elements("parameters").xreplace(
        {conv.dims["O"]: C, conv.dims["K"]: K})
    ex.add("conv parameters", int(conv_params), "", "weights C * C_in * 3 * 3 and biases C",
           295e3, "~295K", rel_tol=0.01)
    ex.notes.append("the document's 14.8G is a quarter of 2*B*C*C_in*9*H*W = 59.2G FLOPs "
                    "(B*C*C_in*9*H*W = 29.6G multiply-accumulates); the overhead ratio "
                    "follows it")
    return ex


def dropout_4096() -> Example:
    """Dropout on a 4096-unit hidden layer, B = 32, against the 4096x4096 matmul."""
    B, n = 32, 4096
    ex = Example("dropout-4096", "dropout cost on a 4096-unit layer against its matmul",
                 {"B": B, "n": n})
    if "dropout" not in regularization.COMPONENTS:
        ex.notes.append("no dropout component in the catalogue")
        return ex
    drop = regularization.COMPONENTS["dropout"]()
    fwd = _flops(drop, "forward", B=B, n=n)
    ex.add("dropout training FLOPs", fwd, "", str(derive(drop).counts("forward").total),
           524_288, "524,288 (4Bn)", rel_tol=0.001)
    ex.add("dropout inference FLOPs", _flops(drop, "inference", B=B, n=n), "", "", 0, "0")
    ex.add("dropout backward FLOPs", _flops(drop, "backward", B=B, n=n), "",
           str(derive(drop).counts("backward").total), 2 * B * n, "2Bn", rel_tol=0.001)
    ex.add("mask memory (float32)", _bytes(derive(drop), "saved", B=B, n=n), "bytes",
           "tensors saved for backward", 4 * B * n, "4Bn bytes", rel_tol=0.001)
    mm = _flops(layers.linear(), "forward", B=B, O=n, I=n)
    ex.add("4096x4096 linear forward FLOPs", mm, "", "B*n*(2n - 1) + B*n bias adds",
           1.07e9, "1.07G", rel_tol=0.01)
    ex.add("dropout / matmul", 100 * fwd / mm, "%", "", 0.05, "0.05%", rel_tol=0.1)
    return ex


def _premise_rounding(stated: float, figures: int) -> float:
    """Relative half-unit in the last of ``figures`` significant figures of ``stated``."""
    return 0.5 * 10 ** (np.floor(np.log10(abs(stated))) - figures + 1) / abs(stated)


def resnet50_memory() -> Example:
    """Training memory of ResNet-50 with Adam at B = 32, as ``symflop estimate`` gives it."""
    ex = Example("resnet50-memory", "ResNet-50 training memory with Adam, B = 32, float32",
                 {"P": resnet50.parameters(), "B": resnet50.RUN["B"]})
    # The document rounds P to 25.6M (3 figures) and rounds each figure it derives from P:
    # such a figure agrees when within both roundings.
    premise = _premise_rounding(25.6e6, 3)
    mem = dict(resnet50.memory())
    stated = {"parameters": (97.7, "97.7 MB"), "gradients": (97.7, "97.7 MB"),
              "Adam state": (195.3, "195.3 MB")}
    for name, (value, text) in stated.items():
        figures = len(text.split()[0].replace(".", ""))
        ex.add(name, resnet50.at(mem[name]) / MIB, "MiB", str(mem[name]), value, text,
               rel_tol=premise + _premise_rounding(value, figures))
    saved = mem["saved for backward"]
    ex.add("activations", resnet50.at(saved) / 2 ** 30, "GiB",
           f"saved for backward: {saved}", 2.5, "~2.5 GB", rel_tol=0.1)
    total = sp.Add(*mem.values())
    ex.add("total", resnet50.at(total) / 2 ** 30, "GiB", f"sum: {total}", 2.9, "~2.9 GB",
           rel_tol=0.1)
    ex.notes.append(f"every figure from {resnet50.COMMAND} (float32, each tensor autograd "
                    "keeps for backward counted once at its own size, the max-pool's int64 "
                    "indices at 8 bytes); the document does not say which tensors its "
                    "activation figure counts; its parameter count, 25.6M, rounds "
                    f"{resnet50.parameters():,}")
    return ex


EXAMPLES = {
    "optimizers-25.6m": optimizers_25m,
    "batchnorm-conv": batchnorm_conv,
    "dropout-4096": dropout_4096,
    "resnet50-memory": resnet50_memory,
}
