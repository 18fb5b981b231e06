"""Figures for LLC estimates (matplotlib figures are returned, never shown)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _hp(cfg, nbeta) -> str:
    return (f"eps={cfg.step_size:g}, gamma={cfg.localization:g}, nbeta={nbeta:.3g}, batch={cfg.batch_size}, "
            f"{cfg.num_chains}x{cfg.num_draws} draws, burn-in {cfg.num_burnin}")


def plot_loss_traces(res, title: str = ""):
    """devinterp-style diagnostics of one estimate: per-chain loss over every iteration with the burn-in shaded and
    L(w*) marked, and (for Metropolis-adjusted or MALA-probed runs) the per-chain running acceptance; the LLC, its
    settings and the verdict in the title."""
    acc = getattr(res, "acceptance_trace", None)
    has_acc = acc is not None and np.size(acc) > 0
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 6, 3.5), squeeze=False)
    ax = axes[0, 0]
    full = np.concatenate([res.burnin_trace, res.loss_trace], axis=1)
    burn = res.burnin_trace.shape[1]
    if burn:
        ax.axvspan(0, burn, color="0.9", label="burn-in")
    for c, row in enumerate(full):
        ax.plot(row, lw=0.7, label=f"chain {c}")
    ax.axhline(res.init_loss, color="grey", ls=":", lw=0.8, label="L(w*)")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss at the chain's state")
    ax.legend(fontsize=6)
    if has_acc:
        a = np.asarray(acc, dtype=float)
        running = np.cumsum(a, axis=1) / np.arange(1, a.shape[1] + 1)
        for c, row in enumerate(running):
            axes[0, 1].plot(row, lw=0.7, label=f"chain {c}")
        axes[0, 1].set_ylim(0, 1.02)
        axes[0, 1].set_xlabel("Metropolis test")
        axes[0, 1].set_ylabel("running acceptance")
    verdict = res.diagnostics.get("trustworthy")
    flag = {True: "trustworthy", False: "FLAGGED: " + "; ".join(res.diagnostics.get("warnings", []))[:90]}.get(
        verdict, "no verdict")
    fig.suptitle(f"{title} LLC = {res.llc_mean:.3g} ± {res.llc_std:.2g} ({flag})\n{_hp(res.config, res.nbeta)}",
                 fontsize=8)
    fig.tight_layout()
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
