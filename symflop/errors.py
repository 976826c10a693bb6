"""Errors the user can act on; the CLI prints them as one line."""


class SymflopError(Exception):
    """Base class: anything the CLI reports as a clean one-line message."""


class ComponentError(SymflopError):
    """A component's equations are malformed (unknown tensor, bad index, ...)."""


class UsageError(SymflopError):
    """Bad user input: unknown component, malformed size, unknown convention."""


class InputError(SymflopError):
    """Bad runtime data passed to generated code: wrong shape, NaN, missing tensor."""


# How to install torch, said the same way by every command that needs it: the README's
# CPU build first (a plain "torch" requirement pulls a CUDA build of several GB).
INSTALL_TORCH = ("python -m pip install torch==2.13.0 && python -m pip install -e '.[torch]' "
                 "in the repository (any torch >= 2.1 works)")


def needs_torch(what: str) -> UsageError:
    """The one-line error of a command that needs torch where it is not installed."""
    return UsageError(f"{what} needs torch: {INSTALL_TORCH}")
