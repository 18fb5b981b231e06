"""The grokking study's analysis of per-seed results: events, lead-lag, the reference shape, validity counts.

Every function reads the JSON-friendly records `studies.grokking.run_seed` returns and computes numbers only
(figures and the README are `studies.grokking_report`).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Optional

import numpy as np

from llc_training import leadlag

if TYPE_CHECKING:
    from studies.grokking import GrokConfig, GrokSetting

# The reference curve (Timaeus' example, published SGLD setting, 100 checkpoints every 250 steps)
REFERENCE = {"llc_start": 21.0, "llc_peak": 49.0, "llc_after": (22.0, 24.0), "peak_checkpoint": 10, "every": 250}
GROKKED_ACC = 0.9  # a seed "groks" when its test accuracy reaches this at some checkpoint


def _first(values, test) -> Optional[int]:
    return next((i for i, v in enumerate(values) if test(v)), None)


def events(r: dict) -> dict:
    """Turning points of both LLC curves and of the test loss (checkpoint indices, and training steps
    interpolated between checkpoints), accuracy crossings, grokked or not."""
    ev = {}
    for key, series in (("llc_local", r["local"]["llc/mean"]),
                        ("llc_published", r["published"]["llc/mean"] if r["published"] else None),
                        ("test_loss", r["test_loss"])):
        ev[key] = leadlag.event_steps(r["steps"], series) if series is not None else None
    acc = r["test_acc"]
    return {"events": ev, "test_acc_cross50": _first(acc, lambda a: a > 0.5),
            "train_acc_cross99": _first(r["train_acc"], lambda a: a > 0.99),
            "grokked": bool(max(acc) >= GROKKED_ACC), "final_test_acc": float(acc[-1]), "max_test_acc": float(max(acc))}


def lead_lag(results: list, cfg: GrokConfig) -> dict:
    """Event timing (per setting, LLC curve and event, Holm over all of them) and pooled pre-whitened CCFs."""
    tests = {}
    for st in cfg.settings:
        rs = [r for r in results if r["setting"] == st.name]
        for curve in ("llc_local", "llc_published") if st.published else ("llc_local",):
            for event in ("turn", "half_decline"):
                x = [r["events"][curve][event] for r in rs]
                y = [r["events"]["test_loss"][event] for r in rs]
                res = leadlag.event_lead(x, y)
                res["seeds"] = [r["seed"] for r in rs]
                tests[f"{st.name}/{curve}/{event}"] = res
    keys = list(tests)
    adj = leadlag.holm([tests[k]["p"] for k in keys])
    for k, a in zip(keys, adj):
        tests[k]["p_holm"] = a
    ccfs = {}
    for st in cfg.settings:
        even = set(st.even_steps())
        pairs = []
        for r in (r for r in results if r["setting"] == st.name):
            idx = [i for i, s in enumerate(r["steps"]) if s in even]
            llc = np.asarray(r["local"]["llc/mean"], float)[idx]
            tl = np.log10(np.asarray(r["test_loss"], float)[idx])
            if np.isfinite(llc).all() and len(idx) > 2 * cfg.max_lag + 6:
                pairs.append((llc, tl))
        if pairs:
            c = leadlag.pooled_ccf(pairs, cfg.max_lag, seed=cfg.seed)
            c["lag_steps"] = st.steps // st.n_even
            ccfs[st.name] = c
        else:
            ccfs[st.name] = {"note": "series too short for the cross-correlation at this scale", "runs": 0}
    return {"events": tests, "ccf": ccfs, "num_event_tests": len(keys),
            "method": "per-seed event timing (turning point = peak followed by a >= 30% fall, and half-decline, "
                      "of the 3-point running median), mean step difference across seeds with a t-interval, "
                      "Holm over all event tests; plus the pre-whitened cross-correlation (differenced, AR(p) by "
                      "AIC) of the local LLC and log10 test loss on the even grid, pooled over seeds by Fisher z, "
                      "Holm over lags"}


def reference_shape(r: dict) -> dict:
    """The published-setting curve against the reference: LLC at step 250, at its peak, at the end."""
    llc = r["published"]["llc/mean"]
    steps = r["steps"]
    i250 = steps.index(REFERENCE["every"]) if REFERENCE["every"] in steps else 0
    peak = r["events"]["llc_published"]["index"]["peak"]
    final = float(np.nanmean(llc[-3:]))
    turn = r["events"]["test_loss"]["turn"]
    return {"llc_at_250": llc[i250], "llc_peak": llc[peak], "llc_peak_step": steps[peak], "llc_final": final,
            "peak_before_test_turn": turn is not None and r["events"]["llc_published"]["peak"] < turn,
            "decline_from_peak": (llc[peak] - final) / llc[peak] if llc[peak] else math.nan}


def validity_summary(results: list) -> dict:
    """How many points of each curve passed the estimator's verdict, and the auto_llc checks."""
    out = {}
    for curve in ("published", "local"):
        have = [r for r in results if r[curve]]
        flags = [t for r in have for t in r[curve]["trustworthy"]]
        reasons = {}
        for r in have:
            for w in r[curve]["warnings"]:
                for reason in w:
                    key = _reason_kind(reason)
                    reasons[key] = reasons.get(key, 0) + 1
        out[curve] = {"points": len(flags), "trustworthy": int(sum(flags)), "reasons": reasons}
    autos = [dict(a, setting=r["setting"], seed=r["seed"], where=w) for r in results for w, a in r["auto"].items()]
    out["auto"] = [{k: a[k] for k in ("setting", "seed", "where", "step", "llc_mean", "llc_std", "valid", "reasons",
                                       "checks", "grad_norm", "train_acc", "step_change", "sgld_mode")}
                   | {"sgld": [s["llc_mean"] for s in a["sgld"]], "bounds": a["auto"]["bounds"],
                      "draw_acc_min": a["auto"]["draw_metric_min"]} for a in autos]
    return out


def _reason_kind(reason: str) -> str:
    """The kind of a verdict reason, its numbers replaced by # ("R-hat # above #: the chains disagree")."""
    return re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", reason.split("(")[0].split(": the")[0]).strip()


def seed_row(r: dict) -> dict:
    e = r["events"]
    s = r["steps"]

    def at(curve, kind):
        """The event's checkpoint index, that checkpoint's step, and the interpolated step."""
        if e.get(curve) is None or e[curve]["index"][kind] is None:
            return None
        idx = e[curve]["index"][kind]
        return {"checkpoint": idx, "checkpoint_step": s[idx], "step": e[curve][kind]}

    def cross(idx):
        return None if idx is None else {"checkpoint": idx, "checkpoint_step": s[idx], "step": s[idx]}

    return {"grokked": r["grokked"], "final_test_acc": r["final_test_acc"], "max_test_acc": r["max_test_acc"],
            "llc_local_peak": at("llc_local", "peak"), "llc_local_turn": at("llc_local", "turn"),
            "llc_published_peak": at("llc_published", "peak"), "test_loss_turn": at("test_loss", "turn"),
            "test_loss_peak": at("test_loss", "peak"), "llc_local_half_decline": at("llc_local", "half_decline"),
            "test_loss_half_decline": at("test_loss", "half_decline"),
            "test_acc_cross50": cross(r["test_acc_cross50"]), "train_acc_cross99": cross(r["train_acc_cross99"]),
            "llc_local_final": r["local"]["llc/mean"][-1],
            "llc_published_final": r["published"]["llc/mean"][-1] if r["published"] else None,
            "grad_norm_final": r["grad_norm_regularised"][-1], "num_checkpoints": len(s),
            "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"], "num_params": r["num_params"]}


def setting_summary(results: list, st: GrokSetting) -> dict:
    rs = [r for r in results if r["setting"] == st.name]
    return {"seeds": [r["seed"] for r in rs], "grokked": [r["seed"] for r in rs if r["grokked"]],
            "num_grokked": sum(r["grokked"] for r in rs), "lr": st.lr, "weight_decay": st.weight_decay,
            "steps": st.steps, "num_checkpoints": len(st.checkpoints())}
