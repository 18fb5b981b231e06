"""`studies.complexity_diagnostics`: the diagnostics figure is drawn only from estimates that reproduce the table."""

import dataclasses
import json

import pytest

from studies import complexity
from studies.complexity_diagnostics import OLD_LINE, base_estimate, reproduce, settings_from_config


def _folder(tmp_path, llc_shift: float = 0.0):
    """A complexity folder as the smoke preset would write it, holding one estimated program (identity) whose
    committed LLC is the real estimate plus `llc_shift`."""
    cfg = complexity.PRESETS["smoke"]
    config = {"config": complexity._jsonable(cfg), "environment": {"git_commit": "0" * 40, "dirty": False}}
    st = settings_from_config(config)
    assert st == cfg.validity  # the round trip through config.json loses nothing
    est = base_estimate("identity", st)
    metrics = {"programs": {"identity": {"program": "identity", "llc_mean": est["llc_mean"] + llc_shift,
                                         "valid": False},
                            "peak": {"program": "peak", "llc_mean": float("nan"), "valid": False}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "README.md").write_text(f"table\n{OLD_LINE}\nmore\n")
    return tmp_path, est


def test_reproduction_matches_the_table_and_draws_the_figure(tmp_path):
    folder, est = _folder(tmp_path)
    rec = reproduce(folder)
    assert list(rec["programs"]) == ["identity"]  # programs without an estimate are skipped
    assert rec["programs"]["identity"]["relative_difference"] <= 1e-9
    assert (folder / "diagnostics.png").stat().st_size > 10_000
    traces = json.loads((folder / "traces.json").read_text())
    assert traces[0]["title"] == "identity (invalid)" and traces[0]["trace"]["llc_mean"] == pytest.approx(est["llc_mean"])
    readme = (folder / "README.md").read_text()
    assert OLD_LINE not in readme and "diagnostics.png" in readme and readme.startswith("table\n")
    assert json.loads((folder / "diagnostics_reproduction.json").read_text())["source_commit"] == "0" * 40


def test_a_table_that_does_not_reproduce_gets_no_figure(tmp_path):
    folder, _ = _folder(tmp_path, llc_shift=1e-3)
    with pytest.raises(RuntimeError, match="do not reproduce"):
        reproduce(folder)
    assert not (folder / "diagnostics.png").exists() and not (folder / "traces.json").exists()
    assert OLD_LINE in (folder / "README.md").read_text()


def test_settings_round_trip_keeps_every_field():
    st = dataclasses.replace(complexity.PRESETS["quick"].validity, seed=3)
    cfg = dataclasses.replace(complexity.PRESETS["quick"], validity=st)
    assert settings_from_config({"config": complexity._jsonable(cfg)}) == st


def test_llc_vs_rank_figure_redraws_from_metrics_rows(tmp_path, monkeypatch):
    """`figure_bounds` draws the flat rows of metrics.json (programs without an estimate left out), one legend entry
    per program instead of point labels that collide."""
    import matplotlib.pyplot as plt

    from studies import complexity_report

    captured = {}
    monkeypatch.setattr(plt.Figure, "savefig", lambda self, path, **kw: captured.update(fig=self, path=path))
    rows = [{"program": "a", "half_rank": 19.5, "llc_mean": 20.2, "llc_std": 0.9, "valid": True},
            {"program": "b", "half_rank": 56.0, "llc_mean": 70.5, "llc_std": 1.1, "valid": False},
            {"program": "c", "half_rank": float("nan"), "llc_mean": float("nan"), "llc_std": float("nan"),
             "valid": False}]
    complexity_report.figure_bounds(rows, tmp_path / "x.png", "T (settings)")
    ax = captured["fig"].axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert "a" in labels and "b" in labels and "c" not in labels
    assert not ax.texts and "2 programs estimated" in ax.get_title()
