"""The backends by name: the array namespaces generated code runs on (``xp.exp``,
``xp.sum``, ...), as ``get_backend`` and ``symflop validate --backend`` know them.

The same generated source runs on NumPy arrays and on torch tensors on any device.
What every backend offers is ``symflop.lower.backend.Backend``; a new backend is a
module of its own and one line of ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Callable

from symflop.errors import UsageError
from symflop.lower.backend import Backend
from symflop.lower.numpy_backend import NumpyBackend
from symflop.lower.torch_backend import TorchBackend
from symflop.lower.torch_compiled_backend import compiled_torch_backend

# name -> the backend made from a seed (None: unseeded random draws)
BACKENDS: dict[str, Callable[[int | None], Backend]] = {
    "numpy": NumpyBackend,
    "torch": TorchBackend,
    "torch-compiled": compiled_torch_backend,
}


def get_backend(name_or_backend: str | Backend, seed: int | None = None) -> Backend:
    """A backend by name (``numpy``, ``torch``, ``torch-compiled``); ``seed`` fixes its
    random draws.  Without a seed, the compiled backend is one object, so that what
    torch.compile guarded on stays the same from call to call."""
    if not isinstance(name_or_backend, str):
        return name_or_backend
    make = BACKENDS.get(name_or_backend)
    if make is None:
        raise UsageError(f"unknown backend {name_or_backend!r} "
                         f"(known: {', '.join(BACKENDS)})")
    return make(seed)
