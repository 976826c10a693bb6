"""Regularization (section "Regularization" of the reference document)."""

from __future__ import annotations

COMPONENTS: dict = {}
