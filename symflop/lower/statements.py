"""An operation tree printed as statements, one per operation, in the order they run.

Where each result goes is decided here, from the liveness of every temporary: into
a dead temporary's buffer, a block-sized buffer of the loop (``Pool``), the step's
destination, or a new name; and in which section it runs: before a loop over
blocks, in it, after it (on an accumulated total), or in the host section (scalar
work on scalar inputs).  The calls themselves are spelled by
``symflop.lower.call_text``; fused calls are chosen by ``symflop.lower.fused_calls``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import sympy as sp

from symflop.core.ir import Node
from symflop.lower.call_text import BOOL, call_text, const_text, missing_extent, out_call, out_kind
from symflop.lower.fused_calls import FusedCall, fusions


class Pool:
    """Block-sized buffers of one loop: allocation and view per name, and the free ones."""

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[str, str]] = {}
        self.free: list[str] = []

    def lines(self) -> tuple[list[str], list[str]]:
        """Allocations before the loop; views of this block's rows in each iteration."""
        before = [f"{name}_all = {alloc}" for name, (alloc, _v) in self.shapes.items()]
        views = [f"{name} = {name}_all{view}" for name, (_a, view) in self.shapes.items()]
        return before, views


@dataclass
class _Walk:
    """One tree in the order it runs, and what decides where each result goes: how many
    operations still read it (``uses``), whether it changes from block to block
    (``varies``), reads the accumulated total (``after``) or is scalar work on host
    names (``on_host``); the fused calls and what they absorb; the temporaries so far."""

    uses: dict[Node, int]
    order: list[Node]
    varies: dict[Node, bool]
    after: dict[Node, bool]
    on_host: dict[Node, bool]
    fused: dict[Node, FusedCall] = field(default_factory=dict)
    absorbed: set[Node] = field(default_factory=set)
    temps: set[Node] = field(default_factory=set)

    def operands(self, n: Node) -> list[Node]:
        """``n``'s operands, an absorbed operation's operands in its place."""
        return [b for a in n.args for b in (self.operands(a) if a in self.absorbed else [a])]


class Emitter:
    """Prints an operation tree as one statement per operation (``_t0 = ...``), in the
    order it runs.  An operation whose operand is a temporary of the same shape that
    nothing reads afterwards may write its result into that operand's buffer
    (``__t0 = xp.mul(__t0, _x_1, reuse=__t0)``), and the last operation writes into a
    given buffer (``target``, ``out=``): the liveness of every temporary decides where
    results go.  A backend that plans its own memory (the compiled one) ignores
    ``reuse``."""

    def __init__(self, aligned: dict, space: tuple = (), like: str | None = None,
                 labelled: tuple = (), block: set | None = None,
                 accumulator: str | None = None, index=None,
                 counter: Iterator[int] | None = None,
                 pool: Pool | None = None, memory_order: tuple = (),
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
        self.pool = pool if pool is not None else Pool()
        # scalar work on the names ``host[1]`` only goes to the host section ``host[0]``
        self.host_lines, self.host_names = host if host is not None else ([], frozenset())
        self.memory_order = memory_order
        self._mine: list[str] = []

    def __call__(self, root: Node, target: str | None = None) -> str:
        """The statements computing ``root`` (into ``target``, if given); its name."""
        w = self._walk(root)
        for n in w.order:
            if n.op in ("ref", "const"):
                self.names[n] = self._leaf(n)
            elif self._total(n):
                self._accumulate(n)
            elif n not in w.absorbed:  # else computed by the fused call reading it
                self._emit(n, w, root, target)
        self.pool.free += [b for b in self._mine if b not in self.pool.free]  # kernel done
        return self.names[root]

    def _walk(self, root: Node) -> _Walk:
        uses: dict[Node, int] = {root: 1}
        order: list[Node] = []

        def visit(n: Node) -> None:
            for a in n.args:
                uses[a] = uses.get(a, 0) + 1
                if uses[a] == 1:
                    visit(a)
            order.append(n)

        visit(root)
        w = _Walk(uses, order, {}, {}, {})
        for n in order:
            w.on_host[n] = not n.idx and (
                n.op == "const" or n.op == "ref" and str(n.leaf) in self.host_names
                or n.op not in ("ref", "const") and bool(n.args)
                and all(w.on_host[a] for a in n.args))
            w.after[n] = any(w.after[a] or self._total(a) for a in n.args)
            w.varies[n] = not w.after[n] and (
                self.block is None or n.op == "ref" and n.leaf in self.block
                or any(w.varies[a] for a in n.args))
        w.fused = fusions(order, uses, w.varies, w.after, w.on_host, self._total)
        w.absorbed = {c for f in w.fused.values() for c in f.absorbed}
        return w

    def _emit(self, n: Node, w: _Walk, root: Node, target: str | None) -> None:
        """The statement computing ``n``, in the section where it runs."""
        lines = self.post if w.after[n] else self.host_lines if w.on_host[n] and n is not root \
            else self.lines if w.varies[n] else self.pre
        kind = "fused" if n in w.fused else out_kind(n)
        args = w.operands(n)
        out = self._destination(n, kind, args, w, root, target)
        for a in args:
            w.uses[a] -= 1
            if w.uses[a] == 0 and a in w.temps and self.names[a] != out \
                    and self.names[a] in self._mine:
                self.pool.free.append(self.names[a])  # dead: its buffer is free again
        if kind == "fused":
            self._emit_fused(n, w, out, target, lines)
        elif kind is not None and out is not None:
            call = out_call(n, kind, [self.names[x] for x in n.args], out,
                            write=out == target)
            lines.append(call if out == target else f"{out} = {call}")
            self.names[n] = out
            if out != target:
                w.temps.add(n)
        else:
            self._emit_value(n, w, n is root, lines)

    def _destination(self, n: Node, kind: str | None, args: list[Node], w: _Walk,
                     root: Node, target: str | None) -> str | None:
        """Where ``n``'s result is written, if a call can write it: the given ``target``
        (the root), a dead temporary's buffer, or a block-sized buffer of the loop."""
        out = target if n is root and target and kind and n.idx == set(self.space) \
            else None
        if out is None and kind and n.idx:
            out = next((self.names[a] for a in args if a in w.temps and w.uses[a] == 1
                        and a.idx == n.idx and w.varies[a] == w.varies[n]), None)
        if out is None and kind and self.block is not None and w.varies[n] \
                and self.index in n.idx:
            out = self._buffer(n.idx)
        return out

    def _emit_fused(self, n: Node, w: _Walk, out: str | None, target: str | None,
                    lines: list[str]) -> None:
        f = w.fused[n]
        operands_text = ", ".join(self.names[a] for a in f.operands)
        scale = self.names[f.scale] if f.scale is not None else "1"
        call = f"xp.{f.call}({operands_text}, {scale}" + (", sub=True" if f.sub else "")
        if out is None:
            name = f"__t{next(self._count)}"
            lines.append(f"{name} = {call})")
            self.names[n] = name
            w.temps.add(n)
            return
        write = out == target
        call += f", {'out' if write else 'reuse'}={out})"
        lines.append(call if write else f"{out} = {call}")
        self.names[n] = out
        if not write:
            w.temps.add(n)

    def _emit_value(self, n: Node, w: _Walk, is_root: bool, lines: list[str]) -> None:
        """``n`` as an expression: the root's, left unnamed when the caller writes it
        itself; else assigned to a new temporary."""
        text = call_text(n, [self.names[x] for x in n.args], self.space, self.like,
                         self.labelled)
        if is_root and w.varies[n] and not self.accumulator:
            self.names[n] = text
        else:
            name = f"__t{next(self._count)}"
            lines.append(f"{name} = {text}")
            self.names[n] = name
            if n.idx and n.op not in BOOL:
                w.temps.add(n)

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
        assert acc is not None  # a total is a reduction into the accumulator (``_total``)
        axes = tuple(self.space.index(k) for k in n.leaf)
        p = f"__p{next(self._count)}"
        self.lines += [f"{p} = xp.{n.op}({self.names[inner]}, {axes})",
                       f"{acc} = {p} if {acc} is None else xp.accumulate({acc}, {p}, "
                       f"{'sum' if n.op == 'sum' else 'max'!r})"]
        missing = missing_extent(n, self.labelled)
        if n.op == "sum" and missing != 1:  # applied once, to the total
            self.post.append(f"{acc} = xp.mul({acc}, {sp.pycode(missing)})")
        self.names[n] = acc

    def _leaf(self, n: Node) -> str:
        if n.op == "ref":
            return self.aligned.get(n.leaf, str(n.leaf))
        text = const_text(n.leaf)
        return f"({text})" if text.startswith("-") else text
