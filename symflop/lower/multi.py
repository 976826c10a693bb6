"""A generated elementwise pass run over a list of tensors in one call: an optimizer's
step over a model's whole parameter list, as torch.optim's foreach and fused
implementations run theirs.

A model's parameters are a few large tensors and many small ones (ResNet-50: 161
tensors, of which 106 hold under 4,096 values each).  Called once per tensor, the
generated code pays its per-call and per-operation overhead 161 times, most of them
on a few hundred values.  So the list is cut in two:

- a tensor of at least ``PACK_BELOW`` values runs alone, on a flat view of its own
  memory (no copy), in the generated code's blocks;
- the small ones of each dtype and device are packed: each input's tensors are
  concatenated into one flat buffer (one call), the pass runs once on the buffers,
  and what it updates is copied back into each tensor (one call).

State stays per tensor, in the caller's tensors, as torch.optim keeps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from symflop.errors import InputError, UsageError
from symflop.lower.backends import get_backend
from symflop.lower.compiled import CompiledPass
from symflop.lower.threads import threads_for

# A tensor with fewer values than this is packed with the other small ones: its own
# call would cost more in overhead than the copies in and out (bench/codegen.py).
PACK_BELOW = 1 << 16


@dataclass(frozen=True)
class _Shape:
    arrays: tuple[str, ...]   # inputs that are lists of tensors
    scalars: tuple[str, ...]  # inputs that are numbers
    updated: tuple[str, ...]  # array results written back into an input
    new: tuple[str, ...]      # array results no input holds


class MultiTensorPass:
    """``compiled`` (a pass elementwise over one size, such as an optimizer's step) run on
    lists of tensors: ``step(theta=[...], g=[...], m=[...], ..., lr=1e-3)``."""

    def __init__(self, compiled: CompiledPass):
        self.compiled = compiled
        sig = compiled.signature
        sizes = {shape for name, shape in compiled.shapes.items() if shape}
        sizes |= {shape for shape in compiled.result_shapes.values() if shape}
        if len(sig.dims) != 1 or len(sizes) != 1 or len(next(iter(sizes))) != 1:
            raise UsageError(f"{compiled.name}: a multi-tensor run needs a pass elementwise "
                             "over one size (an optimizer's step); this one's arrays have "
                             f"shapes {sorted(sizes)}")
        arrays = tuple(n for n in sig.inputs if compiled.shapes[n])
        self.shape = _Shape(
            arrays=arrays,
            scalars=tuple(n for n in sig.inputs if not compiled.shapes[n]),
            updated=tuple(n for n in sig.outputs if n in arrays),
            new=tuple(n for n in sig.outputs if n not in sig.inputs
                      and compiled.result_shapes.get(n)))

    def __call__(self, backend="torch", check: bool = True, inplace: bool = True,
                 **values) -> dict:
        """Run on lists of tensors (one list per array input, the same length, tensors at
        the same position of the same shape, dtype and device) and numbers.

        Returns the results: lists for arrays (with ``inplace``, the default, the input
        tensors themselves, updated as torch.optim updates them), numbers for scalars.
        ``check`` tests shapes, dtypes and devices and that no value is NaN or
        infinite, before anything is written."""
        xp = get_backend(backend)
        if not hasattr(xp, "torch"):
            raise UsageError(f"{self.compiled.name}: a multi-tensor run takes torch tensors "
                             "(backend 'torch' or 'torch-compiled')")
        lists = self._lists(values, xp, check)
        if not inplace:  # the caller's tensors stay as they were
            lists = {n: [a.clone() for a in ts] if n in self.shape.updated else ts
                     for n, ts in lists.items()}
        scalars = {n: values[n] for n in self.shape.scalars}
        count = len(next(iter(lists.values()))) if lists else 0
        results: dict = {n: [None] * count for n in self.shape.updated + self.shape.new}
        torch = xp.torch
        elements = sum(a.numel() for ts in lists.values() for a in ts)
        with threads_for(torch, elements):
            scalar_out = self._run(xp, lists, scalars, results, count)
        for n in self.shape.updated:
            results[n] = lists[n]
        for n in self.compiled.signature.outputs:  # an empty list: nothing ran
            if n not in results:
                results[n] = scalar_out.get(n, values.get(n))
        return {n: results[n] for n in self.compiled.signature.outputs}

    def _lists(self, values: dict, xp, check: bool) -> dict[str, list]:
        name = self.compiled.name
        self.compiled.check_names(values)
        lists: dict[str, list] = {}
        for n in self.shape.arrays:
            v = values[n]
            if not isinstance(v, (list, tuple)) or not all(xp.is_array(a) for a in v):
                raise InputError(f"{name}: {n} must be a list of torch tensors, "
                                 f"got {type(v).__name__}")
            lists[n] = list(v)
        lengths = {n: len(ts) for n, ts in lists.items()}
        if len(set(lengths.values())) > 1:
            raise InputError(f"{name}: the lists differ in length: "
                             + ", ".join(f"{n} {k}" for n, k in lengths.items()))
        first = self.shape.arrays[0] if self.shape.arrays else None
        for n in self.shape.scalars:
            v = values[n]
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise InputError(f"{name}: {n} must be a number, got {type(v).__name__}")
            if check and n not in self.compiled.nonfinite_ok and not math.isfinite(v):
                raise InputError(f"{name}: {n} is {v} (NaN or infinite)")
        if not check or first is None:
            return lists
        for i, ref in enumerate(lists[first]):
            for n in self.shape.arrays:
                a = lists[n][i]
                if (a.shape, a.dtype, a.device) != (ref.shape, ref.dtype, ref.device):
                    raise InputError(
                        f"{name}: {n}[{i}] is {tuple(a.shape)} {a.dtype} on {a.device}, but "
                        f"{first}[{i}] is {tuple(ref.shape)} {ref.dtype} on {ref.device}")
                if not a.is_floating_point():
                    raise InputError(f"{name}: {n}[{i}] is {a.dtype}; give floating tensors")
        for n in self.shape.arrays:
            if n in self.compiled.nonfinite_ok:
                continue
            bad = [i for i, a in enumerate(lists[n]) if not bool(a.isfinite().all())]
            if bad:
                raise InputError(f"{name}: {n}[{bad[0]}] contains NaN or infinite values"
                                 + (f" (and {len(bad) - 1} more tensors)" if len(bad) > 1
                                    else ""))
        return lists

    def _run(self, xp, lists: dict, scalars: dict, results: dict, count: int) -> dict:
        """Large tensors one call each, the small ones of each dtype and device packed
        into one call; returns the scalar results (the same for every call)."""
        scalar_out: dict = {}
        small: dict[tuple, list[int]] = {}
        first = self.shape.arrays[0]
        for i in range(count):
            ref = lists[first][i]
            whole = all(lists[n][i].is_contiguous() for n in self.shape.arrays)
            if ref.numel() >= PACK_BELOW and whole:
                out = self.compiled(backend=xp, check=False, inplace=True, **scalars,
                                    **{n: lists[n][i].view(-1) for n in self.shape.arrays})
                self._keep(out, results, [i], [ref], scalar_out)
            else:
                small.setdefault((ref.dtype, ref.device), []).append(i)
        torch = xp.torch
        for at in small.values():
            refs = [lists[first][i] for i in at]
            packed = {n: torch.cat([lists[n][i].reshape(-1) for i in at])
                      for n in self.shape.arrays}
            out = self.compiled(backend=xp, check=False, inplace=True, **scalars, **packed)
            sizes = [r.numel() for r in refs]
            for n in self.shape.updated:
                _copy_back([lists[n][i] for i in at], out[n].split(sizes), torch)
            self._keep(out, results, at, refs, scalar_out)
        return scalar_out

    def _keep(self, out: dict, results: dict, at: list[int], refs: list, scalar_out: dict):
        """Files a call's new array results by position, and its scalar results."""
        for n in self.shape.new:
            parts = out[n].split([r.numel() for r in refs]) if len(at) > 1 else [out[n]]
            for i, part, r in zip(at, parts, refs):
                results[n][i] = part.view(r.shape)
        for n in self.compiled.signature.outputs:
            if n not in self.shape.updated and n not in self.shape.new:
                v = out[n]  # the compiled backend returns a 0-dimensional tensor
                scalar_out[n] = v.item() if hasattr(v, "item") else v


def _copy_back(dsts: list, parts, torch) -> None:
    """Each packed part into its own tensor (one call where torch has ``_foreach_copy_``)."""
    flat = [d.view(-1) if d.is_contiguous() else None for d in dsts]
    if all(f is not None for f in flat) and hasattr(torch, "_foreach_copy_"):
        torch._foreach_copy_(flat, list(parts))
        return
    for d, p in zip(dsts, parts):
        d.copy_(p.view(d.shape))
