"""The cost of one training step of a torch model, derived operation by operation.

``estimate(model, shape, loss=..., optimizer=...)`` traces the forward pass
(``symflop.estimate.trace``), maps each aten operation onto catalogue components
through the catalogue's rules (entry point group ``symflop.network``), and adds up
what the engine derives for them: forward and backward FLOPs by kind, the loss, the
optimizer step (the catalogue's optimizer applied to each parameter tensor, as
torch.optim steps them) and, if asked, the learning-rate schedule; parameters,
gradients, optimizer state and the tensors the backward pass keeps, in bytes.
Every count is a polynomial in the sizes left symbolic (the batch size B, a sequence
length L).  An operation no rule covers is listed by name as unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache, partial

import sympy as sp

from symflop.core.model import Component
from symflop.cost.conventions import get_convention
from symflop.derive import derive
from symflop.errors import UsageError
from symflop.estimate.calls import FREE, Gradients, Keep, OpCall, TensorRef, Unknown, Use
from symflop.estimate.result import ZERO, Line, _zeros
from symflop.estimate.table import ShownEstimate as Estimate
from symflop.estimate.timeline import Replay, segment_of
from symflop.registry import get_component, plugin

ONE = sp.Integer(1)


@lru_cache(maxsize=256)
def _built(build, options: tuple) -> Component:
    return build(**dict(options))


def _component(use: Use) -> Component:
    return _built(use.build, tuple(sorted(use.options.items())))


def _sub(c: Component, dims: dict[str, sp.Expr]) -> dict:
    missing = set(c.dims) - set(dims)
    if missing:
        raise UsageError(f"rule for {c.name!r} gives no size for {sorted(missing)}")
    return {c.dims[n]: v for n, v in dims.items()}


_derived: dict[int, tuple[Component, object]] = {}


def _derivation(c: Component):
    """``derive`` once per component object: a network repeats a few components many
    times, and each ``derive`` call fingerprints the component and reads the cache."""
    hit = _derived.get(id(c))
    if hit is None or hit[0] is not c:
        hit = _derived[id(c)] = (c, derive(c))
    return hit[1]


_count_cache: dict[tuple, object] = {}


def _symbolic_counts(c_id: int, pass_name: str, convention):
    key = (c_id, pass_name, convention.key)
    if key not in _count_cache:
        _count_cache[key] = _derived[c_id][1].counts(pass_name, convention)
    return _count_cache[key]


_sized: dict[tuple, tuple[dict, sp.Expr]] = {}


def _counts(c: Component, pass_name: str, dims: dict, convention) -> tuple[dict, sp.Expr]:
    """Counts of a pass at the trace's sizes (a network repeats the same layer: cached)."""
    key = (id(c), pass_name, convention.key, tuple(sorted(dims.items(), key=str)))
    hit = _sized.get(key)
    if hit is None or _derived.get(id(c), (None,))[0] is not c:
        _derivation(c)
        counts = _symbolic_counts(id(c), pass_name, convention)
        sub = _sub(c, dims)
        hit = _sized[key] = ({k: sp.expand(v.xreplace(sub)) for k, v in counts.by_kind.items()},
                             sp.expand(counts.total.xreplace(sub)))
    return dict(hit[0]), hit[1]


def _add(acc: dict, more: dict) -> None:
    for k, v in more.items():
        acc[k] = sp.expand(acc.get(k, ZERO) + v)


def _rules() -> dict:
    return plugin("symflop.network", "rules for network operations")


class _Saved:
    """Storages kept for backward, each counted once (views and in-place results share).
    ``sharding`` (tensor parallelism's) scales a storage cut over the devices; ``scale``
    is the factor of the operation now applied, for the tensors it makes."""

    def __init__(self, sharding=None):
        self.seen: set = set()
        self.fresh = 0
        self.sharding = sharding
        self.scale = ONE

    def new(self, nbytes: sp.Expr) -> sp.Expr:
        """A tensor the component makes and keeps (BatchNorm's normalized activations)."""
        self.fresh += 1
        return self.add(("new", self.fresh), nbytes * self.scale)

    def add(self, key, nbytes: sp.Expr) -> sp.Expr:
        if key in self.seen:
            return ZERO
        self.seen.add(key)
        if self.sharding is not None and not isinstance(key, tuple):
            return nbytes * self.sharding.storage(key)
        return nbytes


@dataclass
class _Work:
    """What one traced operation did: its forward work, and what its backward keeps."""

    forward: dict = field(default_factory=_zeros)
    flops: sp.Expr = ZERO
    macs: sp.Expr = ZERO
    keeps: set = field(default_factory=set)   # storages kept; "itself" for its own tensors
    new_kept: sp.Expr = ZERO                   # bytes of its own tensors kept


def _apply_use(line: Line, use: Use, c: Component, convention, saved: _Saved,
               reads: dict, work: _Work, keep: bool = True,
               overwritten: TensorRef | None = None) -> None:
    """``overwritten``: the tensor an in-place operation writes over; if its backward needs
    the old values, autograd keeps a copy of them (torch's original_self)."""
    fwd, fwd_total = _counts(c, "forward", use.dims, convention)
    if use.integer:
        line.integer = sp.expand(line.integer + sum(fwd.values(), ZERO))
        return
    if use.backward_only:
        _add(line.backward, fwd)
        line.flops_backward += fwd_total
        return
    _add(line.forward, fwd)
    _add(work.forward, fwd)
    line.flops_forward += fwd_total
    work.flops += fwd_total
    if use.contraction:
        line.macs_forward += fwd["mul"]
        work.macs += fwd["mul"]
    for name in c.wrt:  # a gradient flows back to each: one more gradient to add
        t = use.tensors.get(name)
        if isinstance(t, TensorRef):
            _read(reads, t)
    if use.forward_only or not c.wrt:
        return
    bwd, bwd_total = _counts(c, "backward", use.dims, convention)
    _add(line.backward, bwd)
    line.flops_backward += bwd_total
    if use.contraction:
        line.macs_backward += bwd["mul"]
    if not use.keep:
        return
    sub = _sub(c, use.dims)
    out = use.tensors.get("y")
    itemsize = out.itemsize if isinstance(out, TensorRef) else 4
    for name, elements in _derivation(c).memory.saved:
        t = use.kept_as.get(name, use.tensors.get(name))
        if isinstance(t, TensorRef) and overwritten is not None and name != "y" \
                and name not in use.kept_as and t.key == overwritten.key:
            work.keeps.add("itself")
            work.new_kept += t.numel * t.itemsize     # kept when run (or run again)
            if keep:
                line.saved_bytes += saved.new(t.numel * t.itemsize)
        elif isinstance(t, TensorRef):
            work.keeps.add(t.storage)
            if t.parameter is None and keep:
                line.saved_bytes += saved.add(t.storage, t.storage_elements * t.itemsize)
        else:
            work.keeps.add("itself")
            nbytes = sp.expand(elements.xreplace(sub)) * itemsize
            work.new_kept += nbytes                       # kept when run (or run again)
            if keep:
                line.saved_bytes += saved.new(nbytes)


_RECURRENT = ("LSTM", "GRU", "RNN")


def _read(reads: dict, t: TensorRef) -> None:
    """One more read of ``t`` that gives it a gradient."""
    reads[t.key] = t, reads.get(t.key, (t, 0))[1] + 1


def _count_reads(call: OpCall, reads: dict, with_grad: set) -> None:
    """A view or copy that carries the gradient (its output is read later as a tensor that
    needs one) reads its inputs: autograd gives each input a gradient of its own through
    it (select and slice a whole-size one, zero elsewhere), added to its other ones."""
    if not any(t.key in with_grad for t in call.outputs):
        return
    for t in call.tensor_args():
        if t.requires_grad and t.floating:
            _read(reads, t)


def _scaled_into(line: Line, part: Line, work: _Work, factor: sp.Expr) -> None:
    """Add ``part`` (one operation's counts) to ``line`` at ``factor`` (1/t for work cut
    along the sequence over t devices), and scale ``work`` with it."""
    for which in ("forward", "backward"):
        _add(getattr(line, which), {k: v * factor for k, v in getattr(part, which).items()})
    for attr in ("flops_forward", "flops_backward", "macs_forward", "macs_backward",
                 "integer"):
        setattr(line, attr, sp.expand(getattr(line, attr) + getattr(part, attr) * factor))
    line.saved_bytes += part.saved_bytes     # scaled per storage by _Saved
    line.unknown += [u for u in part.unknown if u not in line.unknown]
    line.components += [c for c in part.components if c not in line.components]
    work.forward = {k: v * factor for k, v in work.forward.items()}
    work.flops, work.macs = work.flops * factor, work.macs * factor
    work.new_kept = work.new_kept * factor


def module_list(paths, least: int = 2) -> str | None:
    """The path of the module list with the most numbered children among ``paths``
    (``model.layers`` of a Llama), if it has ``least`` of them."""
    seen: dict[str, set] = {}
    for path in paths:
        parts = path.split(".")
        for k in range(1, len(parts)):
            if parts[k].isdigit():
                seen.setdefault(".".join(parts[:k]), set()).add(int(parts[k]))
    best = min(seen, key=lambda p: (-len(seen[p]), len(p)), default=None)
    return best if best is not None and len(seen[best]) >= least else None


def repeated_blocks(calls: tuple[OpCall, ...]) -> str | None:
    """The model's list of repeated blocks: the module list with the most numbered
    children that ran."""
    return module_list(path for call in calls for path in call.stack)


def _block_of(call: OpCall, blocks: str | None) -> str | None:
    if blocks is None:
        return None
    return next((p for p in call.stack if p.startswith(blocks + ".")
                 and p[len(blocks) + 1:].isdigit()), None)


def _network_lines(calls: tuple[OpCall, ...], convention, saved: _Saved,
                   checkpointed: dict | None = None, record: list | None = None,
                   sharding=None, by_block: bool = False) -> list[Line]:
    """One line per module.  In a module of ``checkpointed`` (path -> its inputs) nothing
    is kept for backward but the module's inputs, and its forward runs again in the
    backward pass (torch.utils.checkpoint).  ``record`` receives each operation with
    the storages its backward keeps and the bytes of its own tensors kept (the memory
    timeline's input).  ``sharding`` (``symflop.estimate.tensor_parallel``) says which
    operations run on 1/t of their tensors.  ``by_block``: one line per repeated block
    (a transformer's layer, whatever module its operations ran in), the others by
    module."""
    checkpointed = checkpointed or {}
    blocks = repeated_blocks(calls) if by_block else None
    rules = _rules()
    lines: dict[str, Line] = {}
    reads: dict = {}
    # tensors read later as needing a gradient (an output is recorded before autograd
    # marks it: its own flag is not yet set)
    with_grad = {t.key for call in calls for t in call.tensor_args() if t.requires_grad}
    segments: dict[str, list[tuple[OpCall, _Work]]] = {p: [] for p in checkpointed}
    for index, call in enumerate(calls):
        block = _block_of(call, blocks)
        line = (lines.setdefault(block, Line(block, "block")) if block else
                lines.setdefault(call.module, Line(call.module or "(model)", call.module_type)))
        factor = sharding.op(index) if sharding is not None else ONE
        target, line = line, (line if factor == 1 else Line(line.name, line.what))
        saved.scale = factor
        segment = segment_of(call.module, checkpointed)
        if segment is not None and not segments[segment]:
            for t in checkpointed[segment]:
                if t.parameter is None:
                    line.saved_bytes += saved.add(t.storage, t.storage_elements * t.itemsize)
        work = _Work()
        rule = rules.get(call.op) or rules.get(call.op.rstrip("_"))
        answer = rule(call) if rule else Unknown(f"no rule for {call.overload}")
        if answer is FREE:
            _count_reads(call, reads, with_grad)
            if record is not None:
                record.append((call, set(), ZERO))
            continue
        for part in answer if isinstance(answer, list) else [answer]:
            if isinstance(part, Keep):
                work.keeps |= {t.storage for t in part.tensors}
                for t in part.tensors if segment is None else ():
                    if t.parameter is None:
                        line.saved_bytes += saved.add(t.storage,
                                                      t.storage_elements * t.itemsize)
                continue
            if isinstance(part, Gradients):
                for t in part.tensors:
                    _read(reads, t)
                continue
            if isinstance(part, Unknown):
                line.unknown.append(f"{call.op}: {part.why}"
                                    + (" (backward only)" if part.backward else ""))
                continue
            c = _component(part)
            _apply_use(line, part, c, convention, saved, reads, work, keep=segment is None,
                       overwritten=call.args[0] if call.op.endswith("_") else None)
            if part.label not in line.components:
                line.components.append(part.label)
        if factor != 1:
            _scaled_into(target, line, work, factor)
            line = target
        if segment is not None:
            segments[segment].append((call, work))
        if record is not None:
            record.append((call, {k for k in work.keeps if k != "itself"}, work.new_kept))
    acc = Line("(gradient sums)", "gradients of tensors read twice or more, added")
    for t, n in reads.values():
        if n > 1:
            share = sharding.tensor(t) if sharding is not None else ONE
            acc.backward["add"] = sp.expand(acc.backward["add"] + (n - 1) * t.numel * share)
    acc.flops_backward = sp.expand(acc.backward["add"] * convention.weight("add"))
    out = [ln for ln in lines.values()
           if ln.flops != 0 or ln.unknown or ln.saved_bytes != 0 or ln.integer != 0]
    out += [_recomputed(p, segments[p]) for p in checkpointed]
    return out + ([acc] if acc.flops_backward != 0 else [])


def _recomputed(path: str, ops: list[tuple[OpCall, _Work]]) -> Line:
    """The forward of a checkpointed module, run again in the backward pass as far as its
    backward needs: torch stops once every tensor the segment keeps exists again, so
    the operations after the last one whose result is kept do not run again."""
    kept = set().union(*(w.keeps for _, w in ops)) if ops else set()
    last = max((k for k, (call, w) in enumerate(ops)
                if "itself" in w.keeps or {t.storage for t in call.outputs} & kept),
               default=-1)
    line = Line(f"{path} (recomputed)", "checkpoint")
    for _call, w in ops[:last + 1]:
        _add(line.backward, w.forward)
        line.flops_backward = sp.expand(line.flops_backward + w.flops)
        line.macs_backward = sp.expand(line.macs_backward + w.macs)
    line.components.append("recomputation")
    return line


def _loss_line(name: str, output: TensorRef, convention, saved: _Saved) -> Line:
    c = get_component(name)
    if not c.wrt:
        raise UsageError(f"{name!r} is not a loss (it declares no gradient)")
    z = c.tensors[c.wrt[0]]
    shape = output.shape
    if len(z.shape) == 2:
        rows = sp.Mul(*shape[:-1]) if len(shape) > 1 else sp.Integer(1)
        dims = {str(z.shape[0]): rows, str(z.shape[1]): shape[-1]}
    elif len(z.shape) == 1:
        dims = {str(z.shape[0]): output.numel}
    else:
        raise UsageError(f"loss {name!r}: its input {z.name!r} has {len(z.shape)} axes; "
                         "a loss for estimate takes a matrix (rows, classes) or a vector")
    line = Line(f"loss ({name})", "loss")
    use = Use(name, lambda: c, {}, dims, {z.name: output})
    _apply_use(line, use, c, convention, saved, {}, _Work())
    line.components.append(name)
    return line


def _optimizer(name: str, trace, convention) -> tuple[Line, sp.Expr]:
    c = get_component(name)
    if "step" not in c.passes or "P" not in c.dims:
        raise UsageError(f"{name!r} is not an optimizer (no 'step' pass over P parameters)")
    line = Line(f"optimizer ({name})", "optimizer")
    state = ZERO
    d = _derivation(c)
    for p in trace.parameters:
        if not p.trainable:
            continue
        by_kind, total = _counts(c, "step", {"P": sp.Integer(p.numel)}, convention)
        _add(line.forward, by_kind)
        line.flops_forward += total
        state += d.memory.elements("state").xreplace({c.dims["P"]: p.numel}) * p.itemsize
    line.components.append(name)
    return line, sp.expand(state)


def _schedule(name: str, convention) -> Line:
    c = get_component(name)
    if c.dims:
        raise UsageError(f"{name!r} is not a learning-rate schedule (it has sizes "
                         f"{', '.join(c.dims)})")
    line = Line(f"schedule ({name})", "schedule")
    by_kind, total = _counts(c, next(iter(c.passes)), {}, convention)
    _add(line.forward, by_kind)
    line.flops_forward += total
    line.components.append(name)
    return line


def _check_shape(shape, hints) -> None:
    """Sizes are positive integers or names (symbolic); trace values 2 or more."""
    if not isinstance(shape, (tuple, list)) or not shape:
        raise UsageError(f"shape {shape!r}: a tuple of sizes, e.g. ('B', 3, 224, 224)")
    for s in shape:
        ok = (isinstance(s, str) and s.isidentifier()) or \
            (isinstance(s, int) and not isinstance(s, bool) and s > 0)
        if not ok:
            raise UsageError(f"shape {tuple(shape)!r}: {s!r} is neither a positive integer "
                             "nor a name")
    names = [s for s in shape if isinstance(s, str)]
    if len(set(names)) != len(names):
        raise UsageError(f"shape {tuple(shape)!r}: a size name appears twice")
    for n, v in (hints or {}).items():
        if n not in names:
            raise UsageError(f"hints: {n!r} is not a size of the shape {tuple(shape)!r}")
        if not isinstance(v, int) or isinstance(v, bool) or v < 2:
            raise UsageError(f"hints: {n}={v!r}: trace at an integer of 2 or more")


def torch_loss(name: str):
    """The torch function that a catalogue loss is, as a training step calls it on the
    model's output (targets of its shape: class labels over the last axis for the
    cross-entropies), or None where torch has none (its catalogue count stands)."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's own spelling

    def rows(out):
        return out.reshape(-1, out.shape[-1]) if out.dim() > 1 else out

    def labels(z):
        return torch.zeros(z.shape[:-1], dtype=torch.long)

    return {
        "cross-entropy": lambda out: F.cross_entropy(rows(out), labels(rows(out))),
        "cross-entropy-soft": lambda out: F.cross_entropy(rows(out),
                                                          torch.zeros_like(rows(out))),
        "mse": lambda out: F.mse_loss(out, torch.zeros_like(out)),
        "bce": lambda out: F.binary_cross_entropy_with_logits(out, torch.zeros_like(out)),
        "huber": lambda out: F.huber_loss(out, torch.zeros_like(out)),
        "kl-div": lambda out: F.kl_div(out, torch.zeros_like(out), reduction="batchmean"),
    }.get(name)


def _trace(model, shape: tuple, hints: dict, dtype, loss: str | None = None,
           autocast: str | None = None, target: str = "cpu"):
    """The trace (with torch's ``loss`` where torch has it), or one line naming what in the
    user's model failed.  A composite operation whose C++ kernel needs concrete sizes
    (``nn.LSTM``) is traced again through torch's Python kernels.  Autocast takes the
    ``target``'s per-operation types."""
    from symflop.estimate.trace import trace
    rules = _rules()
    lists = "cuda" if target == "cuda" else "cpu"     # whose autocast types

    def known(op: str) -> bool:
        return op in rules or op.rstrip("_") in rules

    fn = torch_loss(loss) if loss else None
    traced_loss = (f"loss ({loss})", fn) if fn else None
    try:
        try:
            return trace(model, shape, hints, dtype, known=known, loss=traced_loss,
                         autocast=autocast, autocast_device=lists)
        except RuntimeError as e:
            if "symbolic sizes" not in str(e):
                raise
            return trace(model, shape, hints, dtype, known=known, python_dispatcher=True,
                         loss=traced_loss, autocast=autocast, autocast_device=lists)
    except UsageError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's model failed: say so in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        hint = ""
        if "'indices'" in first and dtype.is_floating_point:  # an Embedding fed floats
            hint = " (the model reads token ids: give --input-dtype int64)"
        raise UsageError(f"the model failed on an input of shape "
                         f"({', '.join(map(str, shape))}): {type(e).__name__}: {first}{hint}") \
            from None


def _traced_estimate(model, shape: tuple, hints: dict, dtype, *, loss: str, optimizer: str,
                     schedule: str | None, conv, checkpoint: tuple, name: str,
                     traced=None, optimizer_impl: str = "for-loop",
                     target: str = "cpu", parallel=None, by_block: bool = False,
                     autocast: str | None = None) -> Estimate:
    """The estimate of one trace at ``hints`` (``traced``, if already made); ``fitted``
    names the sizes the trace fixed (its polynomials hold at those sizes' trace values
    only)."""
    tr = _for_target(traced or _trace(model, shape, hints, dtype, loss, autocast, target),
                     target)
    missing = [p for p in checkpoint if p not in tr.module_inputs]
    if missing:
        names = ", ".join(sorted(p for p in tr.module_inputs if p)[:12])
        raise UsageError(f"checkpoint: no module {missing[0]!r} ran in the forward pass "
                         f"(modules: {names}, ...)")
    comms, sharding = (), None
    if parallel is not None:
        from symflop.estimate.tensor_parallel import communication
        comms, sharding = communication(tr, parallel)
    saved = _Saved(sharding if parallel is not None and parallel.sequence else None)
    ops: list = []
    lines = _network_lines(tr.calls, conv, saved,
                           {p: tr.module_inputs[p] for p in checkpoint}, record=ops,
                           sharding=saved.sharding, by_block=by_block)
    if not any(ln.what == "loss" for ln in lines):  # no torch function: the catalogue's
        saved.scale = 1 / sp.Integer(parallel.t) if sharding and sharding.loss else ONE
        loss_line = _loss_line(loss, tr.output, conv, saved)
        if saved.scale != 1:
            whole, loss_line = loss_line, Line(loss_line.name, "loss")
            _scaled_into(loss_line, whole, _Work(), saved.scale)
        lines.append(loss_line)
    opt_line, state = _optimizer(optimizer, tr, conv)
    lines.append(opt_line)
    if schedule:
        lines.append(_schedule(schedule, conv))
    n_params = sum(p.numel for p in tr.parameters)
    notes = [TARGET_NOTE] if target == "cuda" else []
    if autocast:
        notes.append(f"under torch.autocast({autocast}) with "
                     + ("CUDA's per-operation types (torch's CUDA autocast kernels asked "
                        "for each operation's types)" if target == "cuda" else
                        "the CPU's per-operation types (CUDA's differ: softmax, the norms "
                        "and the losses run in float32 there; --target cuda counts those)"))
    recurrent = sorted({c.module for c in tr.calls if c.module_type in _RECURRENT})
    if recurrent:
        notes.append(f"{', '.join(recurrent)}: counted as torch's cell-by-cell kernel; a "
                     "fused kernel (oneDNN on a CPU, cuDNN on CUDA) does the same products "
                     "and keeps a workspace of its own in place of the per-step tensors")
    est = Estimate(
        name, conv.name, tr.symbols, tr.hints, lines, n_params,
        sum(p.numel * p.itemsize for p in tr.parameters),
        sum(p.numel * p.itemsize for p in tr.parameters if p.trainable),
        state, sp.expand(sum((ln.saved_bytes for ln in lines), ZERO)), optimizer, loss,
        fitted=tr.specialized, notes=notes, optimizer_impl=optimizer_impl,
        tensor_parallel=parallel, communication=tuple(comms),
        parameter_sizes=tuple((p.name, p.numel, p.itemsize, p.trainable, p.shape)
                              for p in tr.parameters),
        boundaries=_boundaries(tr, saved.sharding) if by_block else {})
    if parallel is not None:
        est.notes.append(f"one device's share: {parallel.describe()}")
    at = partial(_at_hints, {tr.symbols[n]: v for n, v in tr.hints.items()})
    est.replay = Replay(
        ops, tuple(tr.parameters), tuple(tr.buffers), tr.input, optimizer, state, at,
        optimizer_impl, {p: frozenset(t.storage for t in ts if t.parameter is None)
                         for p, ts in tr.module_inputs.items()},
        *_cut_storages(ops, saved.sharding))
    est.peak, est.first_step_peak = est.replay.peaks(tuple(checkpoint))
    est.notes += est.peak.notes
    if tr.specialized:
        est.notes.append("the peak memory is the trace's: its polynomial holds at the "
                         "sizes the model's code fixed")
    return est


def _cut_storages(ops: list, sharding) -> tuple[int, frozenset, frozenset]:
    """Under sequence parallelism: t, the storages a device holds 1/t of (those kept
    cut, and the cut tensors no operation keeps whole: torch's column-parallel layer
    keeps its gathered input), and those whole around a collective."""
    if sharding is None:
        return 1, frozenset(), frozenset()
    kept = set().union(*(k for _call, k, _new in ops))
    cut = {t.storage for call, _k, _n in ops for t in (*call.tensor_args(), *call.outputs)
           if t.key in sharding.tensors and t.storage not in kept}
    return (int(sharding.t), frozenset(cut | set(sharding.storages)),
            frozenset(sharding.gathered))


TARGET_NOTE = ("counted as the program torch runs on CUDA where it differs from the CPU's in "
               "what it keeps (dropout: one aten.native_dropout with a 1-byte bool mask; "
               "LayerNorm: its row statistics in float32); every other kernel as the CPU "
               "runs it")


def _for_target(tr, target: str):
    """The trace as the ``target`` device's kernels run it (``symflop.estimate.gpu``)."""
    if target == "cpu":
        return tr
    from symflop.estimate.gpu import gpu_program
    return replace(tr, calls=gpu_program(tr.calls))


def _boundaries(tr, sharding) -> dict:
    """Each repeated block's output, in bytes (what a pipeline stage ending there sends
    on; cut along the sequence where ``sharding`` cuts it)."""
    blocks = repeated_blocks(tr.calls)
    out = {}
    for path, outputs in (tr.module_outputs or {}).items():
        if blocks and outputs and path.startswith(blocks + ".") \
                and path[len(blocks) + 1:].isdigit():
            y = outputs[0]
            share = sharding.tensor(y) if sharding is not None else ONE
            out[path] = sp.expand(y.numel * y.itemsize * share)
    return out


def _at_hints(values: dict, expr: sp.Expr) -> int:
    return int(sp.sympify(expr).xreplace(values))


def _catalogue_entry(what: str, name: str) -> Component:
    try:
        return get_component(name)
    except UsageError as e:
        raise UsageError(f"{what}: {e}") from None


def estimate(model, shape: tuple, loss: str = "cross-entropy", optimizer: str = "adam",
             schedule: str | None = None, convention: str = "default",
             hints: dict[str, int] | None = None, flop_counter: bool = True,
             name: str | None = None, input_dtype: str = "float32",
             use_cache: bool = True, checkpoint: tuple[str, ...] = (),
             optimizer_impl: str = "for-loop", target: str = "cpu",
             tensor_parallel=None, by_block: bool = False,
             autocast: str | None = None) -> Estimate:
    """One training step of ``model`` on inputs of ``shape`` (ints, and names for the sizes
    left symbolic, batch first: ``("B", 3, 224, 224)``); ``input_dtype`` "int64" for token
    ids.  ``checkpoint`` names modules run under torch.utils.checkpoint (a plan): they
    keep only their inputs, and their forward is counted again in the backward pass.
    ``optimizer_impl`` is torch's implementation of the optimizer step whose temporaries
    the peak memory holds ("for-loop", torch's default on a CPU; "foreach", its default
    on CUDA; "fused").  ``target`` "cuda" counts the program torch runs on a GPU where it
    differs from the CPU's (``symflop.estimate.gpu``).  ``tensor_parallel`` (a
    ``tensor_parallel.TensorParallel``) gives one device's share of a tensor-parallel
    step, with its collectives.  ``by_block``: one line per repeated block (each layer of
    a transformer) instead of per module.  ``autocast`` ("bfloat16", "float16") traces
    the forward pass under ``torch.autocast``.  The result is cached on disk
    (``symflop.estimate.cached`` says when it is not); ``use_cache=False`` traces anew."""
    import torch
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"estimate needs a torch.nn.Module, not {type(model).__name__}")
    if autocast not in (None, "bfloat16", "float16"):
        raise UsageError(f"autocast {autocast!r}: bfloat16 or float16")
    _check_shape(shape, hints)
    dtype = getattr(torch, input_dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise UsageError(f"unknown input dtype {input_dtype!r} (e.g. float32, int64)")
    conv = get_convention(convention)
    from symflop.estimate.gpu import TARGETS
    if target not in TARGETS:
        raise UsageError(f"unknown target {target!r} (known: {', '.join(TARGETS)})")
    from symflop.estimate.timeline import IMPLEMENTATIONS
    if optimizer_impl not in IMPLEMENTATIONS:
        raise UsageError(f"unknown optimizer implementation {optimizer_impl!r} "
                         f"(known: {', '.join(IMPLEMENTATIONS)})")
    components = [_catalogue_entry(what, n) for what, n in
                  (("loss", loss), ("optimizer", optimizer), ("schedule", schedule)) if n]
    if tensor_parallel is not None:
        from symflop.estimate.tensor_parallel import local_model
        with local_model(model, tensor_parallel):
            return _estimate(model, tuple(shape), hints or {}, dtype, components, conv,
                             False, use_cache, input_dtype, loss=loss, optimizer=optimizer,
                             schedule=schedule, checkpoint=checkpoint,
                             name=name or type(model).__name__,
                             optimizer_impl=optimizer_impl, target=target,
                             parallel=tensor_parallel, by_block=by_block,
                             autocast=autocast)
    return _estimate(model, tuple(shape), hints or {}, dtype, components, conv, flop_counter,
                     use_cache, input_dtype, loss=loss, optimizer=optimizer,
                     schedule=schedule, checkpoint=checkpoint,
                     name=name or type(model).__name__, optimizer_impl=optimizer_impl,
                     target=target, parallel=None, by_block=by_block,
                     autocast=autocast)


def _estimate(model, shape: tuple, hints: dict, dtype, components: list, conv,
              flop_counter: bool, use_cache: bool, input_dtype: str, **options) -> Estimate:
    """``estimate`` once its arguments are checked (under tensor parallelism, of the
    local model); ``options`` are ``_traced_estimate``'s."""
    loss, name = options["loss"], options["name"]
    traced = _trace(model, shape, hints, dtype, loss, options["autocast"], options["target"])
    digest = None
    if use_cache:
        from symflop.estimate import cached
        parallel = options["parallel"]
        parts = (shape, tuple(sorted(hints.items())), loss, options["optimizer"],
                 options["schedule"], conv.key, flop_counter, input_dtype,
                 tuple(options["checkpoint"]), options["optimizer_impl"], options["target"],
                 repr(parallel), options["by_block"], options["autocast"])
        digest = cached.key(traced, parts, components, _rules())
        hit = cached.load(digest)
        if hit is not None:
            hit.model = name
            return hit
    options["conv"] = conv
    est = _traced_estimate(model, shape, hints, dtype, traced=traced, **options)
    if est.fitted:
        from symflop.estimate.fit import fit_sizes
        est = fit_sizes(lambda h: _traced_estimate(model, shape, h, dtype, **options), est)
    if flop_counter:
        from symflop.estimate.flop_counter import flop_counter_by_module
        try:
            est.flop_counter = flop_counter_by_module(model, shape, est.hints, dtype)
        except Exception as e:  # noqa: BLE001 - an optional column: its cells say why
            first = (str(e).strip().splitlines() or [""])[0][:160]
            est.flop_counter_error = f"FlopCounterMode failed: {type(e).__name__}: {first}"
    if use_cache:
        cached.store(digest, est)
    return est
