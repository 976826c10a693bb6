"""The cost of one training step of a torch model (``symflop estimate``); needs torch."""

from symflop.estimate.calls import FREE, OpCall, TensorRef, Unknown, Use

__all__ = ["FREE", "OpCall", "TensorRef", "Unknown", "Use", "estimate"]


def estimate(*args, **kwargs):
    """See ``symflop.estimate.step.estimate`` (imports torch on first use)."""
    from symflop.estimate.step import estimate as run
    return run(*args, **kwargs)
