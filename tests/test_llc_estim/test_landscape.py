"""`llc_estim.probe_landscape`: the quadratic range and the flat complement, checked where both are known exactly."""

import pytest
import torch
from torch.utils.data import TensorDataset

from llc_estim.landscape import probe_landscape
from tests.test_llc_estim.models import DLN, half_sq_error, linear_regression, mse

SCALES = (1e-3, 1e-2, 1e-1, 1.0)


def test_a_quadratic_loss_has_no_complement_and_matches_its_hessian_at_every_scale():
    """Least squares is exactly quadratic: nbeta dL along the whitened range equals s^2/2 sum nbeta h c^2/(nbeta h +
    gamma) at every scale. Fails if the range part is scaled by the wrong power of (nbeta h + gamma), or if the
    prediction drops the gamma term (the ratio would be off by (nbeta h + gamma) / (nbeta h) >= 1.1 here)."""
    model, data = linear_regression(5, 200)
    out = probe_landscape(model, data, mse, nbeta=50.0, localization=10.0, scales=SCALES, directions=3)
    assert out["rank"] == 5 and out["complement_dim"] == 0
    for row in out["rows"]:
        assert row["range_ratio"] == pytest.approx(1.0, rel=1e-6)
        assert row["stiffness"] == pytest.approx(1.0, rel=1e-6)  # whitening makes the potential's Hessian I
    assert out["wall_scale"] is None and out["quadratic_scale"] == 1.0


def _product_model():
    """f(x) = w1 w2 x with teacher 0: L = (w1 w2)^2 E[x^2] / 2, a Hessian of zero at w* = 0 (all complement)."""
    x = torch.linspace(-1, 1, 50, dtype=torch.float64)[:, None]
    return DLN([1, 1, 1]), TensorDataset(x, torch.zeros_like(x))


def test_a_product_of_flat_directions_is_a_quartic_wall_that_grows_with_nbeta():
    """In the all-flat product model the complement's nbeta dL grows as s^4 and its force ratio
    nbeta E[x^2] |w1 w2| / gamma as s^2 and linearly in nbeta, so the wall scale moves down 10x at 100x nbeta.
    Fails if the complement is measured at the wrong scale (1 / gamma instead of 1 / sqrt(gamma)), if the force
    ratio compares whitened with unwhitened gradients, or if the wall is taken from the range part."""
    model, data = _product_model()
    scales = tuple(10 ** (k / 8) for k in range(-32, 1))
    lo = probe_landscape(model, data, half_sq_error, nbeta=1e4, localization=1.0, scales=scales, directions=2)
    hi = probe_landscape(model, data, half_sq_error, nbeta=1e6, localization=1.0, scales=scales, directions=2)
    assert lo["rank"] == 0 and lo["complement_dim"] == 2
    r = {row["scale"]: row for row in lo["rows"]}
    assert r[1.0]["complement_nbeta_dl"] / r[0.1]["complement_nbeta_dl"] == pytest.approx(1e4, rel=1e-9)
    assert r[1.0]["complement_force_ratio"] / r[0.1]["complement_force_ratio"] == pytest.approx(1e2, rel=1e-9)
    assert hi["rows"][-1]["complement_force_ratio"] / lo["rows"][-1]["complement_force_ratio"] == pytest.approx(100)
    assert lo["wall_scale"] / hi["wall_scale"] == pytest.approx(10, rel=0.34)  # one grid step is 10^(1/8)


def test_bad_settings_are_refused():
    model, data = _product_model()
    for kwargs in ({"nbeta": 0.0, "localization": 1.0}, {"nbeta": 1.0, "localization": 0.0},
                   {"nbeta": 1.0, "localization": 1.0, "scales": (1.0, 0.1)},
                   {"nbeta": 1.0, "localization": 1.0, "directions": 0}):
        with pytest.raises(ValueError):
            probe_landscape(model, data, half_sq_error, **kwargs)


def test_the_product_wall_matches_its_closed_form():
    """One direction z (the probe's seeded N(0, I) draw) at gamma = 4: w = s z / sqrt(gamma), so
    nbeta dL = nbeta E[x^2] s^4 (z1 z2)^2 / (2 gamma^2) and the force ratio is nbeta E[x^2] s^2 |z1 z2| / gamma^2.
    The stiffness is the largest |eigenvalue| of (nbeta H(w) + gamma I) / gamma, H(w) = E[x^2] [[w2^2, 2 w1 w2],
    [2 w1 w2, w1^2]]. Fails if the complement is placed at 1 / gamma or 1 / sqrt(gamma) is dropped (a factor
    gamma^(k/2) off), or if the stiffness is taken at w* or leaves out the gamma term or the whitening."""
    model, data = _product_model()
    nbeta, gamma = 1e5, 4.0
    out = probe_landscape(model, data, half_sq_error, nbeta=nbeta, localization=gamma, scales=SCALES, directions=1)
    z = torch.randn(1, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)[0]
    ex2 = float((data.tensors[0] ** 2).mean())
    checked = 0
    for row in out["rows"]:
        s = row["scale"]
        zz = float(z[0] * z[1])
        assert row["complement_nbeta_dl"] == pytest.approx(nbeta * ex2 * s ** 4 * zz ** 2 / (2 * gamma ** 2))
        assert row["complement_force_ratio"] == pytest.approx(nbeta * ex2 * s ** 2 * abs(zz) / gamma ** 2)
        w1, w2 = (s * z / gamma ** 0.5).tolist()
        H = ex2 * torch.tensor([[w2 * w2, 2 * w1 * w2], [2 * w1 * w2, w1 * w1]], dtype=torch.float64)
        M = (nbeta * H + gamma * torch.eye(2, dtype=torch.float64)) / gamma
        expected = float(torch.linalg.eigvalsh(M).abs().max())
        assert row["stiffness"] <= expected * (1 + 1e-9)  # a Rayleigh quotient never exceeds the spectrum
        if expected > 10:  # power iteration separates the eigenvalues only where one dominates
            assert row["stiffness"] == pytest.approx(expected, rel=1e-4)
            assert row["step_limit"] == pytest.approx(2 / expected ** 0.5, rel=1e-4)
            checked += 1
    assert checked >= 2
