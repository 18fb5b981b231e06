"""Statistics, tables and figures of the complexity study (question 1). Only valid estimates enter statistics."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from studies.traces import write_diagnostics  # noqa: E402
from studies.validity import table_row  # noqa: E402

DESCRIPTORS = ("num_params", "layers", "heads", "mlp_width", "residual_width", "primitives")


def bootstrap_ci(x, stat, reps: int = 2000, seed: int = 0) -> list:
    """95% percentile bootstrap interval of `stat` over resampled rows of x (an array or a tuple of arrays)."""
    rng = np.random.default_rng(seed)
    arrays = x if isinstance(x, tuple) else (x,)
    n = len(arrays[0])
    if n < 3:
        return [math.nan, math.nan]
    vals = []
    for _ in range(reps):
        i = rng.integers(0, n, n)
        v = stat(*(a[i] for a in arrays))
        if np.isfinite(v):
            vals.append(v)
    return [float(v) for v in np.percentile(vals, [2.5, 97.5])] if vals else [math.nan, math.nan]


def _spearman(x, y) -> float:
    if len(set(np.round(x, 12))) < 2 or len(set(np.round(y, 12))) < 2:
        return math.nan
    return float(stats.spearmanr(x, y)[0])


def table_statistics(rows: list) -> dict:
    """Q1 in its sharp form on the valid programs: LLC / (rank/2), LLC vs rank/2, descriptors, SelectorWidth."""
    valid = [r for r in rows if r["valid"]]
    out: dict = {"num_valid": len(valid), "valid_programs": [r["program"] for r in valid]}
    if len(valid) < 3:
        out["note"] = "fewer than 3 valid programs: no statistics"
        return out
    llc = np.array([r["base"]["llc_mean"] for r in valid])
    half = np.array([r["base"]["bounds"]["half_rank"] for r in valid])
    ratio = llc / half
    out["ratio_llc_over_half_rank"] = {"mean": float(ratio.mean()), "ci95": bootstrap_ci(ratio, np.mean),
                                       "min": float(ratio.min()), "max": float(ratio.max())}
    out["spearman_llc_vs_half_rank"] = {"rho": _spearman(half, llc), "ci95": bootstrap_ci((half, llc), _spearman)}
    resid = llc - half
    out["llc_minus_half_rank"] = {"mean": float(resid.mean()), "ci95": bootstrap_ci(resid, np.mean)}
    out["spearman_with_descriptors"] = {}
    for d in DESCRIPTORS:
        x = np.array([r["descriptors"][d] for r in valid], dtype=float)
        out["spearman_with_descriptors"][d] = {
            "llc": {"rho": _spearman(x, llc), "ci95": bootstrap_ci((x, llc), _spearman)},
            "llc_over_half_rank": {"rho": _spearman(x, ratio), "ci95": bootstrap_ci((x, ratio), _spearman)}}
    sw = np.array([r["descriptors"]["selector_width"] > 0 for r in valid])
    if sw.sum() >= 2 and (~sw).sum() >= 2:
        test = stats.mannwhitneyu(ratio[sw], ratio[~sw], alternative="two-sided")
        out["selector_width"] = {"n_with": int(sw.sum()), "n_without": int((~sw).sum()),
                                 "ratio_with": float(np.median(ratio[sw])), "ratio_without": float(np.median(ratio[~sw])),
                                 "mannwhitney_p": float(test.pvalue)}
    else:
        out["selector_width"] = {"n_with": int(sw.sum()), "n_without": int((~sw).sum()),
                                 "note": "too few valid programs on one side for a test"}
    return out


def ladder_statistics(rungs: list) -> dict:
    """Per ladder: per rung the mean LLC over seeds with a t interval, and trend tests over all valid draws."""
    out = {}
    for ladder in dict.fromkeys(r["ladder"] for r in rungs):
        rs = [r for r in rungs if r["ladder"] == ladder]
        per_rung = []
        for k in sorted({r["rung"] for r in rs}):
            at = [r for r in rs if r["rung"] == k]
            ok = [r for r in at if r["trustworthy"]]
            vals = np.array([r["llc_mean"] for r in ok])
            half = at[0]["bounds"]["half_rank"]
            mean = float(vals.mean()) if len(vals) else math.nan
            ci = (float(stats.t.ppf(0.975, len(vals) - 1) * vals.std(ddof=1) / math.sqrt(len(vals)))
                  if len(vals) > 1 else math.nan)
            per_rung.append({"rung": k, "knob": at[0]["knob"], "program": at[0]["program"], "seeds": len(at),
                             "valid_seeds": len(ok), "llc_mean": mean, "ci95_halfwidth": ci, "half_rank": half,
                             "effective_half_rank": at[0]["bounds"]["effective_half_rank"],
                             "num_params": at[0]["descriptors"]["num_params"]})
        ok = [r for r in rs if r["trustworthy"]]
        trend = {"n": len(ok)}
        if len({r["rung"] for r in ok}) >= 3:
            x = np.array([r["rung"] for r in ok], dtype=float)
            y = np.array([r["llc_mean"] for r in ok])
            ratio = y / np.array([r["bounds"]["half_rank"] for r in ok])
            res = stats.spearmanr(x, y)
            trend.update(spearman_llc=float(res[0]), p_llc=float(res[1]),
                         spearman_ratio=float(stats.spearmanr(x, ratio)[0]),
                         p_ratio=float(stats.spearmanr(x, ratio)[1]))
        out[ladder] = {"rungs": per_rung, "trend": trend}
    return out


def write_csv(path: Path, rows: list) -> None:
    if not rows:
        path.write_text("")
        return
    keys = list(rows[0])
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def table_rows(rows: list) -> list:
    """CSV rows: the validity table plus the descriptors."""
    out = []
    for r in rows:
        t = table_row(r)
        d = r.get("descriptors", {})
        t.update({k: d.get(k, "") for k in DESCRIPTORS + ("selector_width",)})
        out.append(t)
    return out


def figure_bounds(rows: list, path: Path, title: str) -> None:
    """LLC against rank/2 with the d/2 ceiling: filled = valid, hollow = invalid (with its error bar).

    `rows` are fresh table rows (`base` holds the estimate) or the flat rows of metrics.json's `programs`.
    """
    pts = []  # (program, rank/2, LLC, sd, valid)
    for r in rows:
        if isinstance(r.get("base"), dict):
            pts.append((r["program"], r["base"]["bounds"]["half_rank"], r["base"]["llc_mean"], r["base"]["llc_std"],
                        r["valid"]))
        elif "base" not in r and math.isfinite(float(r.get("llc_mean", math.nan))):
            pts.append((r["program"], r["half_rank"], r["llc_mean"], r["llc_std"], r["valid"]))
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for k, (program, half_rank, llc, sd, valid) in enumerate(sorted(pts, key=lambda t: (t[1], t[2]))):
        # one colour per program, named in the legend: no labels to collide
        color = plt.get_cmap("tab10")(k) if len(pts) <= 10 else plt.get_cmap("tab20")(k % 20)
        ax.errorbar(half_rank, llc, yerr=sd, fmt="o", mfc=color if valid else "none", mec=color, ecolor=color,
                    capsize=2, label=program)
    lo = min([p[1] for p in pts] + [10.0]) / 2
    hi = max([p[1] for p in pts] + [2.0]) * 1.5
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="LLC = rank/2 (quadratic part)")
    ax.plot([lo, hi], [0.85 * lo, 0.85 * hi], "k:", lw=0.8, label="0.85 x rank/2 (validity floor)")
    ax.set(xscale="log", yscale="log", xlabel="rank(H)/2 at w*", ylabel="LLC estimate (mean +- sd over chains)")
    ax.set_title(title.replace(" (", "\n(", 1) + f", {len(pts)} programs estimated", fontsize=9)
    ax.legend(fontsize=7, title="filled: valid, hollow: invalid", title_fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure_ladders(lad: dict, path: Path, title: str) -> None:
    """One panel per ladder: LLC (mean, 95% CI over valid seeds) and rank/2 against the knob."""
    names = list(lad)
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(3.6 * max(len(names), 1), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        rs = lad[name]["rungs"]
        x = np.arange(len(rs))
        ax.errorbar(x, [r["llc_mean"] for r in rs], yerr=[r["ci95_halfwidth"] for r in rs], fmt="o-", capsize=3,
                    label="LLC (valid seeds)")
        ax.plot(x, [r["half_rank"] for r in rs], "s--", color="gray", label="rank/2")
        for xi, r in zip(x, rs):
            ax.annotate(f"{r['valid_seeds']}/{r['seeds']}", (xi, r["half_rank"]), fontsize=6, xytext=(2, -9),
                        textcoords="offset points")
        labels, knob = _knob_labels([r["knob"] for r in rs])
        ax.set_xticks(x, labels, fontsize=7)
        t = lad[name]["trend"]
        rho = f"rho={t['spearman_llc']:.2f}, p={t['p_llc']:.2g}" if "spearman_llc" in t else "too few valid"
        ax.set(title=f"{name}\n{rho}", xlabel=knob, ylabel="LLC (95% t interval over trustworthy seeds)")
        ax.yaxis.label.set_fontsize(7)
        ax.title.set_fontsize(8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _knob_labels(knobs: list) -> tuple:
    """Short tick labels: for size variants (dicts) only the entry that changes along the ladder, and its name."""
    if not all(isinstance(k, dict) for k in knobs):
        return [str(k) for k in knobs], "rung (knob value)"
    varying = [key for key in knobs[0] if len({str(k.get(key)) for k in knobs}) > 1] or list(knobs[0])
    return ([", ".join(str(k[key]) for key in varying) for k in knobs], " / ".join(varying) +
            " (others fixed: " + ", ".join(f"{key}={knobs[0][key]}" for key in knobs[0] if key not in varying) + ")")


def figure_sharpness(rows: list, path: Path, title: str, ok_key: str = "trustworthy") -> None:
    """Per knob: LLC and rank/2 against the knob value, one line per program (hollow: `ok_key` false, i.e. flagged
    by the estimator, or not valid)."""
    rows = [r for r in rows if r.get("estimated")]
    if not rows:
        return
    knobs = list(dict.fromkeys(r["knob"] for r in rows))
    fig, axes = plt.subplots(1, max(len(knobs), 1), figsize=(5 * max(len(knobs), 1), 3.8), squeeze=False)
    for ax, knob in zip(axes[0], knobs):
        for i, prog in enumerate(dict.fromkeys(r["program"] for r in rows if r["knob"] == knob)):
            rs = sorted([r for r in rows if r["knob"] == knob and r["program"] == prog and r.get("estimated")],
                        key=lambda r: r["value"])
            if not rs:
                continue
            x = [r["value"] for r in rs]
            ax.plot(x, [r["llc_mean"] for r in rs], "-", color=f"C{i}", label=prog)
            for r in rs:
                ax.errorbar(r["value"], r["llc_mean"], yerr=r["llc_std"], fmt="o", color=f"C{i}",
                            mfc=f"C{i}" if r[ok_key] else "none", capsize=2)
            ax.plot(x, [_half_rank(r) for r in rs], ":", color=f"C{i}")
        values = sorted({r["value"] for r in rows if r["knob"] == knob})
        if min(values) > 0 and len(values) > 1:
            ax.set_xscale("log")
        ax.set_xticks(values, [f"{v:g}" for v in values])  # the measured values only: no crowded minor labels
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        if len(values) == 1:
            ax.set_xlim(values[0] - 1, values[0] + 1)
        ax.set(xlabel=knob, ylabel="LLC (solid), rank/2 (dotted)", title=f"{knob} (hollow: {'flagged' if ok_key == 'trustworthy' else 'not ' + ok_key})")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _half_rank(r: dict) -> float:
    """rank/2 of a knob row: from its bounds (a fresh result) or its flat `half_rank` column (metrics.json)."""
    return r["bounds"]["half_rank"] if isinstance(r.get("bounds"), dict) else r["half_rank"]


def figure_traces(rows: list, out_dir: Path, title: str) -> None:
    """`diagnostics.png` and `traces.json` (`studies.traces`): per-chain loss over burn-in and draws with the burn-in
    shaded, L(w*) and the running Metropolis acceptance of each checked program's base estimate."""
    write_diagnostics([(f"{r['program']} ({'valid' if r['valid'] else 'invalid'})", r["trace"]) for r in rows
                       if isinstance(r.get("trace"), dict)], out_dir, title)
