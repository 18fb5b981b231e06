"""Statistics of the ablation study: within programs, and pooled only stratified by program.

Programs differ in size (their LLCs span 10-100), so a correlation over rows pooled across programs mostly measures
which program a row comes from. Every statistic here is computed within one program; the pooled versions combine
the within-program ones:
  * `spearman`: Spearman's rho of one program's rows with a bootstrap 95% interval (rows resampled), and the exact
    or asymptotic p-value scipy gives;
  * `stratified_spearman`: the within-program rhos averaged with weights n_p - 1 (programs with fewer than 3 usable
    rows or a constant variable are left out and listed), a 95% interval from a stratified bootstrap (rows resampled
    within each program), and a p-value from a stratified permutation test (y permuted within each program);
  * `versus_controls`: a component's value against its own random controls (difference from their mean, z, how
    many controls lie below, and the two-sided rank p-value (1 + #controls at least as far from their mean) /
    (k + 1)); `sign_test` counts components below their controls' mean, pooled over programs (each comparison is
    already within one program).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy import stats


def _clean(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _rho(x, y) -> float:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(stats.spearmanr(x, y)[0])


def spearman(x, y, reps: int = 2000, seed: int = 0) -> dict:
    """Spearman's rho of the finite pairs with a bootstrap 95% interval; `reason` says why a value is missing."""
    x, y = _clean(x, y)
    out = {"rho": math.nan, "ci95": [math.nan, math.nan], "p": math.nan, "n": int(len(x)), "reason": ""}
    if len(x) < 4:
        out["reason"] = f"only {len(x)} rows (need 4)"
        return out
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        out["reason"] = "one variable is constant over the rows"
        return out
    res = stats.spearmanr(x, y)
    out["rho"], out["p"] = float(res[0]), float(res[1])
    rng = np.random.default_rng(seed)
    boots = [_rho(x[i], y[i]) for i in (rng.integers(0, len(x), len(x)) for _ in range(reps))]
    boots = [b for b in boots if math.isfinite(b)]
    if len(boots) >= reps // 2:
        out["ci95"] = [float(v) for v in np.percentile(boots, [2.5, 97.5])]
    else:
        out["reason"] = "too few bootstrap resamples with two distinct values"
    return out


def stratified_spearman(x, y, groups, reps: int = 2000, seed: int = 0, min_rows: int = 3) -> dict:
    """Within-group Spearman rhos combined (module doc): {"rho", "ci95", "p_perm", "n", "groups", "per_group",
    "left_out", "reason"}."""
    x, y, g = np.asarray(x, float), np.asarray(y, float), np.asarray(groups)
    ok = np.isfinite(x) & np.isfinite(y)
    parts, left_out, per_group = [], {}, {}
    for name in dict.fromkeys(g.tolist()):
        sel = ok & (g == name)
        xs, ys = x[sel], y[sel]
        if len(xs) < min_rows:
            left_out[name] = f"{len(xs)} usable rows"
            continue
        if np.ptp(xs) == 0 or np.ptp(ys) == 0:
            left_out[name] = "a variable is constant"
            continue
        parts.append((xs, ys))
        per_group[name] = {"rho": _rho(xs, ys), "n": int(len(xs))}
    out = {"rho": math.nan, "ci95": [math.nan, math.nan], "p_perm": math.nan,
           "n": int(sum(len(p[0]) for p in parts)), "groups": len(parts), "per_group": per_group,
           "left_out": left_out, "reason": ""}
    if not parts:
        out["reason"] = "no program has enough varying rows"
        return out

    def combined(pairs) -> float:
        rs = [(_rho(a, b), len(a) - 1) for a, b in pairs]
        rs = [(r, w) for r, w in rs if math.isfinite(r)]
        return float(sum(r * w for r, w in rs) / sum(w for _, w in rs)) if rs else math.nan

    out["rho"] = combined(parts)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(reps):
        res = []
        for a, b in parts:
            i = rng.integers(0, len(a), len(a))
            res.append((a[i], b[i]))
        boots.append(combined(res))
    boots = [v for v in boots if math.isfinite(v)]
    if boots:
        out["ci95"] = [float(v) for v in np.percentile(boots, [2.5, 97.5])]
    obs = abs(out["rho"])
    hits = sum(abs(combined([(a, rng.permutation(b)) for a, b in parts])) >= obs - 1e-12 for _ in range(reps))
    out["p_perm"] = float((1 + hits) / (reps + 1))
    return out


def versus_controls(value: float, controls) -> dict:
    """A component's value against its controls' values (module doc)."""
    c = np.asarray([v for v in controls if v is not None and math.isfinite(v)], float)
    out = {"controls_mean": math.nan, "controls_sd": math.nan, "diff": math.nan, "z": math.nan,
           "below": 0, "k": int(len(c)), "p_rank": math.nan}
    if not len(c) or value is None or not math.isfinite(value):
        return out
    mean = float(c.mean())
    out.update(controls_mean=mean, diff=float(value - mean), below=int((c < value).sum()))
    if len(c) > 1:
        sd = float(c.std(ddof=1))
        out["controls_sd"] = sd
        out["z"] = float((value - mean) / sd) if sd > 0 else math.nan
        far = int((np.abs(c - mean) >= abs(value - mean)).sum())
        out["p_rank"] = float((1 + far) / (len(c) + 1))
    return out


def sign_test(diffs) -> dict:
    """How many differences are negative, positive, zero; a two-sided binomial test on the nonzero ones."""
    d = np.asarray([v for v in diffs if v is not None and math.isfinite(v)], float)
    neg, pos = int((d < 0).sum()), int((d > 0).sum())
    p = float(stats.binomtest(neg, neg + pos, 0.5).pvalue) if neg + pos else math.nan
    return {"negative": neg, "positive": pos, "zero": int((d == 0).sum()), "p": p}


def fmt_rho(s: Optional[dict]) -> str:
    """rho with its interval, or why there is none."""
    if not s or not math.isfinite(s.get("rho", math.nan)):
        return "n/a (" + ((s or {}).get("reason") or "not computed") + ")"
    ci = s.get("ci95", [math.nan, math.nan])
    ci_txt = f"[{ci[0]:.2f}, {ci[1]:.2f}]" if all(math.isfinite(v) for v in ci) else "interval n/a"
    extra = f", p = {s['p_perm']:.2g} (stratified permutation)" if "p_perm" in s else ""
    return f"{s['rho']:.2f} {ci_txt}, n = {s['n']}{extra}"


COMPARED = {"a": "llc_a", "b": "llc_b", "c": "llc_c", "acc_drop": "acc_drop", "func_change": "func_change",
            "acc_ft": "acc_ft"}


def versus_controls_rows(rows: list[dict]) -> None:
    """In place: each zero-ablated component row gets, per compared quantity q present on its controls,
    `controls_mean_q`, `controls_sd_q`, `effect_q` (component minus the controls' mean), `z_q`, `below_q` (controls
    below the component) and `p_rank_q` (`versus_controls`)."""
    for r in rows:
        if r["role"] != "component" or r.get("mode") != "zero":
            continue
        ctrl = [c for c in rows if c["role"] == "control" and c["component"] == r["component"]]
        for q, key in COMPARED.items():
            vals = [c[key] for c in ctrl if key in c]
            if key not in r or not vals:
                continue
            v = versus_controls(r[key], vals)
            r.update({f"controls_mean_{q}": v["controls_mean"], f"controls_sd_{q}": v["controls_sd"],
                      f"effect_{q}": v["diff"], f"z_{q}": v["z"], f"below_{q}": v["below"],
                      f"p_rank_{q}": v["p_rank"]})


def study_statistics(tables: dict, reps: int) -> dict:
    """Within-program statistics, pooled ones stratified by program, and validity counts of the ablation study's
    tables (program -> rows), with `reps` bootstrap and permutation resamples."""
    per_program, pooled_rows = {}, []
    for program, rows in tables.items():
        zero = [r for r in rows if r.get("mode") == "zero" and r["role"] != "intact"]
        comp = [r for r in zero if r["role"] == "component"]
        s = {
            "effect_a_vs_acc_drop": spearman([r.get("effect_a") for r in comp], [r.get("acc_drop") for r in comp],
                                                   reps),
            "delta_a_vs_acc_drop": spearman([r.get("delta_a") for r in zero], [r.get("acc_drop") for r in zero],
                                                  reps),
            "delta_a_vs_func_change": spearman([r.get("delta_a") for r in zero],
                                                     [r.get("func_change") for r in zero], reps),
            "refined_vs_acc_drop": spearman([r.get("llc_c") for r in zero if "llc_c" in r],
                                                  [r.get("acc_drop") for r in zero if "llc_c" in r], reps),
            "components": len(comp), "controls": sum(r["role"] == "control" for r in zero),
        }
        per_program[program] = s
        pooled_rows += [(program, r) for r in zero]
    g = [p for p, _ in pooled_rows]
    col = lambda key: [r.get(key, math.nan) for _, r in pooled_rows]  # noqa: E731
    comp_rows = [(p, r) for p, r in pooled_rows if r["role"] == "component"]
    ccol = lambda key: [r.get(key, math.nan) for _, r in comp_rows]  # noqa: E731
    ok_rows = [(p, r) for p, r in pooled_rows if r.get("ok_a")]
    pooled = {
        "delta_a_vs_acc_drop": stratified_spearman(col("delta_a"), col("acc_drop"), g, reps),
        "delta_a_vs_func_change": stratified_spearman(col("delta_a"), col("func_change"), g, reps),
        "delta_a_vs_acc_drop_valid_only": stratified_spearman(
            [r.get("delta_a") for _, r in ok_rows], [r.get("acc_drop") for _, r in ok_rows], [p for p, _ in ok_rows],
            reps),
        "effect_a_vs_acc_drop": stratified_spearman(ccol("effect_a"), ccol("acc_drop"),
                                                          [p for p, _ in comp_rows], reps),
        "refined_vs_acc_drop": stratified_spearman(ccol("llc_c"), ccol("acc_drop"), [p for p, _ in comp_rows],
                                                         reps),
        "components_below_controls_a": sign_test(ccol("effect_a")),
        "components_below_controls_acc": sign_test([-v for v in ccol("effect_acc_drop")]),
    }
    validity = {}
    for q in ("intact", "a", "b", "c"):
        for role in ("intact",) if q == "intact" else ("component", "control"):
            vals = [r[f"ok_{q}"] for rows in tables.values() for r in rows if r["role"] == role and f"ok_{q}" in r]
            if vals:
                validity[f"{q}/{role}"] = {"ok": int(sum(vals)), "total": len(vals)}
    return {"per_program": per_program, "pooled_stratified": pooled, "validity": validity}
