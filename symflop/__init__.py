"""symflop: gradients, operation counts, memory and code, derived from SymPy equations."""

from symflop import api  # the functions a notebook calls
from symflop.core.functions import isinf, isnan, log1p, sigmoid, softplus, uniform
from symflop.core.model import Component, Fact, Role, Tensor, total
from symflop.cost.conventions import CONVENTIONS, Convention, get_convention
from symflop.derive import Derivation, derive
from symflop.errors import ComponentError, InputError, SymflopError, UsageError

__all__ = [
    "CONVENTIONS", "Component", "api", "ComponentError", "Convention", "Derivation", "Fact",
    "InputError", "Role", "SymflopError", "Tensor", "UsageError", "derive", "get_convention",
    "isinf", "isnan", "log1p", "sigmoid", "softplus", "total", "uniform",
]
