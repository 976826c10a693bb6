"""Estimates kept on disk, keyed by the traced program itself.

Why the trace: what decides an estimate is the sequence of aten operations the model
runs (with their shapes, dtypes, arguments and the modules that ran them), the model's
parameters and buffers, and what symflop makes of them.  A key made of the model's
``repr`` and class sources misses a plain attribute that picks a path in ``forward``, a
config flag, an edited helper in another module, a method patched at run time; the
trace sees each of them, because it is what they changed.  Tracing is the cheap part of
an estimate (fake tensors: nothing is computed or allocated); costing the operations,
fitting fixed sizes and the FlopCounterMode column are what the cache saves.

The key holds: the engine's source, torch's version and CPU capability, the
catalogue's rules (their source files) and the loss, optimizer and schedule components
(their equations); the options of the call; and the trace, with every tensor identity
renumbered by first appearance (so that two traces of the same program give the same key).
"""

from __future__ import annotations

import hashlib
import inspect
from functools import lru_cache
from pathlib import Path

from symflop import cache
from symflop.estimate.calls import TensorRef


@lru_cache(maxsize=256)
def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class _Canon:
    """A trace's values as text, tensor identities numbered by first appearance."""

    def __init__(self):
        self.ids: dict = {}

    def _id(self, kind: str, value) -> int:
        return self.ids.setdefault((kind, value), len(self.ids))

    def __call__(self, v) -> str:
        if isinstance(v, TensorRef):
            return (f"T({self._id('k', v.key)},{self._id('s', v.storage)},{v.shape},"
                    f"{v.storage_elements},{v.itemsize},{v.dtype},{v.requires_grad},"
                    f"{v.parameter})")
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(self(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ",".join(f"{k}:{self(x)}" for k, x in sorted(v.items())) + "}"
        return repr(v)


def trace_digest(tr) -> str:
    """The digest of a trace: its operations, tensors, parameters, buffers and sizes."""
    canon = _Canon()
    h = hashlib.sha256()
    for call in tr.calls:
        h.update(f"{call.overload}|{call.module}|{call.module_type}|{canon(call.args)}|"
                 f"{canon(call.kwargs)}|{canon(call.outputs)}\n".encode())
    h.update(canon([tr.input, tr.output]).encode())
    h.update(repr((tr.parameters, tr.buffers, sorted(tr.hints.items()),
                   tr.specialized)).encode())
    h.update(canon(tr.module_inputs or {}).encode())
    return h.hexdigest()


def key(tr, parts: tuple, components: list, rules: dict) -> str | None:
    """The digest of everything an estimate depends on, or None (not cacheable: a rule
    whose source cannot be read)."""
    import torch

    from symflop.derive import fingerprint
    rule_files = {inspect.getsourcefile(f) for f in rules.values()}
    if None in rule_files:
        return None
    h = hashlib.sha256(cache.engine_fingerprint().encode())
    # the CPU's vector width decides some kernels' work (LayerNorm's Welford merges)
    h.update(f"torch {torch.__version__} {torch.backends.cpu.get_cpu_capability()} "
             f"{parts!r}".encode())
    for path in sorted(p for p in rule_files if p is not None):  # none is, from here
        h.update(path.encode() + _file_digest(path).encode())
    for c in components:
        h.update(fingerprint(c).encode())
    h.update(trace_digest(tr).encode())
    return h.hexdigest()


def load(digest: str | None):
    """The cached estimate, or None: a miss, and so is a payload that is not an estimate
    (written by another version, or damaged): it is derived again and stored anew."""
    from symflop.estimate.result import Estimate
    hit = None if digest is None else cache.load(f"estimate-{digest[:40]}", digest)
    return hit if isinstance(hit, Estimate) else None


def store(digest: str | None, est) -> None:
    if digest is not None:
        cache.store(f"estimate-{digest[:40]}", digest, est)
