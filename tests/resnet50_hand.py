"""ResNet-50's saved tensors counted by hand from its layer shapes: the independent count
that ``tests/test_resnet50.py`` holds the measurement and the estimate's record to."""

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


def resnet50_activations() -> int:
    """Float values per sample kept for backward by ResNet-50 at 224x224 (the int64
    max-pool indices apart)."""
    return sum(n for _, role, n in _resnet50_saved() if role not in INT64_ROLES)


def resnet50_index_values() -> int:
    """int64 values per sample kept for backward (the max-pool indices)."""
    return sum(n for _, role, n in _resnet50_saved() if role in INT64_ROLES)


def resnet50_saved_bytes(float_bytes: int = 4) -> int:
    """Bytes per sample of the tensors ResNet-50 keeps for backward: float tensors of
    ``float_bytes`` each, int64 indices of 8."""
    return float_bytes * resnet50_activations() + 8 * resnet50_index_values()


def resnet50_batchnorm_values() -> int:
    """Values per sample that ResNet-50's BatchNorm layers normalize (their inputs)."""
    return sum(n for _, role, n in _resnet50_saved() if role == BN_INPUT)


