"""Validity of compiled-model LLC estimates: the five checks pass on small programs, and they can fail."""

import dataclasses
import math
import warnings

import pytest

from datasets.teacher import teacher_problem
from llc_estim import LLCWarning, SGLDConfig, estimate_llc
from rasp_models import registry
from rasp_models.base import Sharpness
from studies.complexity import PRESETS
from studies.validity import CHECKS, ValiditySettings, table_row, validate
from tracr.torch_components import rescaled

FAST = dataclasses.replace(PRESETS["quick"].validity, n=256, max_steps=2000)
LONG = dataclasses.replace(PRESETS["quick"].validity, n=1024, max_steps=12000)


def test_identity_estimates_sit_at_rank_over_two_under_more_data_and_reparametrisation():
    """identity (one MLP), a short budget: the draws stay in the basin, the estimate is rank/2 (19.5) within 10%
    and inside the bounds, and 4x the data and MLP x10 change it by at most 20%. The estimator as it was
    (calibrated plain SGLD, gamma = 1000, nbeta = n / log n) gave 1.04, below 0.85 x the effective half-rank: its
    value was set by the localization, not by the loss. R-hat is not asserted at this budget (measured on identity
    at 4000 gradient evaluations: every estimate within 2% of rank/2, yet R-hat 1.10-1.44 because single chains
    linger above the others); `test_small_programs_are_valid_under_every_check` asserts it at a longer budget."""
    row = validate(registry.get("identity"), FAST)
    assert row["checks"]["basin"] and row["checks"]["bounds"], row["reason"]
    assert row["base"]["llc_mean"] == pytest.approx(row["base"]["bounds"]["half_rank"], rel=0.10)
    assert row["nbeta_change"] <= 0.2 and row["mlp_x10_change"] <= 0.2, row["reason"]
    assert row["qk_x0.1"] is None  # identity has no attention head: the check is not applicable
    assert set(row["checks"]) == set(CHECKS)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["identity", "map_chain_2"])
def test_small_programs_are_valid_under_every_check(name):
    """All five checks, R-hat included, at 12000 gradient evaluations per chain. Under the old estimator chains
    left the basin within a few steps on compiled weights (histogram: teacher loss 0.92 after one step)."""
    from rasp_models.ladders import map_chain

    row = validate(registry.get(name) if name == "identity" else map_chain(2), LONG)
    assert row["valid"], row["reason"]
    assert table_row(row)["valid"] is True


def test_the_nbeta_check_fails_for_a_prior_dominated_estimate():
    """The checks can fail. Plain SGLD at the old setting (eps 1e-6, gamma 1000, nbeta = n / log n) on identity:
    the estimate is set by the localization, so 4x the data (and nbeta) changes it by far more than 20%, and it
    lies below 0.85 x rank/2. (The loss-rescaling check the project used before could not fail.)"""
    spec = registry.get("identity")
    values = []
    for n in (128, 512):
        p = teacher_problem(spec, n, sharpness=Sharpness(relu_margin=0.5))
        cfg = SGLDConfig(step_size=1e-6, localization=1000.0, nbeta=n / math.log(n), num_draws=300, num_burnin=100,
                         progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LLCWarning)
            values.append(estimate_llc(p.model, p.data, p.loss_fn, cfg).llc_mean)
    assert abs(values[1] - values[0]) / values[0] > 0.2, values
    assert values[0] < 0.85 * 19.5


def test_rescaled_models_compute_the_same_function():
    """The reparametrisation check compares estimates of one function: MLP x10 and QK x0.1 change no output."""
    p = teacher_problem(registry.get("histogram"), 64)
    for kwargs in ({"mlp": 10.0}, {"qk": 0.1}):
        other = p.for_model(rescaled(p.model, **kwargs))
        assert float(p.loss_fn(other.model, p.data.tensors)) < 1e-20
        assert p.accuracy(other.model) == 1.0
    with pytest.raises(ValueError, match="positive finite"):
        rescaled(p.model, mlp=0.0)


def test_programs_over_the_size_limit_are_reported_not_dropped():
    row = validate(registry.get("peak"), dataclasses.replace(FAST, max_params=1000))
    assert row["valid"] is False and "not estimated" in row["reason"]
    assert table_row(row)["program"] == "peak"


@pytest.mark.slow
def test_validity_table_of_the_small_programs():
    """The slow tier: every registered program up to the quick study's size limit through all five checks at its
    settings; each row has a verdict, and an invalid one says which check failed."""
    st: ValiditySettings = PRESETS["quick"].validity
    rows = [validate(registry.get(name), st) for name in registry.names()]
    for r in rows:
        assert r["valid"] or r["reason"], r["program"]
    by_name = {r["program"]: r for r in rows}
    assert by_name["identity"]["valid"], by_name["identity"]["reason"]  # valid in the committed quick run too


def test_flagged_estimates_are_rerun_at_twice_the_budget_up_to_escalate(monkeypatch):
    """`settled_estimate` reruns only flagged estimates, doubling max_steps each time, at most `escalate` times,
    reuses the Hessian, and records what it did; with escalate = 0 (the committed results) it never reruns."""
    from studies import validity

    calls = []

    def fake(problem, st, nbeta, curvature=None):
        calls.append((st.max_steps, curvature))
        return {"trustworthy": st.max_steps >= 400, "curvature": "H", "llc_mean": float(st.max_steps)}

    monkeypatch.setattr(validity, "estimate", fake)
    st = ValiditySettings(max_steps=100, escalate=3)
    est = validity.settled_estimate(None, st, 1.0)
    assert [c[0] for c in calls] == [100, 200, 400] and calls[1][1] == "H"
    assert est["trustworthy"] and est["max_steps_used"] == 400 and est["escalations"] == 2
    calls.clear()
    est = validity.settled_estimate(None, dataclasses.replace(st, escalate=1), 1.0)
    assert [c[0] for c in calls] == [100, 200] and not est["trustworthy"] and est["escalations"] == 1
    calls.clear()
    assert validity.settled_estimate(None, dataclasses.replace(st, escalate=0), 1.0)["escalations"] == 0
    assert [c[0] for c in calls] == [100]


def test_the_check_estimates_run_apart_assemble_into_the_row_validate_gives():
    """Run as separate jobs (how `complexity_escalation` spreads one program over the cores), the four estimates
    give the same row as `validate`'s one-after-another run: each is seeded on its own and reuses nothing."""
    from studies.validity import assemble, check_estimate, needed

    from rasp_models.ladders import lookup_chain

    st = dataclasses.replace(PRESETS["smoke"].validity, checks=True, max_steps=200)
    spec = lookup_chain(1)  # 565 parameters (histogram has 1186), with an MLP and a head: all four estimates
    assert needed(spec, st) == ("base", "nbeta_x4", "mlp_x10", "qk_x0.1")
    whole = validate(spec, st)
    parts = assemble(spec, st, {k: check_estimate(spec, st, k) for k in reversed(needed(spec, st))}, 0.0)
    for key in ("base", "nbeta_x4", "mlp_x10", "qk_x0.1"):
        assert parts[key]["llc_per_chain"] == whole[key]["llc_per_chain"]
    assert (parts["valid"], parts["reason"], parts["checks"]) == (whole["valid"], whole["reason"], whole["checks"])
    assert needed(spec, dataclasses.replace(st, checks=False)) == ("base",)
    assert needed(spec, dataclasses.replace(st, max_params=10)) == ()
    assert check_estimate(registry.get("identity"), st, "qk_x0.1") is None  # identity has no head
    with pytest.raises(ValueError, match="unknown estimate"):
        check_estimate(spec, st, "mlp_x2")
