"""Errors the user can act on; the CLI prints them as one line."""


class SymflopError(Exception):
    """Base class: anything the CLI reports as a clean one-line message."""


class ComponentError(SymflopError):
    """A component's equations are malformed (unknown tensor, bad index, ...)."""


class UsageError(SymflopError):
    """Bad user input: unknown component, malformed size, unknown convention."""


class InputError(SymflopError):
    """Bad runtime data passed to generated code: wrong shape, NaN, missing tensor."""
