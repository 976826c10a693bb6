"""What autograd does with the traced operations in the backward pass, as the memory
timeline (``timeline``) replays it.

Why apart: which tensors get a gradient, which operations pass one on (views) or hold
their parts' gradients apart (splits), and how a parameter's gradients from several
readers meet in autograd's input buffer are autograd's rules, not the timeline's
bookkeeping of what is alive.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

# operations whose backward passes a gradient on without making one
VIEWS = frozenset(f"aten.{v}" for v in (
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "unsqueeze", "squeeze",
    "detach", "alias", "expand", "as_strided", "_reshape_alias", "flatten"))


# operations that return several views of one tensor: autograd holds the gradient of each
# view apart, and the operation's backward joins them (stack or cat) into a new tensor
SPLITS = frozenset(f"aten.{v}" for v in (
    "unbind", "split", "split_with_sizes", "chunk", "unsafe_split",
    "unsafe_split_with_sizes", "unsafe_chunk", "tensor_split"))


def split_parts(ops: list) -> dict:
    """The outputs of each splitting operation (and their in-place successors: an
    in-place operation's result is the same tensor to autograd's buffer) -> the part."""
    part = {}
    for call, _k, _n in ops:
        if call.op in SPLITS:
            part.update({o.key: o for o in call.outputs})
        elif call.op.endswith("_") and call.outputs and call.tensor_args() \
                and call.tensor_args()[0].key in part \
                and call.outputs[0].storage == call.tensor_args()[0].storage:
            part[call.outputs[0].key] = part[call.tensor_args()[0].key]
    return part


# operations whose floating results get no gradient: autograd's saved handles and the
# tensors made from a tensor's shape or filled at random
NO_GRADIENT = frozenset(f"aten.{v}" for v in (
    "detach", "zeros_like", "ones_like", "empty_like", "full_like", "rand_like",
    "randn_like", "bernoulli", "bernoulli_", "uniform_", "normal_", "zero_", "fill_",
    "new_zeros", "new_ones", "new_empty", "new_full"))


def with_gradient(ops: list) -> set:
    """The tensors the backward pass gives a gradient: those autograd marked (flagged
    where an operation reads them), the loss, and the results of operations that ran
    below autograd (the parts of a decomposed loss: cross-entropy's gather, where, neg)
    which read one and lead to the loss, each as large as the gradient the composite's
    backward makes there (the log-probabilities' gradient)."""
    marked = {t.key for call, _k, _n in ops for t in call.tensor_args() if t.requires_grad}
    if not ops:
        return marked
    needs = set(marked)
    for call, _k, _n in ops:
        if call.op not in NO_GRADIENT and any(t.key in needs for t in call.tensor_args()):
            needs |= {o.key for o in call.outputs if o.floating}
    reaches = {t.key for t in ops[-1][0].outputs}
    for call, _k, _n in reversed(ops):
        if any(o.key in reaches for o in call.outputs) and call.op not in NO_GRADIENT:
            reaches |= {t.key for t in call.tensor_args() if t.key in needs}
    return marked | reaches


class GradientBuffers:
    """Gradients of parameters on their way to ``.grad``.  One from a single reader is the
    parameter's gradient at once.  Of a parameter read n times, the first waits in
    autograd's input buffer; the next ones are added into it in place, unless the first
    came through a view of the parameter (a product's weight gradient, transposed back):
    that one is added out of place, the buffer, the new gradient and their sum living
    together; the n-th sum becomes ``.grad``.  ``live``: the timeline's storages alive
    (``timeline._Live``); ``nbytes``: a tensor's bytes."""

    def __init__(self, live, expected: dict, params: dict, through_view: set,
                 nbytes: Callable[[object], sp.Expr]):
        self.live, self.expected, self.params = live, expected, params
        self.through_view = through_view
        self.nbytes = nbytes
        self.count: dict = {}
        self.view: dict = {}
        self.pending: list = []

    def arrive(self, t) -> None:
        s = t.storage
        n = self.expected.get(s, 1)
        k = self.count[s] = self.count.get(s, 0) + 1
        nbytes = self.nbytes(self.params[s])
        if n == 1:
            self.live.add(("grad", s), "Gradient", nbytes)
        elif k == 1:
            self.live.add(("buffer", s), "Temp", nbytes)
            self.view[s] = t.key in self.through_view
        else:
            self.live.add(("arriving", s), "Temp", nbytes)
            if self.view.pop(s, False):
                self.live.add(("sum", s), "Temp", nbytes)
            self.pending.append((s, k == n))

    def settle(self) -> None:
        """After the operation: each new gradient added, the last sum made ``.grad``."""
        for s, last in self.pending:
            self.live.free(("arriving", s))
            if ("sum", s) in self.live.items:
                self.live.free(("buffer", s))
                self.live.items[("buffer", s)] = self.live.items.pop(("sum", s))
            if last:
                self.live.free(("buffer", s))
                self.live.add(("grad", s), "Gradient", self.nbytes(self.params[s]))
        self.pending.clear()
