"""The network's lines: each traced aten operation costed through the catalogue's rules.

A catalogue's rules (entry point group ``symflop.network``) say which components an
operation is; their costs (``costs``) are added up by module, or by repeated block
(each layer of a transformer).  Beside the lines: what a checkpointed module keeps and
runs again (``checkpoint``), the work cut over devices by sequence parallelism, and the
additions of the gradients of tensors read twice or more.
"""

from __future__ import annotations

import sympy as sp

from symflop.estimate.calls import FREE, Gradients, Keep, OpCall, Unknown
from symflop.estimate.checkpoint import Checkpoints
from symflop.estimate.costs import Costs, apply_use
from symflop.estimate.result import ZERO, Line
from symflop.estimate.work import ONE, Saved, Work, read, scaled_into
from symflop.registry import plugin


def network_rules() -> dict:
    return plugin("symflop.network", "rules for network operations")


def _count_reads(call: OpCall, reads: dict, with_grad: set) -> None:
    """A view or copy that carries the gradient (its output is read later as a tensor that
    needs one) reads its inputs: autograd gives each input a gradient of its own through
    it (select and slice a whole-size one, zero elsewhere), added to its other ones."""
    if not any(t.key in with_grad for t in call.outputs):
        return
    for t in call.tensor_args():
        if t.requires_grad and t.floating:
            read(reads, t)


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


def _line_of(lines: dict[str, Line], call: OpCall, blocks: str | None) -> Line:
    """The line ``call`` adds to: its repeated block's, or its module's."""
    block = _block_of(call, blocks)
    return (lines.setdefault(block, Line(block, "block")) if block else
            lines.setdefault(call.module, Line(call.module or "(model)", call.module_type)))


def network_lines(calls: tuple[OpCall, ...], costs: Costs, saved: Saved,
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
    checkpoints = Checkpoints(checkpointed or {})
    blocks = repeated_blocks(calls) if by_block else None
    rules = network_rules()
    lines: dict[str, Line] = {}
    reads: dict = {}
    # tensors read later as needing a gradient (an output is recorded before autograd
    # marks it: its own flag is not yet set)
    with_grad = {t.key for call in calls for t in call.tensor_args() if t.requires_grad}
    for index, call in enumerate(calls):
        target = _line_of(lines, call, blocks)
        factor = sharding.op(index) if sharding is not None else ONE
        line = target if factor == 1 else Line(target.name, target.what)
        saved.scale = factor
        segment = checkpoints.enter(call, line, saved)
        rule = rules.get(call.op) or rules.get(call.op.rstrip("_"))
        answer = rule(call) if rule else Unknown(f"no rule for {call.overload}")
        if answer is FREE:
            _count_reads(call, reads, with_grad)
            if record is not None:
                record.append((call, set(), ZERO))
            continue
        work = _cost(call, answer, line, costs, saved, reads, keep=segment is None)
        if factor != 1:
            scaled_into(target, line, work, factor)
        checkpoints.add(segment, call, work)
        if record is not None:
            record.append((call, {k for k in work.keeps if k != "itself"}, work.new_kept))
    out = [ln for ln in lines.values()
           if ln.flops != 0 or ln.unknown or ln.saved_bytes != 0 or ln.integer != 0]
    out += checkpoints.lines()
    acc = _gradient_sums(reads, sharding, costs)
    return out + ([acc] if acc.flops_backward != 0 else [])


def _cost(call: OpCall, answer, line: Line, costs: Costs, saved: Saved, reads: dict,
          keep: bool) -> Work:
    """What a rule's ``answer`` for ``call`` does, added to ``line``; ``keep``: count what
    its backward keeps (not in a checkpointed module, which keeps only its inputs)."""
    work = Work()
    for part in answer if isinstance(answer, list) else [answer]:
        if isinstance(part, Keep):
            work.keeps |= {t.storage for t in part.tensors}
            for t in part.tensors if keep else ():
                if t.parameter is None:
                    line.saved_bytes += saved.add(t.storage, t.storage_elements * t.itemsize)
            continue
        if isinstance(part, Gradients):
            for t in part.tensors:
                read(reads, t)
            continue
        if isinstance(part, Unknown):
            line.unknown.append(f"{call.op}: {part.why}"
                                + (" (backward only)" if part.backward else ""))
            continue
        apply_use(line, part, costs.of(part), saved, reads, work, keep=keep,
                  overwritten=call.args[0] if call.op.endswith("_") else None)
        if part.label not in line.components:
            line.components.append(part.label)
    return work


def _gradient_sums(reads: dict, sharding, costs: Costs) -> Line:
    """The additions of the gradients of each tensor read twice or more."""
    acc = Line("(gradient sums)", "gradients of tensors read twice or more, added")
    for t, n in reads.values():
        if n > 1:
            share = sharding.tensor(t) if sharding is not None else ONE
            acc.backward["add"] = sp.expand(acc.backward["add"] + (n - 1) * t.numel * share)
    acc.flops_backward = costs.weigh(acc.backward)
    return acc
