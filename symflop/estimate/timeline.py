"""Memory over one training step, from the traced program: the peak and its parts.

"Will it fit" asks for the peak, not for a sum.  A step never holds parameters,
gradients, state and every saved tensor at once, and it holds what a sum leaves out
(the forward's transient outputs, the activations' gradients, the optimizer's
temporaries).  The step is replayed over the traced operations, storage by storage:

* forward: each operation allocates its outputs' new storages; a storage is freed after
  its last reader, unless an operation keeps it for backward;
* backward, the operations in reverse: each allocates the gradients of its inputs that
  need one (a parameter's gradient stays: it is ``.grad``), then frees its outputs'
  gradients and what it alone still kept; the gradients of the views a splitting
  operation (unbind, split, chunk) returned are held apart, each its view's size, until
  its backward joins them (a recurrent layer's per-step input projections);
* the optimizer step: its state on the first step, and the temporaries of torch's
  implementation (``OPTIMIZER_TEMPORARIES``); then ``zero_grad(set_to_none=True)``.

The categories are those of torch's ``MemTracker``
(``torch.distributed._tools.mem_tracker``): Parameter, Buffer, Gradient, Activation
(allocated in the forward), Temp (allocated in the backward), Optstate (state and what
``step()`` allocates), Other (the input).  The peak is found at the trace's sizes; its
parts are polynomials in the sizes, which hold wherever the same moment stays the peak.
Left out: allocations inside a kernel that no operation returns, and copies autograd
makes where a gradient's layout differs from its parameter's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import sympy as sp

from symflop.errors import UsageError
from symflop.estimate.checkpoint import segment_of
from symflop.estimate.gradients import SPLITS, VIEWS, GradientBuffers, split_parts, with_gradient

CATEGORIES = ("Parameter", "Buffer", "Gradient", "Activation", "Temp", "Optstate", "Other")
IMPLEMENTATIONS = ("for-loop", "foreach", "fused")

# What step() allocates beside the state, read from torch.optim's code: (temporaries a
# parameter's update holds at once in the single-tensor "for-loop" code, of which the
# last one is still held, by its variable, while the next parameter's are made; and
# temporaries per parameter of the multi-tensor "foreach" code, all at once).  Fused
# kernels allocate none.  torch's float32 "step" scalars are part of the state.
OPTIMIZER_TEMPORARIES = {
    # denom = (exp_avg_sq.sqrt() / bc2_sqrt).add_(eps); _foreach_sqrt(exp_avg_sqs)
    "adam": (2, 1, 1),
    "adamw": (2, 1, 1),
    "sgd": (0, 0, 0),
    "momentum": (0, 0, 0),
    "nesterov": (1, 1, 1),     # grad = grad.add(buf, alpha=momentum); _foreach_add(grads, bufs)
    "adagrad": (1, 1, 1),      # std = state_sum.sqrt().add_(eps); _foreach_sqrt(state_sums)
    "rmsprop": (1, 1, 1),      # avg = square_avg.sqrt().add_(eps); _foreach_sqrt(square_avgs)
}


@dataclass
class Peak:
    """The largest memory of one step: where it occurs and its parts by category."""

    where: str
    by_category: dict[str, sp.Expr]
    notes: list[str] = field(default_factory=list)
    # the step's memory after each operation, at the trace's sizes: (phase, where, bytes)
    curve: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def total(self) -> sp.Expr:
        return sp.expand(sp.Add(*self.by_category.values()))


class _Live:
    """Storages alive now, by category, with their bytes as polynomials and at the
    trace's sizes; the largest moment so far, with what was alive then."""

    def __init__(self, at):
        self.at = at
        self.items: dict = {}          # key -> (category, bytes polynomial)
        self.now = 0
        self.best = -1
        self.best_where = ""
        self.best_items: dict = {}
        self.curve: list[tuple[str, str, int]] = []

    def add(self, key, category: str, nbytes: sp.Expr) -> None:
        if key in self.items:
            return
        self.items[key] = (category, nbytes)
        self.now += self.at(nbytes)

    def free(self, key) -> None:
        item = self.items.pop(key, None)
        if item is not None:
            self.now -= self.at(item[1])

    def mark(self, where: str) -> None:
        self.curve.append((where.split(":")[0].split(" (")[0], where, self.now))
        if self.now > self.best:
            self.best, self.best_where, self.best_items = self.now, where, dict(self.items)

    def peak(self) -> Peak:
        parts = dict.fromkeys(CATEGORIES, sp.Integer(0))
        for category, nbytes in self.best_items.values():
            parts[category] += nbytes
        return Peak(self.best_where, {k: sp.expand(v) for k, v in parts.items()},
                    curve=self.curve)


# tensors a loss function makes from nothing: the targets, which the training loop holds
_TARGETS = frozenset(("aten.zeros", "aten.zeros_like", "aten.ones", "aten.ones_like",
                      "aten.full", "aten.full_like", "aten.empty", "aten.empty_like",
                      "aten.new_zeros", "aten.new_full", "aten.new_empty"))


def _bytes(t) -> sp.Expr:
    return sp.expand(t.storage_elements * t.itemsize)


@dataclass
class Replay:
    """What the timeline needs to replay a step again with other modules checkpointed:
    the traced operations and what each keeps (which do not change with checkpointing),
    the parameters, buffers and input, the optimizer, and each module's inputs."""

    ops: list
    parameters: tuple
    buffers: tuple
    input: object
    optimizer: str
    state_bytes: sp.Expr
    at: object
    implementation: str
    module_inputs: dict            # module path -> storages of its non-parameter inputs
    t: int = 1                     # sequence parallelism over t devices:
    cut: frozenset = frozenset()   # the storages each device holds 1/t of, and those
    gathered: frozenset = frozenset()  # whole around their collective (row-parallel
    # outputs: the partial sums before the reduce-scatter, the gradient after the gather)

    def share(self, storage) -> sp.Expr:
        """The part of a storage one device holds."""
        return sp.Rational(1, self.t) if storage in self.cut else sp.Integer(1)

    def peaks(self, checkpoint: tuple[str, ...] = ()) -> tuple[Peak, Peak]:
        """(a later step's peak, the first step's) with ``checkpoint`` recomputed."""
        unknown = [p for p in checkpoint if p not in self.module_inputs]
        if unknown:
            raise UsageError(f"no module {unknown[0]!r} ran in the traced step")
        chosen = dict.fromkeys(checkpoint)
        segments = {k: seg for k, (call, _kept, _new) in enumerate(self.ops)
                    if (seg := segment_of(call.module, chosen)) is not None}
        inputs = {p: self.module_inputs[p] for p in checkpoint}

        def peak(first: bool) -> Peak:
            return step_peak(self.ops, self, self.optimizer, self.state_bytes, self.at,
                             self.implementation, first_step=first, segments=segments,
                             segment_inputs=inputs)
        return peak(False), peak(True)


def step_peak(ops: list, trace, optimizer: str, state_bytes: sp.Expr, at,
              implementation: str = "for-loop", first_step: bool = False,
              segments: dict | None = None, segment_inputs: dict | None = None) -> Peak:
    """The peak of one training step.  ``ops``: each traced operation with what its
    backward keeps (``(call, storages kept, new bytes kept)``, forward order); ``at``
    evaluates a polynomial at the trace's sizes.  ``segments``: operation index -> the
    checkpointed module it runs in (torch.utils.checkpoint, non-reentrant), whose
    operations keep nothing in the forward pass but the module's inputs
    (``segment_inputs``: module -> storages) and run again when the backward pass
    reaches them, as far as the last one whose tensors their backward keeps."""
    if implementation not in IMPLEMENTATIONS:
        raise UsageError(f"unknown optimizer implementation {implementation!r} "
                         f"(known: {', '.join(IMPLEMENTATIONS)})")
    step = _Step(ops, trace, at, segments or {})
    step.hold_model(None if first_step else state_bytes)
    step.plan(segment_inputs or {})
    step.forward()
    step.backward()
    return step.optimizer_step(optimizer, implementation,
                               state_bytes if first_step else None)


class _Step:
    """One training step replayed over the traced operations, phase by phase: the model
    held, the forward pass, the backward pass, the optimizer step."""

    def __init__(self, ops: list, trace, at, segments: dict):
        self.ops, self.trace, self.segments = ops, trace, segments
        self.share = getattr(trace, "share", lambda _s: 1)
        # the storages whole around a collective
        self.gathered: frozenset = getattr(trace, "gathered", frozenset())
        self.live = _Live(at)
        self.params: dict = {}     # storage -> the parameter's (or buffer's) tensor
        self.with_grad: set = set()
        self.last_use: dict = {}   # storage -> the last operation that reads it
        self.producer: dict = {}   # storage -> the operation that makes it
        self.kept_by: dict = {}    # storage -> the first operation whose backward keeps it
        self.targets: set = set()  # the loss's targets: held by the training loop
        self.again_kept: dict = {}  # (module, storage) kept when it runs again -> first keeper
        self.freed_after: dict = {}  # i -> storages no operation before i keeps

    def size(self, t) -> sp.Expr:
        return _bytes(t) * self.share(t.storage)

    def hold_model(self, state_bytes: sp.Expr | None) -> None:
        """The parameters, buffers, optimizer state (``state_bytes``, of a later step) and
        the input, held before the step begins."""
        live, trace = self.live, self.trace
        for p in trace.parameters:
            live.add(("param", p.name), "Parameter", sp.Integer(p.numel * p.itemsize))
        for b in trace.buffers:
            live.add(("param", b.name), "Buffer", sp.Integer(b.numel * b.itemsize))
        if state_bytes is not None:
            live.add("state", "Optstate", state_bytes)
        live.add(("storage", trace.input.storage), "Other", self.size(trace.input))
        for call, _kept, _new in self.ops:
            for t in call.tensor_args():
                if t.parameter is not None:
                    self.params[t.storage] = t
        self.with_grad = with_gradient(self.ops)

    def plan(self, segment_inputs: dict) -> None:
        """Readers, producers, keepers (an operation without a backward keeps nothing),
        and after which operation's backward each kept storage is freed."""
        segments, input_storage = self.segments, self.trace.input.storage
        for i, (call, kept, _new) in enumerate(self.ops):
            if call.module_type == "loss" and call.op in _TARGETS:
                self.targets |= {t.storage for t in call.outputs}
            for t in call.tensor_args():
                self.last_use[t.storage] = i
            for t in call.outputs:  # a view of a parameter or of the input creates nothing
                if t.storage not in self.params and t.storage != input_storage:
                    self.producer.setdefault(t.storage, i)
            if any(t.key in self.with_grad for t in call.outputs):
                for s in kept:
                    if i in segments:
                        self.again_kept.setdefault((segments[i], s), i)
                    else:
                        self.kept_by.setdefault(s, i)
        for path, storages in segment_inputs.items():
            first = min((i for i, p in segments.items() if p == path), default=None)
            for s in storages if first is not None else ():
                self.kept_by.setdefault(s, first)   # the checkpoint keeps its module's inputs
        for s, first in (*self.kept_by.items(),
                         *((s, i) for (_m, s), i in self.again_kept.items())):
            if s != input_storage and s not in self.targets:
                self.freed_after.setdefault(first, []).append(s)

    def forward(self) -> None:
        """Each operation allocates its outputs' new storages; a storage is freed after
        its last reader unless a backward keeps it."""
        live, producer, trace = self.live, self.producer, self.trace
        for i, (call, _kept, new) in enumerate(self.ops):
            whole = [t for t in call.outputs if producer.get(t.storage) == i
                     and t.storage in self.gathered]
            for t in call.outputs:
                if producer.get(t.storage) == i:
                    live.add(("storage", t.storage),
                             "Other" if t.storage in self.targets else "Activation",
                             self.size(t))
            for t in whole:               # the partial sums, whole until their reduce-scatter
                live.add(("whole", t.storage), "Activation", _bytes(t))
            if new != 0 and i not in self.segments:
                live.add(("kept", i), "Activation", new)
            live.mark(f"forward: {call.module or '(model)'} ({call.op})")
            for t in whole:
                live.free(("whole", t.storage))
            for s in {t.storage for t in call.tensor_args()} | {t.storage for t in call.outputs}:
                last = cast(int, self.last_use.get(s, producer.get(s)))  # read or made: known
                if last <= i and s not in self.kept_by \
                        and s not in self.params and s != trace.input.storage \
                        and s not in self.targets:
                    live.free(("storage", s))

    def _gives_gradient(self, t) -> bool:
        return t.floating and (t.requires_grad or t.key in self.with_grad) \
            and t.storage != self.trace.input.storage

    def _gradient_buffers(self) -> GradientBuffers:
        """A parameter read by several operations gets one gradient from each; autograd
        holds them in its input buffer and gives the parameter their sum once all have
        come."""
        expected: dict = {}
        for call, _kept, _new in self.ops:
            if call.op not in VIEWS and any(t.key in self.with_grad for t in call.outputs):
                for t in call.tensor_args():
                    if t.storage in self.params and self._gives_gradient(t):
                        expected[t.storage] = expected.get(t.storage, 0) + 1
        through_view = {o.key for call, _k, _n in self.ops if call.op in VIEWS
                        for o in call.outputs if o.storage in self.params}
        return GradientBuffers(self.live, expected, self.params, through_view, _bytes)

    def backward(self) -> None:
        """The operations in reverse: each allocates its inputs' gradients, then frees
        its outputs' gradients and what it alone still kept; a checkpointed module runs
        again when the backward pass reaches it."""
        live, ops, segments = self.live, self.ops, self.segments
        buffers = self._gradient_buffers()
        part = split_parts(ops)
        recomputed: set = set()
        for i in range(len(ops) - 1, -1, -1):
            call, _kept, _new = ops[i]
            if not any(t.key in self.with_grad for t in call.outputs):
                continue
            if i in segments and segments[i] not in recomputed:
                recomputed.add(segments[i])
                _recompute(live, ops, [j for j, p in segments.items() if p == segments[i]],
                           self.producer, {s for (m, s) in self.again_kept if m == segments[i]},
                           self.size)
            self._input_gradients(call, buffers, part)
            self._output_gradients(i, call, buffers)

    def _input_gradients(self, call, buffers: GradientBuffers, part: dict) -> None:
        """The gradients ``call``'s backward makes for its inputs."""
        for t in call.tensor_args():
            if not self._gives_gradient(t):
                continue
            if t.storage in self.params:
                if call.op not in VIEWS:   # a view passes the gradient on
                    buffers.arrive(t)
            elif t.key in part:
                p = part[t.key]
                self.live.add(("part", p.key), "Temp",
                              sp.expand(p.numel * p.itemsize * self.share(p.storage)))
            else:
                self.live.add(("grad", t.storage), "Temp", self.size(t))

    def _output_gradients(self, i: int, call, buffers: GradientBuffers) -> None:
        """The moment of operation ``i``'s backward, then what it frees: its outputs'
        gradients, what it alone kept."""
        live, producer = self.live, self.producer
        whole = [t for t in call.outputs if producer.get(t.storage) == i
                 and t.storage in self.gathered]
        for t in whole:               # the gradient, all-gathered whole (its shard gone)
            live.free(("grad", t.storage))
            live.add(("whole", t.storage), "Temp", _bytes(t))
        live.mark(f"backward: {call.module or '(model)'} ({call.op})")
        for t in whole:
            live.free(("whole", t.storage))
        buffers.settle()
        if call.op in SPLITS:            # the parts joined: each part's gradient goes
            for o in call.outputs:
                live.free(("part", o.key))
        for t in call.outputs:
            if producer.get(t.storage) == i:
                live.free(("grad", t.storage))
        live.free(("kept", i))
        for s in self.freed_after.get(i, ()):
            live.free(("storage", s))

    def optimizer_step(self, optimizer: str, implementation: str,
                       state_bytes: sp.Expr | None) -> Peak:
        """The optimizer's state (``state_bytes``, allocated on the first step) and the
        temporaries of torch's implementation; the step's peak."""
        live = self.live
        trainable = [p for p in self.trace.parameters if p.trainable]
        notes = []
        itemsize = trainable[0].itemsize if trainable else 4
        if state_bytes is not None:
            live.add("state", "Optstate", state_bytes)
        loop, carry, each = OPTIMIZER_TEMPORARIES.get(optimizer, (0, 0, 0))
        if optimizer not in OPTIMIZER_TEMPORARIES:
            notes.append(f"{optimizer}: the temporaries of its torch implementation are not "
                         "modelled (its state is)")
        if implementation == "for-loop" and trainable:
            sizes = [0] + [p.numel for p in trainable]   # torch.optim's order: the parameters'
            most = max(loop * n + (carry * m if loop else 0) for m, n in zip(sizes, sizes[1:]))
            live.add("temporaries", "Optstate", sp.Integer(most * itemsize))
        elif implementation == "foreach":
            total = sum(p.numel for p in trainable)
            live.add("temporaries", "Optstate", sp.Integer(each * total * itemsize))
        live.mark(f"optimizer step ({optimizer}, {implementation})")
        out = live.peak()
        out.notes = notes
        return out


def _recompute(live: _Live, ops: list, members: list[int], producer: dict,
               again_kept: set, size=_bytes) -> None:
    """A checkpointed module's forward run again, as far as the last operation whose
    tensors its backward keeps: each output allocated; those no backward keeps freed
    after their last reader in the run (torch keeps nothing else of it)."""
    needed = [j for j in members if ops[j][2] != 0
              or any(t.storage in again_kept for t in ops[j][0].outputs)]
    if not needed:
        return
    run = [j for j in sorted(members) if j <= max(needed)]
    last_read = {}
    for j in run:
        for t in ops[j][0].tensor_args():
            last_read[t.storage] = j
    made = []
    for j in run:
        call, _kept, new = ops[j]
        for t in call.outputs:
            if producer.get(t.storage) == j and ("storage", t.storage) not in live.items:
                live.add(("storage", t.storage), "Activation", size(t))
                made.append(t.storage)
        if new != 0:
            live.add(("kept", j), "Activation", new)
        live.mark(f"recompute: {call.module or '(model)'} ({call.op})")
        for s in [s for s in made if s not in again_kept and last_read.get(s, j) <= j]:
            live.free(("storage", s))
            made.remove(s)
