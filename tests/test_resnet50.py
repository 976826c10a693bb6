"""ResNet-50's hand-counted saved tensors (tests/resnet50_hand.py) against what autograd
really keeps for backward (validation/resnet50.py), its parameter count, and the committed
record of its estimate (derivations/recorded/, the report's one source) against both and
against a fresh estimate."""

from collections import Counter

import pytest
import resnet50_hand as hand
import torch

from validation.resnet50 import count_parameters, resnet50, saved_for_backward

B = 32
FLOAT32 = 4


def hand_parameter_count() -> int:
    """ResNet-50's parameters from its layer shapes (bias-free convolutions; BatchNorm
    gamma and beta; fc weight and bias)."""
    n = 64 * 3 * 7 * 7 + 2 * 64                         # stem conv 7x7 + bn1
    cin = 64
    for width, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        for b in range(blocks):
            n += cin * width + 2 * width                # conv1 1x1 + bn1
            n += width * width * 9 + 2 * width          # conv2 3x3 + bn2
            n += width * 4 * width + 2 * 4 * width      # conv3 1x1 + bn3
            if b == 0:
                n += cin * 4 * width + 2 * 4 * width    # downsample conv 1x1 + bn
            cin = 4 * width
    return n + 2048 * 1000 + 1000                       # fc


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return resnet50()


@pytest.fixture(scope="module")
def small(model):
    return saved_for_backward(model, batch=2)


@pytest.fixture(scope="module")
def measured(model):
    return saved_for_backward(model, batch=B)


def bn_modules(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_parameter_count(model):
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert count_parameters(model) == hand_parameter_count() == 25_557_032
    assert len(list(model.parameters())) == 161
    assert len(bn_modules(model)) == 53 == sum(1 for m in model.modules()
                                               if isinstance(m, torch.nn.Conv2d))


def test_saved_bytes_scale_with_the_batch(small, measured):
    assert small.activation_bytes * (B // 2) == measured.activation_bytes
    for what in ("parameter_bytes", "buffer_bytes", "per_channel_bytes"):
        assert getattr(small, what) == getattr(measured, what), what
    assert small.saved_tensors == measured.saved_tensors


def test_measured_activations_equal_the_hand_count(measured):
    # every float tensor 4 bytes, the int64 max-pool indices 8
    assert hand.resnet50_saved_bytes(FLOAT32) == (
        FLOAT32 * hand.resnet50_activations() + 8 * hand.resnet50_index_values())
    assert measured.activation_bytes == B * hand.resnet50_saved_bytes(FLOAT32)
    assert measured.activation_bytes == 2_749_104_128
    # storage by storage: the same sizes per sample, int64 where the hand list says so
    seen = Counter((s.nbytes // (B * s.dtype.itemsize), s.dtype) for s in measured.storages
                   if s.cls == "activation")
    listed = Counter((n, torch.int64 if "(int64)" in kind else torch.float32)
                   for kind, n in hand.resnet50_saved_tensors())
    assert seen == listed
    assert len(hand.resnet50_saved_tensors()) == 106


def test_breakdown_by_node(measured):
    by_node = measured.by_node()
    # BatchNorm inputs are saved by BatchNorm alone; the hand list's BatchNorm values
    assert by_node["NativeBatchNormBackward0"] == (
        53, B * FLOAT32 * hand.resnet50_batchnorm_values())
    assert by_node["MaxPool2DWithIndicesBackward0"] == (1, B * 8 * 64 * 56 * 56)  # indices
    assert by_node["AddmmBackward0"] == (1, B * FLOAT32 * 2048)                   # features
    # ReLU outputs (stem, two per block, 16 block outputs) are also the inputs of the
    # next convolution or of the max-pool; the image and the max-pool output are saved
    # by convolutions alone; the last block's output by its ReLU alone.
    savers = measured.by_savers()
    assert savers[("ConvolutionBackward0", "ReluBackward0")][0] == 2 * 16 + 15
    assert savers[("ConvolutionBackward0",)] == (
        2, B * FLOAT32 * (3 * 224 * 224 + 64 * 56 * 56))
    assert savers[("ReluBackward0",)] == (1, B * FLOAT32 * 2048 * 7 * 7)
    kinds = Counter(kind.split(":")[0] for kind, _ in hand.resnet50_saved_tensors())
    assert kinds == {"BatchNorm input": 53, "ReLU output": 1 + 2 * 16, "block output": 16,
                     "input image": 1, "max-pool output": 1, "max-pool indices (int64)": 1,
                     "fc input": 1}


def test_saved_parameters_and_per_channel_tensors(model, measured):
    # Convolution, linear and BatchNorm weights are saved; biases are not.
    bn = bn_modules(model)
    unsaved = sum(m.bias.numel() for m in bn) + model.fc.bias.numel()
    assert measured.parameter_bytes == FLOAT32 * (count_parameters(model) - unsaved)
    channels = sum(m.num_features for m in bn)
    assert channels == 26_560
    # BatchNorm's running mean and variance (buffers), its batch mean and invstd
    assert measured.buffer_bytes == measured.per_channel_bytes == 2 * FLOAT32 * channels
    assert set(measured.by_node("per-channel")) == {"NativeBatchNormBackward0"}


def test_the_committed_estimate_is_what_the_estimate_gives_now():
    """The report's ResNet-50 figures (derivations/recorded/) are a fresh estimate's: a
    change to the engine, the rules or the model that moves them fails here until the
    record is remade (python -m validation.resnet50_record)."""
    from derivations.resnet50 import RECORD
    from validation.resnet50_record import estimate_record, text
    assert RECORD.read_text() == text(estimate_record())


def test_the_committed_estimate_against_the_hand_count_and_the_measurement(model, measured):
    from derivations import resnet50 as record
    mem = dict(record.memory())
    params = count_parameters(model)
    assert record.parameters() == params == hand_parameter_count()
    assert record.at(mem["parameters"]) == record.at(mem["gradients"]) == FLOAT32 * params
    # Adam: two moments per parameter, one float32 step count per parameter tensor
    assert record.at(mem["Adam state"]) == 2 * FLOAT32 * params + FLOAT32 * 161
    # Saved: the network's storages as measured (the hand count), BatchNorm's per-channel
    # statistics, and the loss's log-softmax output (C = 1000 floats) and int64 target.
    loss = B * (FLOAT32 * 1000 + 8)
    assert record.at(mem["saved for backward"], B) == (
        measured.activation_bytes + measured.per_channel_bytes + loss)
    assert measured.activation_bytes == B * hand.resnet50_saved_bytes(FLOAT32)
    by_type = record.record()["by_type"]
    assert record.at(by_type["MaxPool2d"]["saved"], B) == B * 8 * hand.resnet50_index_values()
    assert sum(record.at(p["saved"], B) for p in by_type.values()) == record.at(
        mem["saved for backward"], B)
