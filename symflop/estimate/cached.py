"""Estimates kept on disk, keyed by everything that decides them.

The key holds: the engine's source, torch's version, the catalogue's rules and the
loss, optimizer and schedule components (their equations); the model's structure and
settings (``repr``, every parameter's and buffer's name, shape, dtype and
``requires_grad``) and the source files of every module class it is made of (a
changed ``forward`` is a changed file); the input's shape, dtype and trace sizes, the
convention.  A model whose code cannot be read (a class typed into a notebook), or
that has hooks or a ``forward`` replaced on an instance, is never cached.
"""

from __future__ import annotations

import hashlib
import inspect
from functools import lru_cache
from pathlib import Path

from symflop import cache


@lru_cache(maxsize=256)
def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _class_files(model) -> list[str] | None:
    import torch
    files: set[str] = set()
    for m in model.modules():
        if "forward" in vars(m) or m._forward_hooks or m._forward_pre_hooks \
                or m._backward_hooks:
            return None
        for cls in type(m).__mro__:
            if cls in (torch.nn.Module, object):
                break
            try:
                files.add(inspect.getsourcefile(cls))
            except (TypeError, OSError):
                return None
    if None in files:
        return None
    return sorted(files)


def key(model, parts: tuple, components: list, rules: dict) -> str | None:
    """The digest of everything an estimate depends on, or None (not cacheable)."""
    import torch

    from symflop.derive import fingerprint
    files = _class_files(model)
    rule_files = {inspect.getsourcefile(f) for f in rules.values()}
    if files is None or None in rule_files:
        return None
    h = hashlib.sha256(cache.engine_fingerprint().encode())
    h.update(f"torch {torch.__version__} {parts!r}".encode())
    for path in sorted(rule_files) + files:
        h.update(path.encode() + _file_digest(path).encode())
    for c in components:
        h.update(fingerprint(c).encode())
    h.update(repr(model).encode())
    for n, t in list(model.named_parameters()) + list(model.named_buffers()):
        h.update(f"{n} {tuple(t.shape)} {t.dtype} {t.requires_grad}".encode())
    return h.hexdigest()


def load(digest: str | None):
    return None if digest is None else cache.load(f"estimate-{digest[:40]}", digest)


def store(digest: str | None, est) -> None:
    if digest is not None:
        cache.store(f"estimate-{digest[:40]}", digest, est)
