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

import sympy as sp

from symflop.errors import UsageError

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


# operations whose backward passes a gradient on without making one
_VIEWS = frozenset(f"aten.{v}" for v in (
    "view", "_unsafe_view", "reshape", "t", "transpose", "permute", "unsqueeze", "squeeze",
    "detach", "alias", "expand", "as_strided", "_reshape_alias", "flatten"))


# operations that return several views of one tensor: autograd holds the gradient of each
# view apart, and the operation's backward joins them (stack or cat) into a new tensor
_SPLITS = frozenset(f"aten.{v}" for v in (
    "unbind", "split", "split_with_sizes", "chunk", "unsafe_split",
    "unsafe_split_with_sizes", "unsafe_chunk", "tensor_split"))


def _parts(ops: list) -> dict:
    """The outputs of each splitting operation (and their in-place successors: an
    in-place operation's result is the same tensor to autograd's buffer) -> the part."""
    part = {}
    for call, _k, _n in ops:
        if call.op in _SPLITS:
            part.update({o.key: o for o in call.outputs})
        elif call.op.endswith("_") and call.outputs and call.tensor_args() \
                and call.tensor_args()[0].key in part \
                and call.outputs[0].storage == call.tensor_args()[0].storage:
            part[call.outputs[0].key] = part[call.tensor_args()[0].key]
    return part


# operations whose floating results get no gradient: autograd's saved handles and the
# tensors made from a tensor's shape or filled at random
_NO_GRADIENT = frozenset(f"aten.{v}" for v in (
    "detach", "zeros_like", "ones_like", "empty_like", "full_like", "rand_like",
    "randn_like", "bernoulli", "bernoulli_", "uniform_", "normal_", "zero_", "fill_",
    "new_zeros", "new_ones", "new_empty", "new_full"))


def _with_gradient(ops: list) -> set:
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
        if call.op not in _NO_GRADIENT and any(t.key in needs for t in call.tensor_args()):
            needs |= {o.key for o in call.outputs if o.floating}
    reaches = {t.key for t in ops[-1][0].outputs}
    for call, _k, _n in reversed(ops):
        if any(o.key in reaches for o in call.outputs) and call.op not in _NO_GRADIENT:
            reaches |= {t.key for t in call.tensor_args() if t.key in needs}
    return marked | reaches


def _bytes(t) -> sp.Expr:
    return sp.expand(t.storage_elements * t.itemsize)


def segment_of(module: str, checkpointed) -> str | None:
    """The checkpointed module (of ``checkpointed``) that ``module`` runs in, if any."""
    return next((p for p in checkpointed if module == p or module.startswith(p + ".")),
                None)


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
        return tuple(step_peak(self.ops, self, self.optimizer, self.state_bytes, self.at,
                               self.implementation, first_step=first, segments=segments,
                               segment_inputs=inputs)
                     for first in (False, True))


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
    segments = segments or {}
    share = getattr(trace, "share", lambda _s: 1)

    def size(t) -> sp.Expr:
        return _bytes(t) * share(t.storage)
    if implementation not in IMPLEMENTATIONS:
        raise UsageError(f"unknown optimizer implementation {implementation!r} "
                         f"(known: {', '.join(IMPLEMENTATIONS)})")
    live = _Live(at)
    params = {}                    # storage -> the parameter's (or buffer's) tensor
    for p in trace.parameters:
        live.add(("param", p.name), "Parameter", sp.Integer(p.numel * p.itemsize))
    for b in trace.buffers:
        live.add(("param", b.name), "Buffer", sp.Integer(b.numel * b.itemsize))
    trainable = [p for p in trace.parameters if p.trainable]
    if not first_step:
        live.add("state", "Optstate", state_bytes)
    live.add(("storage", trace.input.storage), "Other", size(trace.input))
    for call, _kept, _new in ops:
        for t in call.tensor_args():
            if t.parameter is not None:
                params[t.storage] = t
    with_grad = _with_gradient(ops)
    # forward: readers, producers, keepers (an operation without a backward keeps nothing)
    last_use, producer, kept_by, targets = {}, {}, {}, set()
    again_kept: dict = {}          # (module, storage) kept when it runs again -> first keeper
    for i, (call, kept, _new) in enumerate(ops):
        if call.module_type == "loss" and call.op in _TARGETS:
            targets |= {t.storage for t in call.outputs}
        for t in call.tensor_args():
            last_use[t.storage] = i
        for t in call.outputs:  # a view of a parameter or of the input creates nothing
            if t.storage not in params and t.storage != trace.input.storage:
                producer.setdefault(t.storage, i)
        if any(t.key in with_grad for t in call.outputs):
            for s in kept:
                if i in segments:
                    again_kept.setdefault((segments[i], s), i)
                else:
                    kept_by.setdefault(s, i)
    for path, storages in (segment_inputs or {}).items():
        first = min((i for i, p in segments.items() if p == path), default=None)
        for s in storages if first is not None else ():
            kept_by.setdefault(s, first)   # the checkpoint keeps its module's inputs
    freed_after = {}               # i -> storages no operation before i keeps
    for s, first in (*kept_by.items(), *((s, i) for (_m, s), i in again_kept.items())):
        if s != trace.input.storage and s not in targets:
            freed_after.setdefault(first, []).append(s)
    gathered = getattr(trace, "gathered", frozenset())
    for i, (call, _kept, new) in enumerate(ops):
        whole = [t for t in call.outputs if producer.get(t.storage) == i
                 and t.storage in gathered]
        for t in call.outputs:
            if producer.get(t.storage) == i:
                live.add(("storage", t.storage),
                         "Other" if t.storage in targets else "Activation", size(t))
        for t in whole:               # the partial sums, whole until their reduce-scatter
            live.add(("whole", t.storage), "Activation", _bytes(t))
        if new != 0 and i not in segments:
            live.add(("kept", i), "Activation", new)
        live.mark(f"forward: {call.module or '(model)'} ({call.op})")
        for t in whole:
            live.free(("whole", t.storage))
        for s in {t.storage for t in call.tensor_args()} | {t.storage for t in call.outputs}:
            if last_use.get(s, producer.get(s)) <= i and s not in kept_by \
                    and s not in params and s != trace.input.storage and s not in targets:
                live.free(("storage", s))
    # backward, the operations in reverse
    def gives_gradient(call, t) -> bool:
        return t.floating and (t.requires_grad or t.key in with_grad) \
            and t.storage != trace.input.storage

    # a parameter read by several operations gets one gradient from each; autograd holds
    # them in its input buffer and gives the parameter their sum once all have come
    expected: dict = {}
    for call, _kept, _new in ops:
        if call.op not in _VIEWS and any(t.key in with_grad for t in call.outputs):
            for t in call.tensor_args():
                if t.storage in params and gives_gradient(call, t):
                    expected[t.storage] = expected.get(t.storage, 0) + 1
    through_view = {o.key for call, _k, _n in ops if call.op in _VIEWS
                    for o in call.outputs if o.storage in params}
    buffers = _GradientBuffers(live, expected, params, through_view)
    part = _parts(ops)
    recomputed: set = set()
    for i in range(len(ops) - 1, -1, -1):
        call, _kept, _new = ops[i]
        if not any(t.key in with_grad for t in call.outputs):
            continue
        if i in segments and segments[i] not in recomputed:
            recomputed.add(segments[i])
            _recompute(live, ops, [j for j, p in segments.items() if p == segments[i]],
                       producer, {s for (m, s) in again_kept if m == segments[i]}, size)
        for t in call.tensor_args():
            if not gives_gradient(call, t):
                continue
            if t.storage in params:
                if call.op not in _VIEWS:   # a view passes the gradient on
                    buffers.arrive(t)
            elif t.key in part:
                p = part[t.key]
                live.add(("part", p.key), "Temp",
                         sp.expand(p.numel * p.itemsize * share(p.storage)))
            else:
                live.add(("grad", t.storage), "Temp", size(t))
        whole = [t for t in call.outputs if producer.get(t.storage) == i
                 and t.storage in gathered]
        for t in whole:               # the gradient, all-gathered whole (its shard gone)
            live.free(("grad", t.storage))
            live.add(("whole", t.storage), "Temp", _bytes(t))
        live.mark(f"backward: {call.module or '(model)'} ({call.op})")
        for t in whole:
            live.free(("whole", t.storage))
        buffers.settle()
        if call.op in _SPLITS:            # the parts joined: each part's gradient goes
            for o in call.outputs:
                live.free(("part", o.key))
        for t in call.outputs:
            if producer.get(t.storage) == i:
                live.free(("grad", t.storage))
        live.free(("kept", i))
        for s in freed_after.get(i, ()):
            live.free(("storage", s))
    # the optimizer step
    notes = []
    itemsize = trainable[0].itemsize if trainable else 4
    if first_step:
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


class _GradientBuffers:
    """Gradients of parameters on their way to ``.grad``.  One from a single reader is the
    parameter's gradient at once.  Of a parameter read n times, the first waits in
    autograd's input buffer; the next ones are added into it in place, unless the first
    came through a view of the parameter (a product's weight gradient, transposed back):
    that one is added out of place, the buffer, the new gradient and their sum living
    together; the n-th sum becomes ``.grad``."""

    def __init__(self, live: _Live, expected: dict, params: dict, through_view: set):
        self.live, self.expected, self.params = live, expected, params
        self.through_view = through_view
        self.count: dict = {}
        self.view: dict = {}
        self.pending: list = []

    def arrive(self, t) -> None:
        s = t.storage
        n = self.expected.get(s, 1)
        k = self.count[s] = self.count.get(s, 0) + 1
        nbytes = _bytes(self.params[s])
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
                self.live.add(("grad", s), "Gradient", _bytes(self.params[s]))
        self.pending.clear()


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


PHASE_COLOURS = {"forward": "tab:blue", "backward": "tab:orange", "recompute": "tab:purple",
                 "optimizer step": "tab:green"}


def plot_timeline(peaks: dict, path, title: str) -> None:
    """The memory of a step after each operation (``peaks``: label -> Peak, e.g. the
    first and a later step), coloured by phase, each peak marked; written to ``path``
    whole or not at all."""
    import os
    import tempfile

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(peaks), 1, figsize=(9, 2.6 * len(peaks)), squeeze=False)
    for ax, (label, peak) in zip(axes[:, 0], peaks.items()):
        if not peak.curve:
            raise UsageError(f"{label}: the peak has no timeline to draw")
        ys = [b / 2**20 for _p, _w, b in peak.curve]
        for phase, colour in PHASE_COLOURS.items():
            xs = [k for k, (p, _w, _b) in enumerate(peak.curve) if p == phase]
            ax.plot(xs, [ys[k] for k in xs], ".", ms=2, color=colour, label=phase)
        top = max(range(len(ys)), key=ys.__getitem__)
        ax.annotate(f"peak {ys[top]:.4g} MiB\n{peak.curve[top][1]}", (top, ys[top]),
                    fontsize=7, ha="right" if top > len(ys) / 2 else "left", va="top")
        ax.set_title(f"{title}: {label}", fontsize=9)
        ax.set_ylabel("MiB")
        ax.legend(fontsize=7, loc="lower right")
    axes[-1, 0].set_xlabel("operation of the step")
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
