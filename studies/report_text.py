"""Small helpers for generated READMEs: numbers that never print as a bare None or nan, and the dirty-tree
warning."""

from __future__ import annotations

import math


def finite(v) -> bool:
    """True for an int or float that is neither nan nor infinite (False for None, strings, ...)."""
    return isinstance(v, (int, float)) and math.isfinite(v)


def dirty_warning() -> str:
    return ("**Warning: these results were generated from a working tree with uncommitted changes (config.json "
            "says `dirty`: true); regenerate them from a clean tree before committing.**")


def fmt(x, spec: str = ".3g", missing: str = "n/a (not measured)") -> str:
    """`format(x, spec)`, or words instead of None / nan / inf."""
    if x is None:
        return missing
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    if math.isnan(v):
        return "n/a (undefined)"
    if math.isinf(v):
        return "infinite"
    return format(v, spec)


def readable(x: float) -> str:
    """A positive count or ratio as a reader takes it in: 0.31, 480, 1.4e+06."""
    return f"{x:.2g}" if x < 10 else f"{x:.0f}" if x < 1e4 else f"{x:.1e}"


def fmt_ci(ci, spec: str = ".3g") -> str:
    """[lo, hi] as text, or words when the interval is not available."""
    if not ci or any(c is None or (isinstance(c, float) and math.isnan(c)) for c in ci):
        return "n/a (too few runs)"
    return f"[{format(float(ci[0]), spec)}, {format(float(ci[1]), spec)}]"


def took(m: dict) -> str:
    """How long a study took: wall time, and the CPU time of its jobs (what an idle machine would need, divided by
    the workers), since wall time on a shared machine says little."""
    from studies.common import scale

    w = max(int(m.get("workers", 1)), 1)
    cpu = m.get("cpu_seconds_jobs")
    text = f"The study took {m['seconds'] / 60:.1f} minutes of wall time ({scale()} scale, {w} worker" \
           f"{'s' if w > 1 else ''})"
    if cpu:
        text += (f"; its jobs used {cpu / 60:.1f} CPU-minutes, about {cpu / 60 / w:.1f} minutes on {w} idle "
                 f"core{'s' if w > 1 else ''}")
    return text + "."
