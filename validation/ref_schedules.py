"""References for the learning-rate schedules."""

from __future__ import annotations

REFERENCES: dict = {}
