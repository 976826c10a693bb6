"""Learning-rate schedules (section "Learning-rate schedules" of the reference document)."""

from __future__ import annotations

COMPONENTS: dict = {}
