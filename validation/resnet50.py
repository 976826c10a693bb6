"""ResNet-50 in torch.nn, and a measurement of what autograd keeps for its backward.

``resnet50()`` builds the network exactly as torchvision's ``resnet50()`` defines it
(torchvision cannot be imported here: its wheel needs torch's CUDA build): ResNet
v1.5, the stride on the 3x3 convolution of the bottleneck; Bottleneck blocks of
conv1x1-bn-relu, conv3x3-bn-relu, conv1x1-bn, ``out += identity``, relu, with
``nn.ReLU(inplace=True)``; a projection shortcut (conv1x1 without bias + BatchNorm)
on the first block of each stage; the stem conv7x7/2 + bn + relu + max-pool 3x3/2
(padding 1); adaptive average pooling, flatten and a 2048 -> 1000 linear layer;
blocks (3, 4, 6, 3).  Module names and parameter order follow torchvision, so a
torchvision state dict loads into it.

``saved_for_backward`` runs one training-mode forward under
``torch.autograd.graph.saved_tensors_hooks`` and records every tensor autograd
saves, then deduplicates them by their underlying storage: in-place ReLU saves its
output, which is the BatchNorm output storage that the next convolution saves as
its input (and a block's output is also what the next block's shortcut saves).
Each storage is counted once and put in one class:

* ``parameter``: the storage of a parameter (convolution and linear weights,
  BatchNorm's gamma); kept by the model anyway, so not activation memory;
* ``buffer``: the storage of a buffer (BatchNorm running mean and variance);
* ``per-channel``: a saved tensor whose size does not depend on the batch
  (BatchNorm's saved batch mean and inverse standard deviation, shape (C,));
* ``activation``: every other storage, whose size is proportional to the batch:
  the input image (saved by the first convolution), convolution and BatchNorm
  inputs, ReLU outputs, the max-pool input and its int64 indices, the features
  the linear layer saves.

This module imports torch; ``derivations/`` never does.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

LAYERS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
EXPANSION = 4


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (v1.5: the stride on the 3x3 convolution)."""

    expansion = EXPANSION

    def __init__(self, cin: int, width: int, stride: int = 1,
                 downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ResNet with Bottleneck blocks (no zero-init of the last BatchNorm)."""

    def __init__(self, layers: tuple[int, ...] = LAYERS, num_classes: int = 1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(WIDTHS[0], layers[0])
        self.layer2 = self._make_layer(WIDTHS[1], layers[1], stride=2)
        self.layer3 = self._make_layer(WIDTHS[2], layers[2], stride=2)
        self.layer4 = self._make_layer(WIDTHS[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(WIDTHS[3] * EXPANSION, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, width: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != width * EXPANSION:
            downsample = nn.Sequential(conv1x1(self.inplanes, width * EXPANSION, stride),
                                       nn.BatchNorm2d(width * EXPANSION))
        layers = [Bottleneck(self.inplanes, width, stride, downsample)]
        self.inplanes = width * EXPANSION
        layers += [Bottleneck(self.inplanes, width) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet50(num_classes: int = 1000) -> nn.Module:
    """torchvision's ``resnet50()`` (weights=None)."""
    return ResNet(LAYERS, num_classes)


def count_parameters(model: nn.Module) -> int:
    """Values in the model's parameters (25,557,032 for ResNet-50)."""
    return sum(p.numel() for p in model.parameters())


@dataclass
class Saved:
    """One storage autograd keeps, with every saved tensor that refers to it."""

    cls: str              # parameter | buffer | per-channel | activation
    nbytes: int           # bytes of the storage (each counted once)
    dtype: torch.dtype
    shape: tuple[int, ...]  # shape of the first saved tensor seen on this storage
    nodes: list[str] = field(default_factory=list)  # grad_fn class of each saver, in order

    @property
    def node(self) -> str:
        """The first autograd node that saved the storage."""
        return self.nodes[0]


@dataclass
class SavedMeasurement:
    """What one training-mode forward keeps for backward, by storage."""

    batch: int
    size: int
    dtype: torch.dtype
    storages: list[Saved]
    saved_tensors: int  # tensors packed (before deduplication)

    def bytes_of(self, cls: str) -> int:
        return sum(s.nbytes for s in self.storages if s.cls == cls)

    @property
    def activation_bytes(self) -> int:
        """Unique batch-dependent storages that are not parameters or buffers."""
        return self.bytes_of("activation")

    @property
    def parameter_bytes(self) -> int:
        """Unique parameter storages autograd saved (the model holds them anyway)."""
        return self.bytes_of("parameter")

    @property
    def buffer_bytes(self) -> int:
        return self.bytes_of("buffer")

    @property
    def per_channel_bytes(self) -> int:
        """Saved tensors that do not scale with the batch (BatchNorm mean and invstd)."""
        return self.bytes_of("per-channel")

    def by_node(self, cls: str = "activation") -> dict[str, tuple[int, int]]:
        """grad_fn class of the first saver -> (storages, bytes), of one class."""
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for s in self.storages:
            if s.cls == cls:
                out[s.node][0] += 1
                out[s.node][1] += s.nbytes
        return {k: (n, b) for k, (n, b) in sorted(out.items())}

    def by_savers(self, cls: str = "activation") -> dict[tuple[str, ...], tuple[int, int]]:
        """The set of grad_fn classes that saved a storage -> (storages, bytes)."""
        out: dict[tuple[str, ...], list[int]] = defaultdict(lambda: [0, 0])
        for s in self.storages:
            if s.cls == cls:
                key = tuple(sorted(set(s.nodes)))
                out[key][0] += 1
                out[key][1] += s.nbytes
        return {k: (n, b) for k, (n, b) in sorted(out.items())}

    def by_shape(self, cls: str = "activation") -> dict[tuple[tuple[int, ...], str],
                                                        tuple[int, int]]:
        """(shape, dtype) -> (storages, bytes), of one class."""
        out: dict[tuple[tuple[int, ...], str], list[int]] = defaultdict(lambda: [0, 0])
        for s in self.storages:
            if s.cls == cls:
                key = (s.shape, str(s.dtype).removeprefix("torch."))
                out[key][0] += 1
                out[key][1] += s.nbytes
        return {k: (n, b) for k, (n, b) in sorted(out.items())}

    def summary(self) -> str:
        lines = [f"ResNet-50, B = {self.batch}, {self.size}x{self.size}, {self.dtype}: "
                 f"{self.saved_tensors} saved tensors on {len(self.storages)} storages"]
        for cls in ("activation", "parameter", "buffer", "per-channel"):
            n = sum(1 for s in self.storages if s.cls == cls)
            lines.append(f"  {cls:<11} {n:4d} storages {self.bytes_of(cls):>14,} bytes")
        lines.append("  activations by the set of nodes that saved each storage:")
        for nodes, (n, b) in self.by_savers().items():
            lines.append(f"    {' + '.join(nodes):<60} {n:4d} {b:>14,}")
        lines.append("  activations by shape:")
        for (shape, dt), (n, b) in self.by_shape().items():
            lines.append(f"    {str(shape):<24} {dt:<8} {n:4d} {b:>14,}")
        return "\n".join(lines)


def saved_for_backward(model: nn.Module | None = None, batch: int = 32,
                       dtype: torch.dtype = torch.float32, size: int = 224,
                       seed: int = 0) -> SavedMeasurement:
    """Run one training-mode forward and classify every storage autograd saves.

    The model (a fresh ``resnet50()`` when None, built after ``torch.manual_seed(seed)``)
    is converted to ``dtype`` in place and put in training mode; the forward updates
    its BatchNorm running statistics, as any training step does.  The pack hook keeps
    each saved tensor in a table under a key, exactly as autograd would keep it; after
    the forward the graph is walked from the output and every ``_saved_*`` attribute
    of every node is read once, which calls the unpack hook with the key, so each
    saved tensor is attributed to the autograd node (grad_fn class) that saved it.
    Only the metadata is kept; the graph, the output, the input and the table are
    freed before returning.
    """
    torch.manual_seed(seed)
    model = resnet50() if model is None else model
    model = model.to(dtype).train()
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    buffers = {b.untyped_storage().data_ptr() for b in model.buffers() if b.numel()}
    packed: list[torch.Tensor] = []
    unpacked: list[int] = []

    def pack(t: torch.Tensor) -> int:
        packed.append(t)
        return len(packed) - 1

    def unpack(key: int) -> torch.Tensor:
        unpacked.append(key)
        return packed[key]

    x = torch.randn(batch, 3, size, size, dtype=dtype)
    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        y = model(x)
    del x
    savers = _savers(y.grad_fn, unpacked)
    if sorted(savers) != list(range(len(packed))):
        raise AssertionError(f"{len(packed)} tensors saved, {len(savers)} found in the graph")

    storages: dict[int, Saved] = {}
    for key, t in enumerate(packed):
        st = t.untyped_storage()
        ptr, nbytes = st.data_ptr(), st.nbytes()
        if nbytes == 0:  # an empty placeholder holds no memory
            continue
        if ptr in params:
            cls = "parameter"
        elif ptr in buffers:
            cls = "buffer"
        elif t.dim() >= 2 and t.shape[0] == batch:
            cls = "activation"
        else:
            cls = "per-channel"
        entry = storages.get(ptr)
        if entry is None:
            entry = storages[ptr] = Saved(cls, nbytes, t.dtype, tuple(t.shape))
        elif entry.cls != cls or entry.nbytes != nbytes:
            raise AssertionError(f"one storage saved as {entry.cls} and as {cls}")
        entry.nodes.append(savers[key])
    n_saved = len(packed)
    del y
    packed.clear()
    gc.collect()
    return SavedMeasurement(batch, size, dtype, list(storages.values()), n_saved)


def _savers(root, unpacked: list[int]) -> dict[int, str]:
    """key of each packed tensor -> grad_fn class name of the node that saved it."""
    savers: dict[int, str] = {}
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for attr in dir(node):
            if attr.startswith("_saved_"):
                unpacked.clear()
                getattr(node, attr)
                for key in unpacked:
                    if savers.setdefault(key, type(node).__name__) != type(node).__name__:
                        raise AssertionError(f"tensor {key} saved by two nodes")
        stack.extend(fn for fn, _ in node.next_functions)
    return savers
