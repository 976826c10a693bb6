"""References for the regularizers."""

from __future__ import annotations

REFERENCES: dict = {}
