"""Figures for LLC estimates (matplotlib figures are returned, never shown)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from llc_estim.diagnostics import trace_record  # noqa: E402


def _verdict(rec: dict, width: int) -> str:
    ok = rec.get("trustworthy")
    if ok is None:
        return "no verdict"
    return "trustworthy" if ok else "FLAGGED: " + "; ".join(rec.get("warnings", []))[:width]


def plot_trace_panel(ax, rec: dict, title: str = "", acc_ax=None) -> None:
    """Draw one `trace_record` on `ax`: per-chain excess loss L(w_t) - L(w*) against iteration (the quantity whose
    mean times nbeta is the LLC; also readable where L(w*) dwarfs the fluctuations) with the burn-in shaded and 0,
    i.e. L(w*), dotted; the running acceptance (when the run had Metropolis tests) on `acc_ax`, or dashed on a
    right-hand twin axis."""
    excess = np.asarray(rec["loss"], dtype=float) - rec["init_loss"]
    x = np.arange(excess.shape[1]) * rec["stride"]
    if rec["burnin"]:
        ax.axvspan(0, rec["burnin"], color="0.9", label="burn-in")
    for c, row in enumerate(excess):
        ax.plot(x, row, lw=0.7, label=f"chain {c}")
    ax.axhline(0.0, color="grey", ls=":", lw=0.8, label=f"L(w*) = {rec['init_loss']:.3g}")
    ax.set_xlabel("iteration", fontsize=7)
    ax.set_ylabel("L(w) - L(w*) at the chain's state", fontsize=7)
    ax.yaxis.get_offset_text().set_fontsize(6)
    ax.tick_params(labelsize=6)
    acc = np.asarray(rec.get("acceptance", []), dtype=float)
    if acc.size:
        twin = acc_ax is None
        a_ax = ax.twinx() if twin else acc_ax
        xa = np.arange(acc.shape[1]) * rec.get("acceptance_stride", 1)
        for c, row in enumerate(acc):
            a_ax.plot(xa, row, lw=0.7, ls="--" if twin else "-", color=f"C{c}", label=f"chain {c}")
        a_ax.set_ylim(0, 1.02)
        a_ax.set_ylabel("running acceptance" + (" (dashed)" if twin else ""), fontsize=7)
        a_ax.set_xlabel("iteration", fontsize=7)
        a_ax.tick_params(labelsize=6)
    ax.set_title(f"{title} LLC = {rec['llc_mean']:.3g} ± {rec['llc_std']:.2g}\n{_verdict(rec, 60)}", fontsize=7,
                 pad=9)  # clear of the y axis's offset text


def plot_loss_traces(res, title: str = ""):
    """devinterp-style diagnostics of one estimate: per-chain loss over every iteration with the burn-in shaded and
    L(w*) marked, and (for Metropolis-adjusted or MALA-probed runs) the per-chain running acceptance; the LLC, its
    settings and the verdict in the title."""
    rec = trace_record(res, max_points=None)
    has_acc = len(rec["acceptance"]) > 0
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 6, 3.5), squeeze=False)
    plot_trace_panel(axes[0, 0], rec, acc_ax=axes[0, 1] if has_acc else None)
    axes[0, 0].set_title("")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"{title} LLC = {rec['llc_mean']:.3g} ± {rec['llc_std']:.2g} ({_verdict(rec, 90)})\n"
                 f"{rec['settings']}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_trace_grid(records: list, titles: list, suptitle: str, ncols: int = 3):
    """One `plot_trace_panel` per (record, title), in a grid, with `suptitle` (the study's settings and n) on top."""
    if not records:
        raise ValueError("plot_trace_grid needs at least one trace record")
    nrows = -(-len(records) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, rec, title in zip(axes.flat, records, titles):
        plot_trace_panel(ax, rec, title)
    for ax in list(axes.flat)[len(records):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=5, loc="upper right")
    fig.suptitle(suptitle + "\ny: L(w) - L(w*) per chain; shaded: burn-in; dashed (right axis): running Metropolis "
                 "acceptance",
                 fontsize=8)
    lines = suptitle.count("\n") + 2
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.16 * lines + 0.08) / fig.get_figheight()))  # panels below the suptitle
    return fig


def plot_calibration(cal, title: str = ""):
    """LLC (± std over chains) against step size, one line per (localization, nbeta); diverged runs as x."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    groups: dict = {}
    for row in cal.table:
        groups.setdefault((row["localization"], row["nbeta"]), []).append(row)
    for (gamma, nbeta), rows in groups.items():
        ok = [r for r in rows if not r["diverged"]]
        ax.errorbar([r["step_size"] for r in ok], [r["llc_mean"] for r in ok], yerr=[r["llc_std"] for r in ok],
                    marker="o", capsize=3, label=f"gamma={gamma:g}, nbeta={nbeta if nbeta else 'n/log n'}")
        bad = [r["step_size"] for r in rows if r["diverged"]]
        if bad:
            ax.scatter(bad, [0] * len(bad), marker="x", color="red", label="diverged")
    if cal.recommended is not None:
        ax.axvline(cal.recommended.step_size, color="k", ls=":", lw=0.8, label="recommended")
    ax.set_xscale("log")
    ax.set_xlabel("SGLD step size epsilon")
    ax.set_ylabel("estimated LLC, mean ± std over chains")
    ax.set_title(f"{title} calibration", fontsize=9)
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig
