"""The reference document's worked examples, recomputed from their inputs.

Every figure comes from a derivation of the catalogue evaluated at the
example's sizes; the document's own figure is recorded beside it (as text to
check, never used in a computation).  "MB" in the document means 2**20 bytes
(25.6M parameters * 4 bytes = 97.7 MB), so memory is shown in MiB here.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

from derivations import layers, normalization, optimizers, regularization, training
from symflop.compose import CompositeDerivation
from symflop.derive import derive
from symflop.report.examples import Example

MIB = 2 ** 20
ACTIVATIONS = "float activation values per sample (counted from the layer shapes)"  # input key
INDICES = "int64 max-pool indices per sample"  # an input key
INDEX_BYTES = np.dtype(np.int64).itemsize  # torch saves max-pool indices as int64


def _flops(c, pass_name: str, stage: str = "optimized", **sizes) -> int:
    return int(derive(c).count_function(pass_name, stage=stage)(**sizes))


STAGES = (("as written", "written"), ("optimized", "optimized"))


def _bytes(d, what: str, dtype: str = "float32", **sizes) -> int:
    subs = {sp.Symbol(k, integer=True, positive=True): v for k, v in sizes.items()}
    return int(d.memory.bytes(what, dtype).xreplace(subs))


def optimizers_25m() -> Example:
    """The optimizer table for a 25.6M-parameter model (ResNet-50)."""
    P, backprop = 25_600_000, 7.6e9
    ex = Example("optimizers-25.6m", "optimizer state, per-step FLOPs and share of backprop "
                 "for P = 25.6M parameters", {"P": P, "backward FLOPs (given)": backprop})
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
               f"step / {backprop / 1e9:g}G",
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


# -- ResNet-50's saved tensors -----------------------------------------------------------
#
# Roles of the tensors autograd keeps for ResNet-50's backward (one storage each).
IMAGE, BN_INPUT, RELU_OUTPUT, BLOCK_OUTPUT = ("input image", "BatchNorm input",
                                              "ReLU output", "block output")
POOL_OUTPUT, POOL_INDICES, FC_INPUT = "max-pool output", "max-pool indices", "fc input"
INT64_ROLES = (POOL_INDICES,)  # saved as int64 (8 bytes each) whatever the float dtype


def _conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of a convolution or pooling window."""
    return (n + 2 * padding - kernel) // stride + 1


def _resnet50_saved(size: int = 224) -> list[tuple[str, str, int]]:
    """(module, role, elements per sample) of each storage autograd keeps for backward.

    Derived from torchvision's resnet50 (v1.5) layer shapes; see
    ``resnet50_saved_tensors`` for which node saves what.
    """
    side = _conv_out(size, 7, 2, 3)                          # stem conv 7x7/2: 112
    stem = 64 * side * side
    saved = [("conv1", IMAGE, 3 * size * size),                # the stem conv's input
             ("bn1", BN_INPUT, stem),                          # = conv1's output
             ("bn1", RELU_OUTPUT, stem)]                       # in place on bn1's output
    side = _conv_out(side, 3, 2, 1)                            # max-pool 3x3/2: 56
    saved += [("maxpool", POOL_INDICES, 64 * side * side),
              ("maxpool", POOL_OUTPUT, 64 * side * side)]      # layer1.0's input
    stages = tuple(zip((1, 2, 3, 4), (64, 128, 256, 512), (3, 4, 6, 3), (1, 2, 2, 2)))
    for stage, width, blocks, stride in stages:
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            out = _conv_out(side, 3, stride if b == 0 else 1, 1)  # the stride is on conv2
            saved += [(f"{p}.bn1", BN_INPUT, width * side * side),
                      (f"{p}.bn1", RELU_OUTPUT, width * side * side),     # conv2's input
                      (f"{p}.bn2", BN_INPUT, width * out * out),
                      (f"{p}.bn2", RELU_OUTPUT, width * out * out),       # conv3's input
                      (f"{p}.bn3", BN_INPUT, 4 * width * out * out)]
            if b == 0:  # projection shortcut: conv1x1 (its input is the block input) + bn
                saved.append((f"{p}.downsample.1", BN_INPUT, 4 * width * out * out))
            # relu(bn3 output + identity), both in place on bn3's output storage
            saved.append((p, BLOCK_OUTPUT, 4 * width * out * out))
            side = out
    return saved + [("fc", FC_INPUT, 4 * 512)]                  # pooled, flattened features


def resnet50_saved_tensors() -> list[tuple[str, int]]:
    """(kind, elements per sample) of each tensor storage that autograd keeps for the
    backward of torchvision's ResNet-50 (v1.5) in training mode at 224x224.

    Each storage is listed once, under the tensor it holds, however many nodes save
    it.  What each autograd node saves:

    * a convolution saves its input and its weight (bias=False);
    * BatchNorm (training) saves its input, its weight (gamma), its running mean and
      variance and the batch mean and inverse standard deviation (C values each);
    * ``nn.ReLU(inplace=True)`` saves its output, which is the storage of the
      BatchNorm output it overwrote; the next convolution saves the same storage as
      its input;
    * ``out += identity`` saves nothing; the block's ReLU then saves the sum, which
      is the storage of bn3's output; the next block's conv1 (and the projection
      shortcut's convolution) saves it again as its input.  The projection's
      BatchNorm output is read only by the addition and kept by no one;
    * max-pool saves its input (the stem ReLU's output) and the int64 index of each
      output value; its output is saved by layer1.0's conv1 and shortcut;
    * adaptive average pooling to 1x1 runs as a mean and saves no tensor; flatten is a
      view; the linear layer saves its input (the pooled features) and weight.  The
      logits are saved by nobody (a loss would save what it saves).

    A kind reads "<tensor>: <module>" in torchvision's module names; the module of a
    ReLU output is the BatchNorm whose output it overwrote, that of a block output
    the block.  So the list holds: the image; the input of each of the 53 BatchNorm
    layers (the output of each convolution); the output of the stem ReLU and of the
    two inner ReLUs of each of the 16 blocks; the 16 block outputs; the max-pool
    output and its indices; the features that enter fc.  The max-pool indices are
    int64: their kind says so, and they take 8 bytes each whatever the float dtype
    (``resnet50_saved_bytes``).  Not listed, because they do not scale with the
    batch: the saved parameters (weights the model holds anyway) and BatchNorm's
    per-channel statistics.  Checked against a measurement of what autograd saves
    in ``tests/test_resnet50.py`` (``validation/resnet50.py``).
    """
    return [(role + (" (int64)" if role in INT64_ROLES else "") + f": {module}", n)
            for module, role, n in _resnet50_saved()]


def _resnet50_activations() -> int:
    """Float values per sample kept for backward by ResNet-50 at 224x224 (the int64
    max-pool indices apart)."""
    return sum(n for _, role, n in _resnet50_saved() if role not in INT64_ROLES)


def resnet50_index_values() -> int:
    """int64 values per sample kept for backward (the max-pool indices)."""
    return sum(n for _, role, n in _resnet50_saved() if role in INT64_ROLES)


def resnet50_saved_bytes(float_bytes: int = 4) -> int:
    """Bytes per sample of the tensors ResNet-50 keeps for backward: float tensors of
    ``float_bytes`` each, int64 indices of 8."""
    return float_bytes * _resnet50_activations() + 8 * resnet50_index_values()


def resnet50_batchnorm_values() -> int:
    """Values per sample that ResNet-50's BatchNorm layers normalize (their inputs)."""
    return sum(n for _, role, n in _resnet50_saved() if role == BN_INPUT)


def resnet50_memory() -> Example:
    """Training memory of ResNet-50 with Adam at B = 32."""
    P, B = 25_600_000, 32
    per_sample, indices = _resnet50_activations(), resnet50_index_values()
    t = training.training_step("adam")
    d = CompositeDerivation(t)
    sizes = {"P": P, "A": per_sample * B}
    ex = Example("resnet50-memory", "ResNet-50 training memory with Adam, B = 32, float32",
                 {"P": P, "B": B, ACTIVATIONS: per_sample, INDICES: indices})
    params = _bytes(d, "parameters", **sizes)
    grads = _bytes(d, "gradients", **sizes)
    state = _bytes(d, "state", **sizes)
    acts = _bytes(d, "saved", **sizes)
    index_bytes = INDEX_BYTES * B * indices
    ex.add("parameters", params / MIB, "MiB", str(d.memory.bytes("parameters")), 97.7,
           "97.7 MB", rel_tol=0.001)
    ex.add("gradients", grads / MIB, "MiB", str(d.memory.bytes("gradients")), 97.7,
           "97.7 MB", rel_tol=0.001)
    ex.add("Adam state", state / MIB, "MiB", str(d.memory.bytes("state")), 195.3, "195.3 MB",
           rel_tol=0.001)
    ex.add("activations", acts / 2 ** 30, "GiB", "float tensors saved for backward, x B",
           2.5, "~2.5 GB", rel_tol=0.1)
    ex.add("max-pool indices", index_bytes / MIB, "MiB", "int64, 8 bytes each, x B")
    total = params + grads + state + acts + index_bytes
    ex.add("total", total / 2 ** 30, "GiB", "sum", 2.9, "~2.9 GB", rel_tol=0.1)
    ex.notes.extend(t.notes)
    ex.notes.append("the document does not say which tensors its activation figure counts; "
                    "this count is every tensor autograd saves for ResNet-50's backward "
                    "(derivations/examples.py::resnet50_saved_tensors, checked against a "
                    "measurement in tests/test_resnet50.py); saved weights and BatchNorm's "
                    "per-channel statistics are not activations")
    return ex


EXAMPLES = {
    "optimizers-25.6m": optimizers_25m,
    "batchnorm-conv": batchnorm_conv,
    "dropout-4096": dropout_4096,
    "resnet50-memory": resnet50_memory,
}
