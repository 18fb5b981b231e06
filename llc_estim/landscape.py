"""How far from w* the quadratic picture holds: the landscape that a curvature-preconditioned sampler meets.

`auto_llc` whitens with A = (nbeta H + gamma I)^(-1): a direction in the Hessian's range gets the scale
1 / sqrt(nbeta h + gamma), and every direction of the complement (flat at w* to second order) gets the prior
scale 1 / sqrt(gamma). That is right only while the loss is quadratic in the range and flat in the complement
out to about one whitened unit. `probe_landscape` measures, along random whitened directions z ~ N(0, I) at
scales s (w = w* + s A^(1/2) z, split into its range and complement parts):
  - range: nbeta (L(w) - L(w*)) against the quadratic prediction s^2/2 sum_i nbeta h_i c_i^2 / (nbeta h_i + gamma)
    (c = V^T z); their ratio is 1 where the Hessian describes the loss;
  - complement: nbeta (L(w) - L(w*)) and the "force ratio" |A^(1/2) nbeta grad L| / |A^(1/2) gamma (w - w*)|
    (both restricted to the complement): below 1 the prior sets the flat directions' extent, as the
    preconditioner assumes; above 1 the loss does (higher-order walls: products of flat directions, saturated
    softmax, discretising MLPs).
  - stiffness: the largest |eigenvalue| of the whitened Hessian of the potential, A^(1/2) (nbeta H(w) + gamma I)
    A^(1/2), at the full point w (range and complement, first direction), by power iteration. It is 1 at w* by
    construction; leapfrog is stable only for steps below 2 / sqrt(stiffness), so this is the step size the
    sampler can afford where its chains are.
The "wall scale" is the smallest probed s with a mean force ratio >= 1. A wall at s << 1 means the posterior in
the complement is s times narrower than the sampler's whitened coordinates say, so the step size must shrink and
the number of steps to cross the range grows as 1 / s: the cost of a valid estimate, measured before sampling.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from llc_estim.curvature import Curvature, full_loss_of, hessian_eigen, hvp_fn
from llc_estim.params import FlatParams, materialise, to_device
from llc_estim.precondition import curvature_preconditioner

DEFAULT_SCALES = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
QUADRATIC_BAND = (0.5, 2.0)  # range ratio counted as quadratic
POWER_ITERATIONS = 30


def probe_landscape(model: torch.nn.Module, data, loss_fn: Callable, *, nbeta: float, localization: float,
                    curvature: Optional[Curvature] = None, scales: tuple = DEFAULT_SCALES, directions: int = 4,
                    seed: int = 0, param_filter=None, dense_max: int = 3000,
                    collate_fn: Optional[Callable] = None, power_iterations: int = POWER_ITERATIONS) -> dict:
    """The landscape probe of the module docstring at the model's parameters w*.

    Args:
        nbeta, localization: the estimator's inverse temperature and gamma (> 0 both).
        curvature: the Hessian of the same full-data loss at w* (e.g. `LLCResult.curvature`); computed if None.
        scales: whitened distances s to probe (> 0, increasing).
        directions: random directions per scale (the same z at every scale).
        power_iterations: Hessian-vector products per scale for the stiffness (0: not measured, NaN).

    Returns:
        {"num_params", "rank", "complement_dim", "rows": one dict per scale (range_nbeta_dl, range_quadratic,
         range_ratio, complement_nbeta_dl, complement_force_ratio: means over directions; stiffness and
         step_limit = 2 / sqrt(stiffness) along the first direction),
         "wall_scale" (None: no wall up to the largest scale), "quadratic_scale" (largest s up to which every
         range ratio lies in QUADRATIC_BAND; None if the smallest does not)}.

    Raises:
        ValueError: nbeta or localization not positive, scales not positive and increasing, directions < 1.
    """
    if not (nbeta > 0 and localization > 0):
        raise ValueError(f"need nbeta > 0 and localization > 0, got {nbeta}, {localization}")
    if not scales or any(s <= 0 for s in scales) or list(scales) != sorted(set(scales)):
        raise ValueError(f"scales must be positive and increasing, got {scales}")
    if directions < 1:
        raise ValueError(f"directions must be >= 1, got {directions}")
    flat = FlatParams(model, param_filter)
    full = to_device(materialise(data, collate_fn), flat.device)
    loss_of = full_loss_of(flat, loss_fn, full, len(data), None)
    curvature = curvature or hessian_eigen(flat, [(loss_of, flat.w_star)], dense_max=dense_max, seed=seed)
    if curvature.num_params != flat.size:
        raise ValueError(f"curvature is for {curvature.num_params} entries, the model has {flat.size}")
    r = curvature.rank()
    V, h = curvature.eigenvectors[:, :r], curvature.eigenvalues[:r].to(flat.dtype)
    gen = torch.Generator(device=flat.device).manual_seed(seed)
    Z = torch.randn(directions, flat.size, generator=gen, dtype=flat.dtype, device=flat.device)
    if flat.mask is not None:
        Z = Z * flat.mask
    C = Z @ V  # [k, r] range coordinates
    Zc = Z - C @ V.T  # [k, P] complement part
    range_scale = (nbeta * h + localization).rsqrt()
    precond = curvature_preconditioner(curvature, nbeta, localization, flat.mask)
    quad = 0.5 * (nbeta * h * C ** 2 / (nbeta * h + localization)).sum(-1)  # at s = 1, per direction
    base = float(loss_of(flat.w_star))
    rows = []
    for s in scales:
        rng, comp, force = [], [], []
        for k in range(directions):
            rng.append(nbeta * (float(loss_of(flat.w_star + s * V @ (range_scale * C[k]))) - base))
            dw = (s / math.sqrt(localization)) * Zc[k]
            w = (flat.w_star + dw).requires_grad_(True)
            value = loss_of(w)
            (grad,) = torch.autograd.grad(value, w)
            comp.append(nbeta * (float(value.detach()) - base))
            g = grad - V @ (V.T @ grad)  # complement part of the loss gradient
            prior = localization * float(dw.norm())
            force.append(float(nbeta * g.norm()) / prior if prior > 0 else math.nan)  # NaN: no complement
        q = float(s ** 2 * quad.mean())
        stiff = _stiffness(flat, loss_of, precond, nbeta, localization, flat.w_star + s * precond.sqrt_apply(Z[:1])[0],
                           power_iterations, gen)
        rows.append({"stiffness": stiff, "step_limit": 2 / math.sqrt(stiff) if stiff > 0 else math.nan,
                     "scale": s, "range_nbeta_dl": _mean(rng), "range_quadratic": q,
                     "range_ratio": _mean(rng) / q if q > 0 else math.nan, "complement_nbeta_dl": _mean(comp),
                     "complement_force_ratio": _mean(force)})
    return {"num_params": flat.size, "rank": r, "complement_dim": flat.num_sampled - r, "rows": rows,
            "wall_scale": next((row["scale"] for row in rows if row["complement_force_ratio"] >= 1), None),
            "quadratic_scale": _quadratic_scale(rows)}


def _stiffness(flat: FlatParams, loss_of, precond, nbeta: float, localization: float, w: torch.Tensor,
               iterations: int, gen: torch.Generator) -> float:
    """Largest |eigenvalue| of A^(1/2) (nbeta H(w) + gamma I) A^(1/2) by power iteration (NaN if iterations = 0)."""
    if iterations < 1:
        return math.nan
    hvp = hvp_fn(flat, loss_of, w)
    v = torch.randn(1, flat.size, generator=gen, dtype=flat.dtype, device=flat.device)
    v = v * flat.mask if flat.mask is not None else v
    v = v / v.norm()
    lam = math.nan
    with torch.no_grad():
        for _ in range(iterations):
            x = precond.sqrt_apply(v)
            u = precond.sqrt_apply(nbeta * hvp(x) + localization * x)
            lam = float((u * v).sum())
            v = u / u.norm()
    return abs(lam)


def _mean(values: list) -> float:
    return sum(values) / len(values)


def _quadratic_scale(rows: list) -> Optional[float]:
    lo, hi = QUADRATIC_BAND
    out = None
    for row in rows:
        if not lo <= row["range_ratio"] <= hi:  # NaN (no range) fails too
            break
        out = row["scale"]
    return out
