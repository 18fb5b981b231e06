"""Curvature of the full-data loss at w*: Hessian eigenpairs and the LLC's Hessian bounds.

Bounds (reference/llc-estimation.md). With H the Hessian of L_n at a minimum w*, the splitting lemma gives
lambda >= rank(H)/2, and lambda <= d/2 for d sampled parameters. At a finite inverse temperature nbeta and
localization gamma, the quadratic directions contribute sum_i nbeta h_i / (2 (nbeta h_i + gamma)) to the
estimator's target (the "effective half-rank"); an estimate well below it has not sampled the posterior.

Hessian-vector products are forward-over-reverse (`torch.func.jvp` of `torch.func.grad`), batched with `vmap`.
Small problems (P <= `dense_max`) get the dense Hessian; larger ones a randomized subspace iteration whose
width doubles until the spectrum below it is negligible. Only the positive part of the spectrum is kept (at a
minimum the Hessian is positive semi-definite; tiny negative values are round-off).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import numpy as np
import torch

from llc_estim.params import FlatParams

RANK_TOL = 1e-12  # eigenvalues below RANK_TOL * the largest count as zero (float64 eigh error is ~1e-16 * largest)
KEEP_TOL = 1e-14  # eigenvalues below KEEP_TOL * the largest are dropped as round-off


@dataclasses.dataclass
class Curvature:
    """Eigenpairs of a (PSD part of a) Hessian over the sampled entries.

    Attributes:
        eigenvalues: [r] descending, all > 0.
        eigenvectors: [P, r] orthonormal columns.
        num_params: P, the number of sampled entries (masked entries have zero rows).
        method: "dense" or "randomized(k=...)".
        complete: whether every eigenvalue above RANK_TOL * max is captured (always for dense).
    """

    eigenvalues: torch.Tensor
    eigenvectors: torch.Tensor
    num_params: int
    method: str
    complete: bool = True

    def rank(self, tol: float = RANK_TOL) -> int:
        """Number of eigenvalues above `tol` times the largest."""
        if self.eigenvalues.numel() == 0:
            return 0
        return int((self.eigenvalues > tol * self.eigenvalues.max()).sum())


def llc_bounds(curvature: Curvature, nbeta: float, localization: float, tol: float = RANK_TOL) -> dict:
    """Where an LLC estimate must lie: rank(H)/2, the finite-(nbeta, gamma) effective half-rank, and d/2.

    Returns:
        {"rank": r, "half_rank": r/2, "effective_half_rank": sum nbeta h / (2 (nbeta h + gamma)),
         "half_dim": d/2, "complete": whether the spectrum was fully captured}.
    """
    if not (nbeta > 0 and localization >= 0):
        raise ValueError(f"need nbeta > 0 and localization >= 0, got {nbeta}, {localization}")
    h = curvature.eigenvalues.double()
    r = curvature.rank(tol)
    eff = float((nbeta * h / (2 * (nbeta * h + localization))).sum()) if h.numel() else 0.0
    return {"rank": r, "half_rank": r / 2, "effective_half_rank": eff, "half_dim": curvature.num_params / 2,
            "complete": curvature.complete}


def hvp_fn(flat: FlatParams, loss_of: Callable[[torch.Tensor], torch.Tensor], point: torch.Tensor):
    """v [k, P] -> H(point) v [k, P], masked to the sampled entries."""
    grad = torch.func.grad(loss_of)
    mask = flat.mask

    def one(v):
        return torch.func.jvp(grad, (point,), (v,))[1]

    def apply(vs: torch.Tensor) -> torch.Tensor:
        if mask is not None:
            vs = vs * mask
        out = torch.func.vmap(one)(vs)
        return out * mask if mask is not None else out

    return apply


def hessian_eigen(flat: FlatParams, terms: list, dense_max: int = 3000, chunk: int = 16, max_rank: int = 4096,
                  seed: int = 0, tol: float = RANK_TOL, known: Optional[Curvature] = None) -> Curvature:
    """Eigenpairs of the mean of the Hessians in `terms`, a list of (loss_of, point) pairs (and of `known`).

    Args:
        terms: `loss_of` maps flat [P] -> scalar loss (e.g. the full-data loss, or a subsample's); `point` is where
            its Hessian is taken. One term (full data, w*) gives the Hessian for the bounds; several points (w* and
            the chains' states) give the posterior-averaged curvature for a preconditioner.
        dense_max: largest P for the dense Hessian.
        chunk: Hessian-vector products per vmapped batch.
        max_rank: the randomized method's widest subspace.
        known: a Hessian already computed (e.g. at w*), averaged in as one more term at no cost.
    """
    if not terms:
        raise ValueError("hessian_eigen needs at least one (loss_of, point) term")
    hvps = [hvp_fn(flat, loss_of, point) for loss_of, point in terms]

    count = len(hvps) + (known is not None)

    def apply(vs: torch.Tensor) -> torch.Tensor:  # [k, P] -> [k, P]
        outs = []
        for s in range(0, vs.shape[0], chunk):
            part = vs[s:s + chunk]
            total = sum(h(part) for h in hvps)
            if known is not None:
                total = total + ((part @ known.eigenvectors) * known.eigenvalues) @ known.eigenvectors.T
            outs.append(total / count)
        return torch.cat(outs)

    P = flat.size
    with torch.no_grad():
        if P <= dense_max:
            eye = torch.eye(P, dtype=flat.dtype, device=flat.device)
            if flat.mask is not None:
                eye = eye[flat.mask.bool()]  # only the entries that move
                H = torch.zeros(P, P, dtype=flat.dtype, device=flat.device)
                H[flat.mask.bool()] = apply(eye)
            else:
                H = apply(eye)
            evals, evecs = symmetric_eigh(0.5 * (H + H.T))
            return _positive(evals, evecs, P, "dense", True, tol)
        return _randomized(apply, P, flat, max_rank, seed, tol)


def symmetric_eigh(A: torch.Tensor) -> tuple:
    """`torch.linalg.eigh`, or numpy's LAPACK eigh where torch's fails to converge.

    torch 2.13's CPU eigh fails on some rank-deficient compiled-model Hessians with one thread (pair_balance at
    n = 512: "failed to converge") and succeeds with two; numpy's driver returns the same spectrum on them.
    """
    try:
        return torch.linalg.eigh(A)
    except torch.linalg.LinAlgError:
        evals, evecs = np.linalg.eigh(A.detach().cpu().numpy())
        return (torch.as_tensor(evals, dtype=A.dtype, device=A.device),
                torch.as_tensor(evecs, dtype=A.dtype, device=A.device))


def _positive(evals, evecs, P, method, complete, tol) -> Curvature:
    order = torch.argsort(evals, descending=True)
    evals, evecs = evals[order], evecs[:, order]
    top = float(evals[0]) if evals.numel() else 0.0
    keep = evals > max(top, 0.0) * KEEP_TOL
    return Curvature(evals[keep], evecs[:, keep], P, method, complete)


def _randomized(apply, P, flat: FlatParams, max_rank: int, seed: int, tol: float) -> Curvature:
    """Randomized subspace iteration (one power step), doubling the width until the tail is negligible."""
    gen = torch.Generator(device=flat.device).manual_seed(seed)
    k = min(128, P)
    while True:
        omega = torch.randn(k, P, generator=gen, dtype=flat.dtype, device=flat.device)
        if flat.mask is not None:
            omega = omega * flat.mask
        Q = torch.linalg.qr(apply(omega).T).Q  # [P, k]
        Q = torch.linalg.qr(apply(Q.T).T).Q
        HQ = apply(Q.T).T  # [P, k]
        T = Q.T @ HQ
        evals, S = symmetric_eigh(0.5 * (T + T.T))
        top = float(evals.max())
        tail = float(torch.sort(evals).values[min(k // 8, k - 1)])  # an eigenvalue well inside the subspace's tail
        complete = tail <= tol * top or k >= P
        if complete or 2 * k > max_rank:
            return _positive(evals, Q @ S, P, f"randomized(k={k})", complete, tol)
        k = min(2 * k, P)


def full_loss_of(flat: FlatParams, loss_fn, full_batch, n_items: int, chunk: Optional[int]):
    """flat [P] -> L_n(flat), for `hessian_eigen`."""
    return lambda w: flat.full_loss(loss_fn, w, full_batch, n_items, chunk)


def spectrum_summary(curvature: Curvature) -> dict:
    """Largest and smallest kept eigenvalue and the condition number over the numerical rank."""
    h = curvature.eigenvalues
    r = curvature.rank()
    if r == 0:
        return {"h_max": 0.0, "h_min": 0.0, "condition": math.nan}
    return {"h_max": float(h[0]), "h_min": float(h[r - 1]), "condition": float(h[0] / h[r - 1])}
