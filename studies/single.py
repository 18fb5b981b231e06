"""One registered program through the complexity study's validity protocol (what the per-program notebooks call)."""

from __future__ import annotations

from rasp_models import registry
from studies.complexity import PRESETS
from studies.validity import validate


def study_program(name: str, scale: str = "quick") -> dict:
    """The validity row of one program (base estimate, the five checks, verdict) at the study's `scale` settings."""
    return validate(registry.get(name), PRESETS[scale].validity)
