"""Every study's devinterp-style diagnostics figure: `diagnostics.png` with the records in `traces.json`.

Each panel is one estimate's `llc_estim.trace_record`: per-chain loss over burn-in and draws (burn-in shaded), L(w*),
the running Metropolis acceptance, the LLC and its verdict. A study picks which estimates to show; this module draws
and saves them, so that the figure can be redrawn from `traces.json` without rerunning anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from llc_estim.plotting import plot_trace_grid  # noqa: E402


def write_diagnostics(items: list, out_dir: Path, suptitle: str, ncols: int = 4) -> None:
    """Writes `out_dir/diagnostics.png` and `out_dir/traces.json` from [(title, trace_record or None)].

    Items without a record (a diverged estimate) are listed in the figure's title instead of drawn; with no record
    at all nothing is written.
    """
    kept = [(t, r) for t, r in items if r is not None]
    missing = [t for t, r in items if r is None]
    if not kept:
        return
    (out_dir / "traces.json").write_text(json.dumps([{"title": t, "trace": r} for t, r in kept]))
    if missing:
        suptitle += f"\nno trace (diverged): {', '.join(missing)}"
    fig = plot_trace_grid([r for _, r in kept], [t for t, _ in kept], suptitle, ncols=ncols)
    fig.savefig(out_dir / "diagnostics.png", dpi=100)
    plt.close(fig)


def redraw(out_dir: Path, suptitle: str, ncols: int = 4) -> None:
    """Redraws `diagnostics.png` from a study folder's `traces.json`."""
    items = [(d["title"], d["trace"]) for d in json.loads((out_dir / "traces.json").read_text())]
    write_diagnostics(items, out_dir, suptitle, ncols)
