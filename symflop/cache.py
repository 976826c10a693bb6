"""On-disk cache of derivations, keyed by the component's equations and the engine.

A cache file holds the key it was written for and a SHA-256 of its payload.  A
file whose key differs (stale: the component or the engine changed) or whose
payload does not match its digest or does not load (corrupt) is ignored and
rebuilt, never trusted.  Files are written to a temporary name and renamed, so
an interrupted write leaves no half-written entry.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from functools import lru_cache
from pathlib import Path

_FORMAT = 1


def cache_dir() -> Path | None:
    if os.environ.get("SYMFLOP_NO_CACHE", "") not in ("", "0"):
        return None
    root = os.environ.get("SYMFLOP_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symflop"


@lru_cache(maxsize=1)
def engine_fingerprint() -> str:
    """Digest of the engine's own source: a changed engine invalidates every entry."""
    import sys

    import sympy
    h = hashlib.sha256(f"format {_FORMAT} sympy {sympy.__version__} "
                       f"python {sys.version_info[:2]}".encode())
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _path(directory: Path, name: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
    return directory / f"{safe}.pkl"


def load(name: str, key: str):
    """The cached object for ``name`` if its entry was written for ``key``; else None."""
    directory = cache_dir()
    if directory is None:
        return None
    path = _path(directory, name)
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f)  # noqa: S301 - our own cache directory
        if entry.get("key") != key:
            return None
        payload = entry["payload"]
        if hashlib.sha256(payload).hexdigest() != entry["digest"]:
            return None
        return pickle.loads(payload)  # noqa: S301 - digest verified above
    except Exception:  # noqa: BLE001 - any unreadable entry is rebuilt, never trusted
        return None


def store(name: str, key: str, obj) -> None:
    directory = cache_dir()
    if directory is None:
        return
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    entry = {"key": key, "digest": hashlib.sha256(payload).hexdigest(), "payload": payload}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".pkl")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, _path(directory, name))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass  # a read-only or full cache directory only costs speed
