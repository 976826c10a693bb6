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
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import sympy as sp

from symflop.core.functions import draws_random
from symflop.core.ir import Node, step_root
from symflop.core.model import Role
from symflop.core.program import (
    Program,
    Step,
    label_inputs,
    ref_indices,
    ref_name,
    step_reads,
    tensor_refs,
)
from symflop.cost.counting import lowerer_for, program_names
from symflop.errors import ComponentError
from symflop.lower.plan import Kernel, Lowered, rows_of, runs_blocked

_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
_CMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}


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
    params = ", ".join(("xp",) + sig.dims + sig.inputs)
    lines = [f"def {func_name}({params}, _inplace=False, _out=None):"]
    if stage:
        lines.append(f"    # {program.name} pass, {stage} stage: what `symflop count --stage "
                     "lowered` counts")
        lines.append("    # float16/bfloat16 inputs: the caller (Derivation.compiled) runs this in "
                     "float32 and rounds the results back, as torch accumulates them")
        lines.append("    # xp: symflop's array backend, not the numpy module: "
                     "symflop.lower.backends.get_backend('numpy' | 'torch')")
    lower = lowerer_for(program_names(program))
    counter = itertools.count()
    hoisted, host_at = _host_names(lowered, sig, labels)
    host: list[str] = []  # scalar work on scalar inputs only: done first
    rest: list[str] = []
    for group in lowered.loops:
        kernels = [lowered.kernels[n] for n in group]
        ctx = _Context(lower, like, counter, host, host_at[group[0]])
        if like is None or not runs_blocked(kernels[0]):
            st = kernels[0].step
            into = host if group[0] in hoisted else rest
            into.append(f"# {st.lhs}{_idx_text(st.idx)} = {st.rhs()}")
            into.extend(_kernel_lines(kernels[0], program, ctx))
            continue
        rest.extend(_fused_loop(kernels, program, ctx, host_at))
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


def _fused_loop(group: list[Kernel], program: Program, ctx: _Context,
                host_at: list[frozenset[str]]) -> list[str]:
    """One loop over blocks of rows running each kernel of ``group`` in turn
    (``symflop.lower.plan.fuse_loops``)."""
    setup, body, post, final = [], [], [], []
    head = group[0]
    extent = _extent(head.block)
    rows = f"xp.rows({extent}, {sp.pycode(rows_of(head))}, {ctx.like})"
    rename: dict[str, str] = {}
    pool = _Pool()
    for kernel in group:
        st = kernel.step
        position = next(n for n, k in enumerate(program.steps) if k is st)
        parts = _blocked_parts(kernel, program, replace(ctx, host_names=host_at[position]),
                               rename, pool)
        setup += [f"# {st.lhs}{_idx_text(st.idx)} = {st.rhs()}"] + parts["setup"]
        body += parts["body"]
        post += parts["post"]
        final += parts["final"]
        rename[st.lhs] = f"_{st.lhs}"
    before, views = pool.lines()
    if views:
        views.insert(0, f"__n = min(__r, {extent} - __s)")
    out = setup[:1] + [f"__r = {rows}"] + setup[1:] + before
    out.append(f"for __s in range(0, {extent}, __r):")
    out += ["    " + ln for ln in views + body]
    return out + post + final


@dataclass
class _Context:
    """What printing one kernel needs besides the kernel: the lowerer, the array whose
    dtype and device new arrays take, a name counter, and the host section with the
    scalar names it may read."""

    lower: object
    like: str | None
    counter: object
    host: list[str]
    host_names: frozenset[str]


def _host_names(lowered: Lowered, sig, labels) -> tuple[set[int], list[frozenset[str]]]:
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


def _idx_text(idx) -> str:
    return "[" + ", ".join(map(str, idx)) + "]" if idx else ""


def _shape_text(idx) -> str:
    return "(" + "".join(f"{sp.pycode(k.upper + 1)}, " for k in idx) + ")"


def _extent(k) -> str:
    return sp.pycode(k.upper + 1)


def _rows_slice(axis: int) -> str:
    return "[" + ":, " * axis + "__s:__s + __r]"


def _references(st: Step, program: Program, space: tuple, labels: dict, counter,
                sliced) -> tuple[dict, list[str], dict]:
    """Each tensor a step reads, aligned into its index space as a local; the label texts."""
    label_text = {j: _align(sliced(y.base.label.name, tuple(y.indices[:-1])),
                            tuple(y.indices[:-1]), space) for j, y in labels.items()}
    aligned: dict = {}
    lines: list[str] = []
    for r in tensor_refs(st.body, program.tensors):
        name, ridx = ref_name(r), ref_indices(r)
        if not ridx:
            continue
        local = f"_{name}_{next(counter)}"
        aligned[r] = local
        text = _align(sliced(name, ridx), ridx, space)
        for j in ridx:
            if j in labels:  # read at the label only
                text = f"xp.gather({text}, {space.index(j)}, {label_text[j]})"
        lines.append(f"{local} = {text}")
    return aligned, lines, label_text


def _labels(st: Step) -> dict:
    labels = {j: y for j, y in st.gather}
    if st.scatter is not None:
        labels[st.scatter[0]] = st.scatter[1]
    return labels


def _kernel_lines(kernel: Kernel, program: Program, ctx: _Context) -> list[str]:
    """A kernel run in one call: a matrix product, a scatter, or a step with no block
    index."""
    st, like = kernel.step, ctx.like
    if kernel.contraction is not None:
        (a, b), spec = kernel.contraction
        return [f"{st.lhs} = xp.contract({spec!r}, {a}, {b})"]
    space = st.idx if st.scatter is not None else st.space
    labels = _labels(st)
    aligned, body, label_text = _references(st, program, space, labels, ctx.counter,
                                            lambda name, ridx: name)
    root = step_root(st, ctx.lower)
    emit = _Emitter(aligned, space, like, tuple(labels), counter=ctx.counter,
                    host=(ctx.host, ctx.host_names))
    if st.scatter is not None:
        value = emit(root)
        j, _y, base = st.scatter
        call = "scatter_add_" if kernel.reuse_base else "scatter_add"
        return body + emit.lines + [f"{st.lhs} = xp.{call}({base}, {space.index(j)}, "
                                    f"{label_text[j]}, {value})"]
    folded = st.reduce + tuple(labels)
    expr = emit(root)
    if folded and aligned:  # reductions kept their axes (size 1): drop them now
        expr = f"xp.squeeze({expr}, {tuple(space.index(j) for j in folded)})"
    if st.idx and not root.idx >= set(st.idx):
        expr = f"xp.broadcast_to({expr}, {_shape_text(st.idx)}, like={like})"
    return body + emit.lines + [f"{st.lhs} = {expr}"]


def _blocked_parts(kernel: Kernel, program: Program, ctx: _Context,
                   rename: dict[str, str], pool: _Pool) -> dict[str, list[str]]:
    """A blocked kernel's lines: ``setup`` (before the loop: its destination, what does
    not depend on the block, block buffers), ``views`` and ``body`` (each iteration),
    ``post`` (after the loop, on an accumulated total) and ``final`` (naming the result).
    ``rename``: results of earlier kernels of the same loop, read from their buffers."""
    st, k, like, counter = kernel.step, kernel.block, ctx.like, ctx.counter
    labels = _labels(st)
    refs = [ref_indices(r) for r in tensor_refs(st.body, program.tensors)]
    widest = max([st.idx] + refs, key=len)  # the operand whose memory order leads
    space = _memory_space(st, widest, labels)

    def sliced(name: str, ridx: tuple) -> str:
        name = rename.get(name, name)
        return name + _rows_slice(ridx.index(k)) if k in ridx else name

    aligned, refs_lines, _ = _references(st, program, space, labels, counter, sliced)
    root = step_root(st, ctx.lower)
    squeeze = tuple(space.index(j) for j in st.reduce + tuple(labels)) if (
        st.reduce or labels) and aligned else ()
    dest = f"_{st.lhs}"
    setup = []
    if kernel.accumulate:
        setup.append(f"{dest} = None")
    elif kernel.inplace:
        setup.append(f"{dest} = {st.lhs} if _inplace else xp.result(_out, {st.lhs!r}, "
                     f"{_shape_text(st.idx)}, {like})")
    else:
        setup.append(f"{dest} = xp.result(_out, {st.lhs!r}, {_shape_text(st.idx)}, {like})")
    target = None
    if not kernel.accumulate and not st.reduce and not labels and root.idx == set(st.idx):
        target = dest + _rows_slice(st.idx.index(k))
    in_block = {r for r, local in aligned.items()
                if any(ln.startswith(local + " = ") and "__s:__s" in ln for ln in refs_lines)}
    emit = _Emitter(aligned, space, like, tuple(labels), block=in_block,
                    accumulator=dest if kernel.accumulate else None, index=k, counter=counter,
                    pool=pool, memory_order=widest,
                    host=(ctx.host, ctx.host_names))
    value = emit(root, target)
    # what does not depend on the block runs once, before the loop
    setup += [ln for ln in refs_lines if "__s:__s" not in ln] + emit.pre
    body = [ln for ln in refs_lines if "__s:__s" in ln] + emit.lines
    part = f"xp.squeeze({value}, {squeeze})" if squeeze else value
    if not kernel.accumulate and value != target:
        body.append(f"xp.assign({dest}{_rows_slice(st.idx.index(k))}, {part})")
    final = [f"{st.lhs} = {part if kernel.accumulate else dest}"]
    return {"setup": setup, "body": body, "post": emit.post, "final": final}


def _memory_space(st: Step, order: tuple, labels: dict) -> tuple:
    """A blocked step's index space in the order of the tensor it reads that spans it
    (``x[i, j]``: (i, j), summed over axis 0), so that no operand is a permuted view: a
    compiler (Inductor) then reduces down the rows with vector accumulators instead of
    striding across them.  Kept only where the output indices stay in their order (the
    reduced axes are squeezed out, leaving the output's); else output indices first."""
    base = st.space
    if labels or set(order) != set(base) or len(order) != len(base):
        return base
    if tuple(k for k in order if k in st.idx) != tuple(st.idx):
        return base
    return tuple(order)


def _align(name: str, ridx: tuple, space: tuple) -> str:
    """``name`` (axes ordered as ``ridx``) permuted and expanded into ``space``."""
    pos = [space.index(k) for k in ridx]
    order = sorted(range(len(ridx)), key=lambda n: pos[n])
    out = name
    if order != list(range(len(ridx))):
        out = f"xp.permute({out}, {tuple(order)})"
    if len(ridx) == len(space):
        return out
    present = set(pos)
    sl = ", ".join(":" if p in present else "None" for p in range(len(space)))
    return f"{out}[{sl}]"


_BOOL = frozenset(("cmp", "and", "or", "not"))


class _Pool:
    """Block-sized buffers of one loop: allocation and view per name, and the free ones."""

    def __init__(self):
        self.shapes: dict[str, tuple[str, str]] = {}
        self.free: list[str] = []

    def lines(self) -> tuple[list[str], list[str]]:
        """Allocations before the loop; views of this block's rows in each iteration."""
        before = [f"{name}_all = {alloc}" for name, (alloc, _v) in self.shapes.items()]
        views = [f"{name} = {name}_all{view}" for name, (_a, view) in self.shapes.items()]
        return before, views


class _Emitter:
    """Prints an operation tree as one statement per operation (``_t0 = ...``), in the
    order it runs.  An operation whose operand is a temporary of the same shape that
    nothing reads afterwards may write its result into that operand's buffer
    (``__t0 = xp.mul(__t0, _x_1, reuse=__t0)``), and the last operation writes into a
    given buffer (``target``, ``out=``): the liveness of every temporary decides where
    results go.  A backend that plans its own memory (the compiled one) ignores
    ``reuse``."""

    def __init__(self, aligned: dict, space: tuple = (), like: str | None = None,
                 labelled: tuple = (), block: set | None = None,
                 accumulator: str | None = None, index=None, counter=None,
                 pool: _Pool | None = None, memory_order: tuple = (),
                 host: tuple[list[str], frozenset[str]] | None = None):
        # With ``block`` (the references read a block at a time), what reads none of them
        # goes to ``pre`` (run once, before the loop); with an ``accumulator`` too, the
        # one reduction over the block ``index`` adds its block results there, and what
        # reads the total goes to ``post``.
        self.block = block
        self.index = index
        self.accumulator = accumulator
        self.pre: list[str] = []
        self.post: list[str] = []
        self.aligned = aligned
        self.space = space
        self.like = like
        self.labelled = set(labelled)
        self.names: dict[Node, str] = {}
        self.lines: list[str] = []
        self._count = counter if counter is not None else itertools.count()
        # Block-sized buffers, allocated once before the loop and shared by the kernels
        # of the loop (``pool``), laid out like the largest tensor read (``memory_order``).
        self.pool = pool if pool is not None else _Pool()
        # scalar work on the names ``host[1]`` only goes to the host section ``host[0]``
        self.host_lines, self.host_names = host if host is not None else ([], frozenset())
        self.memory_order = memory_order
        self._mine: list[str] = []

    def __call__(self, root: Node, target: str | None = None) -> str:
        uses: dict[Node, int] = {root: 1}
        order: list[Node] = []

        def visit(n: Node) -> None:
            for a in n.args:
                uses[a] = uses.get(a, 0) + 1
                if uses[a] == 1:
                    visit(a)
            order.append(n)

        visit(root)
        varies: dict[Node, bool] = {}
        after: dict[Node, bool] = {}  # reads the accumulated total
        on_host: dict[Node, bool] = {}
        for n in order:
            on_host[n] = not n.idx and (
                n.op == "const" or n.op == "ref" and str(n.leaf) in self.host_names
                or n.op not in ("ref", "const") and bool(n.args)
                and all(on_host[a] for a in n.args))
            after[n] = any(after[a] or self._total(a) for a in n.args)
            varies[n] = not after[n] and (
                self.block is None or n.op == "ref" and n.leaf in self.block
                or any(varies[a] for a in n.args))
        fused = _fusions(order, uses, varies, after, on_host, self._total)
        absorbed = {c for f in fused.values() for c in f.absorbed}

        def operands(n: Node) -> list[Node]:  # an absorbed operation's operands instead
            return [b for a in n.args for b in (operands(a) if a in absorbed else [a])]

        temps: set[Node] = set()
        for n in order:
            if n.op in ("ref", "const"):
                self.names[n] = self._leaf(n)
                continue
            if self._total(n):
                self._accumulate(n)
                continue
            if n in absorbed:  # computed by the fused call of the operation reading it
                continue
            lines = self.post if after[n] else self.host_lines if on_host[n] and n is not root \
                else self.lines if varies[n] else self.pre
            kind = "fused" if n in fused else _out_kind(n)
            args = operands(n)
            out = target if n is root and target and kind and n.idx == set(self.space) \
                else None
            if out is None and kind and n.idx:
                out = next((self.names[a] for a in args if a in temps and uses[a] == 1
                            and a.idx == n.idx and varies[a] == varies[n]), None)
            if out is None and kind and self.block is not None and varies[n] \
                    and self.index in n.idx:
                out = self._buffer(n.idx)
            for a in args:
                uses[a] -= 1
                if uses[a] == 0 and a in temps and self.names[a] != out \
                        and self.names[a] in self._mine:
                    self.pool.free.append(self.names[a])  # dead: its buffer is free again
            if kind == "fused":
                f = fused[n]
                operands_text = ", ".join(self.names[a] for a in f.operands)
                scale = self.names[f.scale] if f.scale is not None else "1"
                call = f"xp.{f.call}({operands_text}, {scale}" + (", sub=True" if f.sub
                                                                   else "")
                if out is None:
                    name = f"__t{next(self._count)}"
                    lines.append(f"{name} = {call})")
                    self.names[n] = name
                    temps.add(n)
                    continue
                write = out == target
                call += f", {'out' if write else 'reuse'}={out})"
                lines.append(call if write else f"{out} = {call}")
                self.names[n] = out
                if not write:
                    temps.add(n)
                continue
            if out is not None:
                call = self._out_call(n, kind, out, write=out == target)
                lines.append(call if out == target else f"{out} = {call}")
                self.names[n] = out
                if out != target:
                    temps.add(n)
                continue
            text = self._text(n)
            if n is root and varies[n] and not self.accumulator:
                self.names[n] = text
            else:
                name = f"__t{next(self._count)}"
                lines.append(f"{name} = {text}")
                self.names[n] = name
                if n.idx and n.op not in _BOOL:
                    temps.add(n)
        self.pool.free += [b for b in self._mine if b not in self.pool.free]  # kernel done
        return self.names[root]

    def _buffer(self, idx: frozenset) -> str:
        """A free block-sized buffer for a value over ``idx``, or a new one: allocated
        for full blocks of ``__r`` rows, laid out in memory as ``memory_order``, viewed in
        the step's index order, cut to this block's rows (the last may be shorter)."""
        order = tuple(self.memory_order) + tuple(k for k in self.space
                                                 if k not in self.memory_order)
        perm = tuple(order.index(k) for k in self.space)
        shape = "".join(("__r" if k == self.index else sp.pycode(k.upper + 1))
                        + ", " if k in idx and k not in self.labelled else "1, "
                        for k in order)  # a labelled axis holds one value: the label's
        alloc = f"xp.empty(({shape}), like={self.like})"
        if perm != tuple(range(len(perm))):
            alloc = f"xp.permute({alloc}, {perm})"
        view = f"[{':, ' * self.space.index(self.index)}:__n]"
        name = next((b for b in self.pool.free if self.pool.shapes[b] == (alloc, view)), None)
        if name is not None:
            self.pool.free.remove(name)
        else:
            name = f"__v{next(self._count)}"
            self.pool.shapes[name] = (alloc, view)
        self._mine.append(name)
        return name

    def _total(self, n: Node) -> bool:
        """``n`` is the reduction over the block index, whose block results add up."""
        return bool(self.accumulator) and n.op in ("sum", "amax") and self.index in n.leaf

    def _accumulate(self, n: Node) -> None:
        inner, acc = n.args[0], self.accumulator
        axes = tuple(self.space.index(k) for k in n.leaf)
        p = f"__p{next(self._count)}"
        self.lines += [f"{p} = xp.{n.op}({self.names[inner]}, {axes})",
                       f"{acc} = {p} if {acc} is None else xp.accumulate({acc}, {p}, "
                       f"{'sum' if n.op == 'sum' else 'max'!r})"]
        missing = sp.Mul(*[k.upper + 1 for k in n.leaf if k not in inner.idx
                           and k not in self.labelled])
        if n.op == "sum" and missing != 1:  # applied once, to the total
            self.post.append(f"{acc} = xp.mul({acc}, {sp.pycode(missing)})")
        self.names[n] = acc

    def _leaf(self, n: Node) -> str:
        if n.op == "ref":
            return self.aligned.get(n.leaf, str(n.leaf))
        text = _const(n.leaf)
        return f"({text})" if text.startswith("-") else text

    def _out_call(self, n: Node, kind: str, out: str, write: bool) -> str:
        """The call computing ``n`` into ``out``: a destination it must write
        (``out=``), or a free buffer it may reuse (``reuse=``, returned)."""
        a = [self.names[x] for x in n.args]
        into = f"{'out' if write else 'reuse'}={out}"
        if kind == "pow":
            return f"xp.pow({a[0]}, {n.leaf}, {into})"
        if kind == "fn":
            return f"xp.{n.leaf}({a[0]}, {into})"
        if kind in ("neg", "recip"):
            return f"xp.{'neg' if kind == 'neg' else 'reciprocal'}({a[-1]}, {into})"
        return f"xp.{kind}({a[0]}, {a[1]}, {into})"

    def _text(self, n: Node) -> str:
        a = [self.names[x] for x in n.args]
        if n.op == "div" and n.args[0].op == "const" and n.args[0].leaf == 1:
            return f"xp.reciprocal({a[1]})"  # 1/x: torch runs a Python 1 / x as two ops
        if n.op == "div" and not n.args[0].reads_tensor and n.args[1].reads_tensor:
            return f"xp.divide({a[0]}, {a[1]})"  # c / x: one division, as counted
        if n.op in _BINARY:
            return f"{a[0]} {_BINARY[n.op]} {a[1]}"
        if n.op == "neg":
            return f"-{a[0]}"
        if n.op == "pow":
            return f"{a[0]}**{n.leaf}"
        if n.op == "fn":
            if n.leaf == "powf":
                return f"{a[0]}**{a[1]}"
            if n.leaf == "mod":
                return f"{a[0]} % {a[1]}"
            if n.leaf == "uniform":
                shape = "".join(f"{sp.pycode(k.upper + 1) if k in n.idx else 1}, "
                                for k in self.space)
                return f"xp.uniform(({shape}), like={self.like})"
            return f"xp.{n.leaf}({a[0]})"
        if n.op in ("max", "min"):
            return f"xp.{n.op}imum({a[0]}, {a[1]})"
        if n.op == "where":
            return f"xp.where({a[0]}, {a[1]}, {a[2]}, like={self.like})"
        if n.op in ("sum", "amax"):
            inner = n.args[0]
            axes = tuple(self.space.index(k) for k in n.leaf)
            missing = sp.Mul(*[k.upper + 1 for k in n.leaf if k not in inner.idx
                               and k not in self.labelled])
            text = f"xp.{n.op}({a[0]}, {axes})" if inner.idx else a[0]
            if missing == 1 or n.op == "amax":
                return text
            return f"{text} * {sp.pycode(missing)}"
        if n.op == "indicator":
            return f"xp.where({a[0]}, 1.0, 0.0, like={self.like})"
        if n.op == "cmp":
            return f"{a[0]} {_CMP[n.leaf]} {a[1]}"
        if n.op in ("and", "or"):
            return f"xp.logical_{n.op}({a[0]}, {a[1]})"
        if n.op == "not":
            return f"xp.logical_not({a[0]})"
        raise ComponentError(f"no code for operation {n.op!r}")


@dataclass(frozen=True)
class _Fused:
    """One backend call computing an add or subtract together with the product or
    quotient it adds: ``a + s*x`` (``axpy``), ``a + s*x*y`` (``addcmul``), ``a + s*x/y``
    (``addcdiv``), as torch's ``add(alpha=)``, ``addcmul`` and ``addcdiv`` do.  Fewer,
    larger operations: each is one pass over a block and one parallel region."""

    call: str
    operands: tuple[Node, ...]
    scale: Node | None   # a number (None: 1)
    sub: bool            # the product is subtracted
    absorbed: tuple[Node, ...]


def _fusions(order: list[Node], uses: dict, varies: dict, after: dict, on_host: dict,
             total) -> dict[Node, _Fused]:
    """The additions whose product or quotient operand one fused call computes with
    them.  An absorbed operation must be read by that addition only and run where it
    does (the same block, the same side of a reduction), so that nothing else needs its
    value; a scale of 1 or -1 is left alone (it is no multiplication in the count)."""
    out: dict[Node, _Fused] = {}

    def alone(c: Node, p: Node) -> bool:
        return (uses.get(c) == 1 and c.idx == p.idx and varies[c] == varies[p]
                and after[c] == after[p] and not on_host[c] and not total(c)
                and c.op not in _BOOL)

    def scaled(c: Node) -> tuple[Node | None, Node] | None:
        """``c`` as (scalar, tensor factor): ``s*x``; None if it is not such a product.
        (A scalar that is a 0-dimensional tensor at run time, not a number, makes the
        backend run the operations apart.)"""
        if c.op != "mul" or len(c.args) != 2:
            return None
        for s, x in (c.args, c.args[::-1]):
            if not s.idx and x.idx and not (
                    s.op == "const" and s.leaf in (1, -1)):
                return s, x
        return None

    for p in order:
        if p.op not in ("add", "sub") or not p.idx or on_host[p] or total(p):
            continue
        for j in ((1,) if p.op == "sub" else (1, 0)):
            a, c = p.args[1 - j], p.args[j]
            if not a.idx or not alone(c, p):
                continue
            sign = p.op == "sub"
            sx = scaled(c)
            if sx is not None:
                s, x = sx
                if x.op == "pow" and x.leaf == 2 and alone(x, c):
                    out[p] = _Fused("addcmul", (a, x.args[0], x.args[0]), s, sign, (c, x))
                elif x.op == "mul" and len(x.args) == 2 and all(y.idx for y in x.args) \
                        and alone(x, c):
                    out[p] = _Fused("addcmul", (a, *x.args), s, sign, (c, x))
                else:
                    out[p] = _Fused("axpy", (a, x), s, sign, (c,))
                break
            if c.op == "div" and c.args[1].idx:
                num, den = c.args
                sx = scaled(num) if alone(num, c) else None
                if sx is not None:
                    out[p] = _Fused("addcdiv", (a, sx[1], den), sx[0], sign, (c, num))
                    break
                if num.idx:
                    out[p] = _Fused("addcdiv", (a, num, den), None, sign, (c,))
                    break
    return out


def _out_kind(n: Node) -> str | None:
    """The backend call that can write ``n``'s value into a given buffer, if any."""
    if n.op == "div" and n.args[0].op == "const" and n.args[0].leaf == 1:
        return "recip"
    if n.op == "div" and not n.args[0].reads_tensor and n.args[1].reads_tensor:
        return "divide"
    if n.op in _BINARY or n.op in ("neg", "pow"):
        return n.op
    if n.op == "fn" and n.leaf not in ("powf", "mod", "uniform"):
        return "fn"
    return None


def _const(v) -> str:
    if isinstance(v, sp.Symbol):
        return v.name
    if v.is_Integer:
        return str(int(v))
    value = complex(v) if v in (sp.zoo,) else float(v)
    if value != value or isinstance(value, complex):  # nan (a complex infinity too)
        return "float('nan')"
    if value in (float("inf"), float("-inf")):  # oo, or a constant past float64's range
        return f"float('{value}')"
    return repr(value)
