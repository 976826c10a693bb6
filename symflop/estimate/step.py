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

from dataclasses import replace
from functools import partial

import sympy as sp

from symflop.core.model import Component
from symflop.cost.conventions import get_convention
from symflop.errors import UsageError
from symflop.estimate.calls import TensorRef, Use
from symflop.estimate.costs import Costs, apply_use
from symflop.estimate.network import network_lines, network_rules, repeated_blocks
from symflop.estimate.result import ZERO, Line
from symflop.estimate.table import ShownEstimate as Estimate
from symflop.estimate.timeline import Replay
from symflop.estimate.work import ONE, Saved, Work, add_into, scaled_into
from symflop.registry import get_component


def _loss_line(name: str, output: TensorRef, costs: Costs, saved: Saved) -> Line:
    costed = costs.catalogue(name)
    c = costed.component
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
    apply_use(line, use, costed, saved, {}, Work())
    line.components.append(name)
    return line


def _optimizer(name: str, trace, costs: Costs) -> tuple[Line, sp.Expr]:
    costed = costs.catalogue(name)
    c = costed.component
    if "step" not in c.passes or "P" not in c.dims:
        raise UsageError(f"{name!r} is not an optimizer (no 'step' pass over P parameters)")
    line = Line(f"optimizer ({name})", "optimizer")
    state = ZERO
    d = costed.derivation
    for p in trace.parameters:
        if not p.trainable:
            continue
        by_kind, total = costed.counts("step", {"P": sp.Integer(p.numel)})
        add_into(line.forward, by_kind)
        line.flops_forward += total
        state += d.memory.elements("state").xreplace({c.dims["P"]: p.numel}) * p.itemsize
    line.components.append(name)
    return line, sp.expand(state)


def _schedule(name: str, costs: Costs) -> Line:
    costed = costs.catalogue(name)
    c = costed.component
    if c.dims:
        raise UsageError(f"{name!r} is not a learning-rate schedule (it has sizes "
                         f"{', '.join(c.dims)})")
    line = Line(f"schedule ({name})", "schedule")
    by_kind, total = costed.counts(next(iter(c.passes)), {})
    add_into(line.forward, by_kind)
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
    rules = network_rules()
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
                     autocast: str | None = None, costs: Costs | None = None) -> Estimate:
    """The estimate of one trace at ``hints`` (``traced``, if already made); ``fitted``
    names the sizes the trace fixed (its polynomials hold at those sizes' trace values
    only).  ``costs``: the components' costs under ``conv`` so far in this estimate."""
    tr = _for_target(traced or _trace(model, shape, hints, dtype, loss, autocast, target),
                     target)
    missing = [p for p in checkpoint if p not in tr.module_inputs]
    if missing:
        names = ", ".join(sorted(p for p in tr.module_inputs if p)[:12])
        raise UsageError(f"checkpoint: no module {missing[0]!r} ran in the forward pass "
                         f"(modules: {names}, ...)")
    comms: tuple | list = ()
    sharding = None
    if parallel is not None:
        from symflop.estimate.tensor_parallel import communication
        comms, sharding = communication(tr, parallel)
    saved = Saved(sharding if parallel is not None and parallel.sequence else None)
    ops: list = []
    loss_share = 1 / sp.Integer(parallel.t) if sharding and sharding.loss else ONE
    lines, state = _step_lines(tr, costs or Costs(conv), saved, ops, loss=loss,
                               optimizer=optimizer, schedule=schedule, checkpoint=checkpoint,
                               by_block=by_block, loss_share=loss_share)
    est = Estimate(
        name, conv.name, tr.symbols, tr.hints, lines, sum(p.numel for p in tr.parameters),
        sum(p.numel * p.itemsize for p in tr.parameters),
        sum(p.numel * p.itemsize for p in tr.parameters if p.trainable),
        state, sp.expand(sum((ln.saved_bytes for ln in lines), ZERO)), optimizer, loss,
        fitted=tr.specialized, notes=_notes(tr, target, autocast),
        optimizer_impl=optimizer_impl, tensor_parallel=parallel, communication=tuple(comms),
        parameter_sizes=tuple((p.name, p.numel, p.itemsize, p.trainable, p.shape)
                              for p in tr.parameters),
        boundaries=_boundaries(tr, saved.sharding) if by_block else {})
    if parallel is not None:
        est.notes.append(f"one device's share: {parallel.describe()}")
    _replay(est, tr, ops, saved, checkpoint)
    return est


def _step_lines(tr, costs: Costs, saved: Saved, ops: list, *, loss: str, optimizer: str,
                schedule: str | None, checkpoint: tuple, by_block: bool,
                loss_share: sp.Expr) -> tuple[list[Line], sp.Expr]:
    """The step's lines (the network's, the loss's unless torch's ran in the trace, the
    optimizer's, the schedule's) and the optimizer's state in bytes; ``ops`` receives
    what the timeline replays.  ``loss_share``: the part of the loss a device runs."""
    lines = network_lines(tr.calls, costs, saved,
                          {p: tr.module_inputs[p] for p in checkpoint}, record=ops,
                          sharding=saved.sharding, by_block=by_block)
    if not any(ln.what == "loss" for ln in lines):  # no torch function: the catalogue's
        saved.scale = loss_share
        loss_line = _loss_line(loss, tr.output, costs, saved)
        if saved.scale != 1:
            whole, loss_line = loss_line, Line(loss_line.name, "loss")
            scaled_into(loss_line, whole, Work(), saved.scale)
        lines.append(loss_line)
    opt_line, state = _optimizer(optimizer, tr, costs)
    lines.append(opt_line)
    if schedule:
        lines.append(_schedule(schedule, costs))
    return lines, state


_RECURRENT = ("LSTM", "GRU", "RNN")


def _notes(tr, target: str, autocast: str | None) -> list[str]:
    """What a reader must know of the figures of this trace."""
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
    return notes


def _replay(est: Estimate, tr, ops: list, saved: Saved, checkpoint: tuple) -> None:
    """The step's memory timeline: ``est.replay``, and its peaks with ``checkpoint``."""
    at = partial(_at_hints, {tr.symbols[n]: v for n, v in tr.hints.items()})
    est.replay = Replay(
        ops, tuple(tr.parameters), tuple(tr.buffers), tr.input, est.optimizer,
        est.state_bytes, at, est.optimizer_impl,
        {p: frozenset(t.storage for t in ts if t.parameter is None)
         for p, ts in tr.module_inputs.items()},
        *(saved.sharding.replayed(ops) if saved.sharding is not None
          else (1, frozenset(), frozenset())))
    est.peak, est.first_step_peak = est.replay.peaks(tuple(checkpoint))
    est.notes += est.peak.notes
    if tr.specialized:
        est.notes.append("the peak memory is the trace's: its polynomial holds at the "
                         "sizes the model's code fixed")


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
        digest = cached.key(traced, parts, components, network_rules())
        hit = cached.load(digest)
        if hit is not None:
            hit.model = name
            return hit
    options["conv"] = conv
    options["costs"] = Costs(conv)   # one per estimate: the fitted traces share it
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
