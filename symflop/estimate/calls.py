"""What a traced network is made of, and what a rule makes of it (no torch import).

The tracer (``symflop.estimate.trace``) records each aten operation of one forward
pass as an ``OpCall`` whose tensors are ``TensorRef`` values with symbolic shapes
(SymPy expressions in the batch size and any other size the user left symbolic).
A catalogue's rules (entry point group ``symflop.network``) turn an ``OpCall`` into
``Use`` values: a component of the catalogue, the sizes of its dimensions, and which
traced tensors its tensors are.  The engine derives the rest from the component.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp


@dataclass(frozen=True)
class TensorRef:
    """One tensor of the trace: shape in symbols, dtype size, and where it lives."""

    key: int                     # identity of this tensor (a version of it, for in-place ops)
    storage: int                 # identity of its storage: views and in-place results share it
    shape: tuple[sp.Expr, ...]
    storage_elements: sp.Expr
    itemsize: int
    dtype: str
    requires_grad: bool
    parameter: str | None = None  # the parameter's or buffer's name, if it is one

    @property
    def numel(self) -> sp.Expr:
        return sp.Mul(*self.shape)

    @property
    def floating(self) -> bool:
        return self.dtype.startswith(("float", "bfloat", "complex"))


@dataclass(frozen=True)
class OpCall:
    """One aten operation of the forward pass, in the module that ran it."""

    op: str                       # overload packet, e.g. "aten.convolution"
    overload: str                 # e.g. "aten.convolution.default"
    module: str                   # innermost module's path ("" for the model itself)
    module_type: str
    args: tuple                   # positional arguments, tensors as TensorRef
    kwargs: dict
    outputs: tuple[TensorRef, ...]
    stack: tuple[str, ...] = ()   # the modules it ran in, outermost first

    def tensor_args(self) -> list[TensorRef]:
        return [a for a in _flat(self.args) + _flat(list(self.kwargs.values()))
                if isinstance(a, TensorRef)]

    def arg(self, n: int, name: str, default=None):
        """Positional argument ``n`` or keyword ``name``."""
        if len(self.args) > n:
            return self.args[n]
        return self.kwargs.get(name, default)


def _flat(xs) -> list:
    out = []
    for x in xs:
        out.extend(_flat(x) if isinstance(x, (list, tuple)) else [x])
    return out


@dataclass(frozen=True)
class Use:
    """A catalogue component standing for (part of) one traced operation.

    ``build`` makes the component; ``dims`` gives each of its dimensions as a size of
    the trace; ``tensors`` says which traced tensor each component tensor is (a
    component tensor not named here, such as BatchNorm's normalized activations, is
    new memory).  ``forward_only`` for work whose backward the component does not give:
    none (a random draw), or one the rule counts beside it (torch's softmax backward);
    ``backward_only`` for work of the backward pass that no component's gradient holds
    (the fold of a convolution's input gradient), counted with the component's forward.
    ``kept_as`` names a traced tensor that serves the backward in place of a component
    tensor (ReLU's backward needs only where x > 0, which its output tells as well).
    ``integer`` work (on masks, positions, indices) is counted apart from FLOPs.
    """

    label: str
    build: Callable
    options: dict
    dims: dict[str, sp.Expr]
    tensors: dict[str, TensorRef] = field(default_factory=dict)
    forward_only: bool = False
    backward_only: bool = False
    contraction: bool = False  # a matrix product or convolution: its multiplications are MACs
    keep: bool = True          # False: the operation keeps other tensors (see Keep)
    kept_as: dict = field(default_factory=dict)  # a kept tensor that another one stands for
    integer: bool = False      # work on integers or booleans (masks, indices): not FLOPs
    note: str = ""


@dataclass(frozen=True)
class Keep:
    """What a fused operation keeps for its backward, when its parts' derivations would
    keep more (flash attention keeps q, k, v, the output and the row log-sum-exps and
    recomputes the probabilities; its parts are ``Use(..., keep=False)``)."""

    tensors: tuple[TensorRef, ...]
    why: str = ""


@dataclass(frozen=True)
class Gradients:
    """The tensors an operation's backward gives a gradient to, where its Uses count work
    by kind and no component says so: each is read once more, and a tensor read twice
    or more has its gradients added (LayerNorm's input on a residual stream)."""

    tensors: tuple[TensorRef, ...]


@dataclass(frozen=True)
class Unknown:
    """An operation no rule covers: listed by name, its count unknown (never 0)."""

    why: str
    backward: bool = False   # only the backward pass is unknown


FREE = ()  # a rule's answer for an operation that computes nothing (a view, an alias)
