"""CUDA's autocast, traced on the CPU: each operation's types as torch picks them on a GPU.

Why not trace on fake CUDA tensors: in a build without CUDA, autograd's graph and many
kernels ask the CUDA device for a guard or a stream, and the process aborts.  Why not
the CPU's autocast: its lists differ from CUDA's (softmax, the norms and the losses run
in float32 on CUDA, in half precision on the CPU).

How: torch registers CUDA's autocast kernels in every build.  For one operation and its
argument types, ``policy`` asks them: the operation is called on fake CUDA tensors of
those types under CUDA's autocast, with no gradient (so no autograd graph), and a
dispatch mode stops it where the autocast kernel hands it on, reading the types (and
any ``dtype`` argument) it hands on; its casts are answered with a fake tensor of the
new type, so no kernel runs.  ``cuda_autocast(dtype)`` then, for a trace on the CPU,
puts a kernel on the CPU's autocast key of every operation that either device's
autocast knows: where CUDA's has a kernel, it casts the arguments as CUDA's would (a
parameter cast once per type, as autocast's cache does) and runs the operation below
autocast; where only the CPU's has one, autocast passes over it, as CUDA's does, and
the operations a composite one is made of meet autocast in their turn (cross_entropy's
log_softmax runs in float32).  The casts are real operations of the trace, with their
backward.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

import torch
from torch.library import fallthrough_kernel
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten, tree_unflatten

_AUTOCAST_CPU = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastCPU)


class _StopError(Exception):
    """The autocast kernel handed the operation on (its first operation not a cast)."""


class _Stop(TorchDispatchMode):
    """Answers the autocast kernel's casts with fake tensors, noting each (the tensor's
    id, the new type), and stops at the first other operation: none of the operation's
    kernels runs."""

    def __init__(self):
        super().__init__()
        self.casts: dict[int, torch.dtype] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "prim":        # the kernel asks the tensors' device
            return func(*args, **kwargs)
        if func is not torch.ops.aten._to_copy.default:
            raise _StopError
        x, to = args[0], kwargs.get("dtype") or args[0].dtype
        self.casts[id(x)] = to
        return torch.empty_strided(x.shape, x.stride(), dtype=to, device=x.device)


@contextmanager
def cuda_autocast_state(dtype: torch.dtype):
    """CUDA's autocast switched on as ``torch.autocast("cuda")`` would switch it on
    (which, without a CUDA device, turns itself off): enabled, its type, the nesting
    that clears the cast cache when it ends."""
    was = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    torch.set_autocast_enabled("cuda", True)
    torch.set_autocast_dtype("cuda", dtype)
    torch.autocast_increment_nesting()
    try:
        yield
    finally:
        if torch.autocast_decrement_nesting() == 0:
            torch.clear_autocast_cache()
        torch.set_autocast_enabled("cuda", was[0])
        torch.set_autocast_dtype("cuda", was[1])


def _signature(value):
    """What of an argument the policy may read: a tensor's type, a plain value."""
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dtype)
    if isinstance(value, (torch.SymInt, torch.SymFloat)):   # its trace value: a size
        return value.node.hint
    if isinstance(value, (bool, int, float, str, type(None), torch.dtype)):
        return value
    return type(value).__name__


@lru_cache(maxsize=4096)
def _policy(op, dtype: torch.dtype, treespec, signature: tuple):
    """Per flat argument: the type CUDA's autocast casts a tensor to (None: not cast);
    None for an operation it leaves as it is.  A ``dtype`` argument it sets (softmax's)
    shows as the cast the operation then makes of its input."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with _disable_current_modes():   # the trace's modes see none of this
        fake = FakeTensorMode()
        with fake:
            flat = [torch.empty((1,), dtype=s[1], device="cuda")
                    if isinstance(s, tuple) and s[:1] == ("tensor",) else s
                    for s in signature]
        args, kwargs = tree_unflatten(flat, treespec)
        stop = _Stop()
        try:
            with cuda_autocast_state(dtype), torch.no_grad(), fake, stop:
                op(*args, **kwargs)
        except _StopError:
            pass
        except Exception:  # noqa: BLE001 - past the casts: the one-element stand-ins'
            # shapes refused (conv2d checks them first); before any: CUDA refuses the
            # operation (a banned one), left as it is
            if not stop.casts:
                return None
    out = tuple(stop.casts.get(id(a)) if isinstance(a, torch.Tensor) else None
                for a in flat)
    return out if any(o is not None for o in out) else None


def policy(op, dtype: torch.dtype, args: tuple, kwargs: dict):
    """CUDA autocast's types for ``op`` called with ``args``: per flat argument the type
    to cast it to (or None), or None for none."""
    flat, spec = tree_flatten((args, kwargs))
    return _policy(op, dtype, spec, tuple(_signature(a) for a in flat))


def _overloads() -> list[tuple[str, bool]]:
    """Every operation either autocast has a kernel for, and whether CUDA's has (CUDA's
    to follow; the CPU's, where CUDA has none, to undo)."""
    out = []
    for n in torch._C._dispatch_get_all_op_names():
        cuda = torch._C._dispatch_has_kernel_for_dispatch_key(n, "AutocastCUDA")
        if cuda or torch._C._dispatch_has_kernel_for_dispatch_key(n, "AutocastCPU"):
            out.append((n, cuda))
    return out


def _op(name: str):
    namespace, rest = name.split("::")
    packet, _, overload = rest.partition(".")
    return getattr(getattr(getattr(torch.ops, namespace), packet), overload or "default")


@contextmanager
def cuda_autocast(dtype: torch.dtype):
    """Autocast on the CPU with CUDA's per-operation types (see the module's text)."""
    casts: dict = {}

    def cast(t: torch.Tensor, to: torch.dtype) -> torch.Tensor:
        if not (t.requires_grad and t.is_leaf):
            return t.to(to)
        key = (id(t), t._version, to)
        if key not in casts:
            casts[key] = (t, t.to(to))      # (t kept: its id stays its own)
        return casts[key][1]

    def kernel_for(op):
        def kernel(*args, **kwargs):
            with torch._C._ExcludeDispatchKeyGuard(_AUTOCAST_CPU):
                rule = policy(op, dtype, args, kwargs)
                if rule is not None:
                    flat, spec = tree_flatten((args, kwargs))
                    flat = [a if r is None or a.dtype == r else cast(a, r)
                            for a, r in zip(flat, rule)]
                    args, kwargs = tree_unflatten(flat, spec)
                return op(*args, **kwargs)
        return kernel

    library = torch.library.Library("aten", "IMPL")
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # "overriding a previously registered kernel"
            for name, cuda in _overloads():
                # CUDA's kernel followed; where CUDA has none, the CPU's is passed over,
                # and the operations inside a composite one meet autocast in their turn
                library.impl(name.split("::")[1],
                             kernel_for(_op(name)) if cuda else fallthrough_kernel,
                             "AutocastCPU")
        with torch.autocast("cpu", dtype=dtype):
            yield
    finally:
        library._destroy()
