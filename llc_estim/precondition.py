"""Fixed preconditioners for the sampler: per-parameter (diagonal) and curvature-based (low rank + isotropic).

A preconditioner is a symmetric positive definite P x P matrix A, used through its square root S = A^(1/2): the
sampler runs in coordinates z with w = w* + S z, where the potential U(w) = nbeta L_n(w) + gamma/2 |w - w*|^2 is as
well conditioned as A allows. SGLD in z is preconditioned SGLD in w (drift A grad U, noise covariance A), and the
Metropolis test in z is exact for the preconditioned proposal, because the map is linear and fixed.

The curvature preconditioner A = (nbeta H + gamma I)^(-1), with H from `curvature.hessian_eigen`, whitens every
quadratic direction: each then has unit scale in z, whatever its curvature (stiff compiled weights span 1e-5 to
1e4). Directions outside H's range keep the localization scale 1/sqrt(gamma).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from llc_estim.curvature import Curvature


class Preconditioner:
    """Base class: `sqrt_apply(z)` maps [..., P] whitened coordinates to parameter offsets S z."""

    kind = "identity"

    def sqrt_apply(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def inv_sqrt_apply(self, x: torch.Tensor) -> torch.Tensor:
        """S^(-1) x: parameter offsets -> whitened coordinates (on the entries that move)."""
        return x

    def describe(self) -> dict:
        """A JSON-friendly summary recorded with every result."""
        return {"kind": self.kind}

    def check_size(self, num_params: int) -> None:
        """Raises ValueError when built for another number of sampled entries."""


class DiagonalPreconditioner(Preconditioner):
    """A = diag(scale): one variance scale per sampled entry (e.g. 1 / (nbeta diag(H) + gamma))."""

    kind = "diagonal"

    def __init__(self, scale: torch.Tensor):
        if scale.dim() != 1 or not torch.isfinite(scale).all() or (scale <= 0).any():
            raise ValueError("a diagonal preconditioner needs a 1-D tensor of positive finite scales")
        self.scale = scale
        self._sqrt = scale.sqrt()

    def sqrt_apply(self, z: torch.Tensor) -> torch.Tensor:
        return z * self._sqrt

    def inv_sqrt_apply(self, x: torch.Tensor) -> torch.Tensor:
        return x / self._sqrt

    def check_size(self, num_params: int) -> None:
        if self.scale.numel() != num_params:
            raise ValueError(f"diagonal preconditioner has {self.scale.numel()} entries, the sampler {num_params}")

    def describe(self) -> dict:
        return {"kind": self.kind, "min_scale": float(self.scale.min()), "max_scale": float(self.scale.max())}


class LowRankPreconditioner(Preconditioner):
    """A = V diag(a) V^T + c (M - V V^T): eigenvectors V [P, r] with variances a [r], variance c elsewhere.

    M is the 0/1 mask of entries that move (V must vanish outside it); frozen entries never move.
    """

    kind = "curvature"

    def __init__(self, V: torch.Tensor, a: torch.Tensor, c: float, mask: Optional[torch.Tensor] = None,
                 info: Optional[dict] = None):
        if V.dim() != 2 or a.shape != (V.shape[1],):
            raise ValueError(f"need V [P, r] and a [r], got {tuple(V.shape)} and {tuple(a.shape)}")
        if not (math.isfinite(c) and c > 0) or (a <= 0).any() or not torch.isfinite(a).all():
            raise ValueError("variances must be positive and finite")
        self.V, self.a, self.c, self.mask = V, a, float(c), mask
        self._d = a.sqrt() - math.sqrt(c)
        self.info = info or {}

    def sqrt_apply(self, z: torch.Tensor) -> torch.Tensor:
        base = z if self.mask is None else z * self.mask
        return ((z @ self.V) * self._d) @ self.V.T + math.sqrt(self.c) * base

    def inv_sqrt_apply(self, x: torch.Tensor) -> torch.Tensor:
        base = x if self.mask is None else x * self.mask
        return ((x @ self.V) * (self.a.rsqrt() - 1 / math.sqrt(self.c))) @ self.V.T + base / math.sqrt(self.c)

    def check_size(self, num_params: int) -> None:
        if self.V.shape[0] != num_params:
            raise ValueError(f"preconditioner is for {self.V.shape[0]} entries, the sampler has {num_params}")

    def describe(self) -> dict:
        return {"kind": self.kind, "rank": int(self.V.shape[1]), "min_variance": float(self.a.min()),
                "max_variance": float(self.a.max()), "complement_variance": self.c, **self.info}


def curvature_preconditioner(curvature: Curvature, nbeta: float, localization: float,
                             mask: Optional[torch.Tensor] = None) -> LowRankPreconditioner:
    """A = (nbeta H + gamma I)^(-1) from the Hessian's eigenpairs (gamma > 0 needed for the flat directions)."""
    if not localization > 0:
        raise ValueError("the curvature preconditioner needs localization > 0 (flat directions get 1/gamma)")
    h = curvature.eigenvalues
    return LowRankPreconditioner(curvature.eigenvectors, 1.0 / (nbeta * h + localization), 1.0 / localization, mask,
                                 info={"hessian": curvature.method})


def diagonal_preconditioner(hessian_diagonal: torch.Tensor, nbeta: float, localization: float) -> DiagonalPreconditioner:
    """A = diag(1 / (nbeta max(diag H, 0) + gamma))."""
    if not localization > 0:
        raise ValueError("the diagonal preconditioner needs localization > 0")
    return DiagonalPreconditioner(1.0 / (nbeta * hessian_diagonal.clamp(min=0) + localization))
