"""Printing of the lowered stage (``symflop.lower.plan``) as vectorized array code.

Each index of a step becomes an axis of the step's index space (output indices
first, then reduced ones); a tensor reference is permuted and given size-1
axes so that it broadcasts into that space; a sum becomes one reduction call.
Elementwise bodies are printed from the same operation tree the counter uses
(``symflop.core.ir``), one statement per operation, each shared subexpression
once; an operation writes into a dead temporary's buffer where one fits.  A
kernel with a block index runs as a loop over blocks of rows (``xp.rows`` says
how many; a backend that fuses on its own asks for all of them at once).  The
source is plain Python over an array namespace ``xp`` (``symflop.lower.backends``),
so one function serves NumPy and torch on any device.

This module prints the function around the kernels: its signature, the host
section, the in-place tail.  A kernel run in one call is printed by
``symflop.lower.kernel_code``, a loop over blocks by ``symflop.lower.loop_code``,
an operation tree's statements by ``symflop.lower.statements``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy as sp

from symflop.core.functions import draws_random
from symflop.core.model import Role
from symflop.core.program import Program, Step, label_inputs, ref_name, step_reads, tensor_refs
from symflop.cost.counting import lowerer_for, program_names
from symflop.lower.kernel_code import Context, idx_text, kernel_lines
from symflop.lower.loop_code import fused_loop
from symflop.lower.plan import Lowered, runs_blocked


@dataclass(frozen=True)
class Signature:
    """What a generated function takes and returns."""

    dims: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def signature(program: Program, results: tuple[str, ...] | None = None) -> Signature:
    """Sizes and inputs a program's code takes, and what it returns: ``results`` (every
    step's tensor when not given)."""
    assigned: set[str] = set()
    inputs: list[str] = []
    dims: set[str] = set()
    for st in program.steps:
        for name in _ordered_reads(st, program.tensors):
            if name not in assigned and name not in inputs:
                inputs.append(name)
        syms = set(st.body.free_symbols)
        for k in st.space + st.labelled:
            syms |= k.upper.free_symbols
        for s in sorted(syms, key=lambda s: s.name):  # never set order: PYTHONHASHSEED
            if isinstance(s, sp.Idx):
                continue
            t = program.tensors.get(s.name)
            if t is not None and t.role is Role.HYPER and s.name not in inputs:
                inputs.append(s.name)
            elif t is None and s.is_integer and s.is_positive:
                dims.add(s.name)
        assigned.add(st.lhs)
    outputs = tuple(dict.fromkeys(results if results is not None
                                  else (st.lhs for st in program.steps)))
    return Signature(tuple(sorted(dims)), tuple(inputs), outputs)


def _ordered_reads(st: Step, tensors) -> list[str]:
    """What a step reads, in a stable order: its body's tensors, then one-hot labels, then
    a scatter's base."""
    names = [ref_name(r) for r in tensor_refs(st.body, tensors)]
    names += [y.base.label.name for _k, y in st.gather]
    if st.scatter is not None:
        names += [str(st.scatter[1].base), st.scatter[2]]
    return list(dict.fromkeys(names))


def generate(lowered: Lowered, func_name: str, stage: str = "") -> tuple[str, Signature]:
    """Python source of ``def func_name(xp, <dims>, <inputs>, _inplace=False, _out=None)``
    returning a dict of the pass's results; ``stage`` names the stage, in a comment.

    A one-hot tensor is passed as its labels (integers, without the one-hot axis).
    With ``_inplace`` true, a step that updates an input elementwise (optimizer state)
    writes into that input's buffer; ``_out`` maps result names to arrays that a
    blocked step writes its result into (instead of a new array)."""
    program = lowered.program
    sig = signature(program, lowered.results)
    labels = label_inputs(program)
    like = next((n for n in sig.inputs if not program.tensors[n].is_scalar
                 and n not in labels), None)
    lines = _header(func_name, sig, program.name, stage)
    host, rest = _statements(lowered, sig, labels, like)
    if host and rest:
        host.append("xp.host_done()  # what follows reads arrays")
    updated = [n for n in sig.outputs if n in sig.inputs and not program.tensors[n].is_scalar
               and n not in labels]
    keep = [f"__in_{n} = {n}  # in place, the new value ends in this buffer" for n in updated]
    lines.extend("    " + ln for ln in keep + host + rest)
    for n in updated:  # a step that could not write in place: its result is copied there
        lines += [f"    if _inplace and {n} is not __in_{n}:",
                  f"        xp.assign(__in_{n}, {n})", f"        {n} = __in_{n}"]
    outs = ", ".join(f"{n!r}: {n}" for n in sig.outputs)
    lines.append(f"    return {{{outs}}}")
    return "\n".join(lines) + "\n", sig


def _header(func_name: str, sig: Signature, program_name: str, stage: str) -> list[str]:
    """The ``def`` line, and with a ``stage`` the comments saying what the code is."""
    params = ", ".join(("xp",) + sig.dims + sig.inputs)
    lines = [f"def {func_name}({params}, _inplace=False, _out=None):"]
    if stage:
        lines.append(f"    # {program_name} pass, {stage} stage: what `symflop count --stage "
                     "lowered` counts")
        lines.append("    # float16/bfloat16 inputs: the caller (Derivation.compiled) runs this in "
                     "float32 and rounds the results back, as torch accumulates them")
        lines.append("    # xp: symflop's array backend, not the numpy module: "
                     "symflop.lower.backends.get_backend('numpy' | 'torch')")
    return lines


def _statements(lowered: Lowered, sig: Signature, labels,
                like: str | None) -> tuple[list[str], list[str]]:
    """Every kernel's lines, in the order they run: the host section (scalar work on
    scalar inputs only, done first) and the rest."""
    program = lowered.program
    lower = lowerer_for(program_names(program))
    counter = itertools.count()
    hoisted, host_at = _host_names(lowered, sig, labels)
    host: list[str] = []
    rest: list[str] = []
    for group in lowered.loops:
        kernels = [lowered.kernels[n] for n in group]
        ctx = Context(lower, like, counter, host, host_at[group[0]])
        if like is None or not runs_blocked(kernels[0]):
            st = kernels[0].step
            into = host if group[0] in hoisted else rest
            into.append(f"# {st.lhs}{idx_text(st.idx)} = {st.rhs()}")
            into.extend(kernel_lines(kernels[0], program, ctx))
            continue
        rest.extend(fused_loop(kernels, program, ctx, host_at))
    return host, rest


def _host_names(lowered: Lowered, sig: Signature,
                labels) -> tuple[set[int], list[frozenset[str]]]:
    """Which scalar steps run first, in the host section, and per kernel the scalar
    names that hold the same value there as at the top of the function: the pass's
    scalar inputs and what hoisted steps assign, less what a step left in place
    assigns (a value read after that step is not the one at the top)."""
    program = lowered.program
    names = {n for n in sig.inputs if program.tensors[n].is_scalar and n not in labels}
    hoisted: set[int] = set()
    at: list[frozenset[str]] = []
    read_before: set[str] = set()
    for n, kernel in enumerate(lowered.kernels):
        st = kernel.step
        at.append(frozenset(names))
        reads = step_reads(st, program.tensors)
        if not st.idx and not st.reduce and not st.gather and st.scatter is None \
                and reads <= names and not draws_random(st.body) and st.lhs not in read_before:
            hoisted.add(n)
            names.add(st.lhs)
        else:
            names.discard(st.lhs)
        read_before |= reads
    return hoisted, at
