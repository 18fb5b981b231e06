"""The evidence behind question 1's "why not": what each program without a valid LLC has been measured to need.

`studies.q1_answer` joins it into its table and answer. It reads committed folders only:
  * `sharpness_ladder`: a program the table left unestimated may have a single estimate at the table's sharpness;
  * `estimate_cost`: the projected CPU time of the five checks;
  * `landscape_probe`: the step size `auto_llc` tunes in whitened coordinates. A chain crosses the whitened range
    (scale 1) in about 1 / step leapfrog steps, so the probe says how many gradient evaluations one crossing costs
    against the table's budget per chain, for valid programs and the others alike.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional

from studies.report_text import finite, readable


def _table_sharpness_rungs(source: Path, table_sharpness: dict) -> dict:
    """program -> its estimated `sharpness_ladder` rung at the table's own sharpness (a ladder keeps the other knob
    at the table's value, so that rung compiles the table's weights)."""
    path = source / "sharpness_ladder" / "metrics.json"
    if not path.exists():
        return {}
    out = {}
    for r in json.loads(path.read_text())["rows"]:
        if r.get("estimated") and r["value"] == table_sharpness.get(r["knob"]):
            out.setdefault(r["program"], r)
    return out


def add_evidence(rows: list, source: Path, table_sharpness: dict) -> None:
    """In place: a program with no estimate in the table or its escalation runs gets, after its reason, the single
    estimate at the table's sharpness from `sharpness_ladder` where there is one, and the projected cost of its
    five checks from `estimate_cost` where that was measured. Every row gets the probe's `probe_step` and
    `crossing_steps`, and `estimate_cost`'s CPU seconds of one gradient evaluation of all chains on the table's data,
    `seconds_per_eval` (nan where not measured)."""
    rungs = _table_sharpness_rungs(source, table_sharpness)
    cost_path = source / "estimate_cost" / "metrics.json"
    cost = json.loads(cost_path.read_text())["programs"] if cost_path.exists() else {}
    probe = probe_steps(source)
    for r in rows:
        step = probe.get(r["program"], math.nan)
        r["probe_step"], r["crossing_steps"] = step, 1.0 / step if finite(step) and step > 0 else math.nan
        r["seconds_per_eval"] = float(cost.get(r["program"], {}).get("cpu_seconds_per_eval_n", math.nan))
        if finite(r["llc_mean"]):
            continue
        notes = []
        rung = rungs.get(r["program"])
        if rung is not None:
            verdict = ("passed basin, bounds and R-hat" if rung["valid"] else f"not valid: {rung['reason']}")
            notes.append(f"at the table's sharpness one estimate (sharpness_ladder) gives LLC {rung['llc_mean']:.1f} "
                         f"+- {rung['llc_std']:.1f}, {verdict}; 4x-data and reparametrisation checks not run")
        if r["program"] in cost:
            notes.append(f"the five checks would take about {cost[r['program']]['projected_hours']:.2g} h of one "
                         "core (estimate_cost)")
        if notes:
            r["reason"] = "; ".join([r["reason"], *notes]) if r["reason"] else "; ".join(notes)


def probe_steps(source: Path) -> dict:
    """program -> the step size `auto_llc` tuned in whitened units in `landscape_probe` ({} without the folder)."""
    path = source / "landscape_probe" / "metrics.json"
    if not path.exists():
        return {}
    return {p: float(r["step_size"]) for p, r in json.loads(path.read_text())["programs"].items()}


def crossing_line(rows: list, budget: int) -> Optional[str]:
    """The answer line that sets each program's crossing cost (landscape probe) against the budget per chain and
    against the valid programs' costs; None where no valid program was probed."""
    probed = [r for r in rows if finite(r.get("crossing_steps"))]
    ok = [r for r in probed if r["valid"]]
    if not ok:
        return None
    top = max(r["crossing_steps"] for r in ok)
    bad = sorted((r for r in probed if not r["valid"]), key=lambda r: r["crossing_steps"])
    beyond = [r for r in bad if r["crossing_steps"] > budget]
    costlier = [r for r in bad if top < r["crossing_steps"] <= budget]
    within = [r for r in bad if r["crossing_steps"] <= top]
    missing = [r["program"] for r in rows if not finite(r.get("crossing_steps"))]

    def costs(rs):
        return ", ".join(f"{r['program']} {readable(r['crossing_steps'])}" for r in rs)

    line = ("- **What the sampler meets (landscape probe)**: one crossing of the whitened range costs about 1 / "
            "(the step `auto_llc` tunes) leapfrog steps; the valid programs need "
            f"{_span([r['crossing_steps'] for r in ok])}, against the table's budget of {budget} gradient "
            "evaluations per chain")
    if beyond:
        line += (f"; {costs(beyond)}: one crossing costs {_span([r['crossing_steps'] / budget for r in beyond])} x "
                 "the whole budget, so their chains cannot cross the range even once and the walls, not the number "
                 "of parameters, put a valid estimate out of reach at this budget")
        fewest = min(budget / r["crossing_steps"] for r in ok)  # crossings per budget, the valid programs' least
        timed = [r for r in beyond if finite(r.get("seconds_per_eval"))]
        if timed:
            line += (f"; given as many crossings as the valid program with the fewest had ({fewest:.1f} in the "
                     "budget), the base estimate alone would take about " + ", ".join(
                         f"{r['program']} {readable(fewest * r['crossing_steps'] * r['seconds_per_eval'] / 3600)}"
                         for r in timed) + " h of one core (estimate_cost's time per gradient evaluation)")
    if costlier:
        line += (f"; {costs(costlier)}: more than every valid program but within the budget, so a larger budget "
                 f"may make {'it' if len(costlier) == 1 else 'them'} valid")
    if within:
        line += (f"; {costs(within)}: no more than a valid program, so the walls do not explain their verdict "
                 "(see their reasons)")
    if missing:
        line += f"; not probed: {', '.join(missing)}"
    return line + "."


def _span(xs: list) -> str:
    lo, hi = readable(min(xs)), readable(max(xs))
    return lo if lo == hi else f"{lo}-{hi}"
