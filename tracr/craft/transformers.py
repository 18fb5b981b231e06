"""Craft blocks: attention heads and MLPs over named spaces, with numpy reference forward passes.

A block reads from and writes to a residual stream given as an array `[T, D]` in a residual space. The forward
passes here are the ground truth the assembled Haiku model is tested against.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import numpy as np

from tracr.craft import bases, vectorspace_fns as vf


@dataclasses.dataclass
class AttentionHead:
    """One head: logits `q W_QK k^T` (no 1/sqrt(d) scaling at this level) and values through `W_OV`.

    Attributes:
        w_qk: bilinear form, query side `left`, key side `right`.
        w_ov: linear map from the value space to the output space.
        causal: mask keys after the query.
        label: the RASP expression this head implements (for ablation tables).
    """

    w_qk: vf.ScalarBilinear
    w_ov: vf.Linear
    causal: bool = False
    label: str = ""

    @property
    def input_spaces(self) -> list[bases.VectorSpaceWithBasis]:
        return [self.w_qk.left_space, self.w_qk.right_space, self.w_ov.input_space]

    @property
    def residual_space(self) -> bases.VectorSpaceWithBasis:
        return bases.join_vector_spaces(*self.input_spaces, self.w_ov.output_space)

    def forward(self, x: np.ndarray, space: bases.VectorSpaceWithBasis) -> np.ndarray:
        q = bases.embed(x, space, self.w_qk.left_space)
        k = bases.embed(x, space, self.w_qk.right_space)
        logits = q @ self.w_qk.matrix @ k.T
        if self.causal:
            logits = np.where(np.tril(np.ones_like(logits)) > 0, logits, -np.inf)
        logits = logits - logits.max(axis=-1, keepdims=True)
        w = np.exp(logits)
        w /= w.sum(axis=-1, keepdims=True)
        v = bases.embed(x, space, self.w_ov.input_space) @ self.w_ov.matrix
        return bases.embed(w @ v, self.w_ov.output_space, space)


@dataclasses.dataclass
class MultiAttentionHead:
    """Heads that run in parallel in one layer; their outputs add."""

    heads: list[AttentionHead]

    @property
    def residual_space(self) -> bases.VectorSpaceWithBasis:
        return bases.join_vector_spaces(*(h.residual_space for h in self.heads))

    def forward(self, x: np.ndarray, space: bases.VectorSpaceWithBasis) -> np.ndarray:
        return sum(h.forward(x, space) for h in self.heads)


@dataclasses.dataclass
class MLP:
    """`snd(ReLU(fst(x)))`. Hidden directions are named uniquely per block, so parallel MLPs never share units.

    Attributes:
        labels: the RASP expressions this MLP implements (several after merging in parallel).
    """

    fst: vf.Linear
    snd: vf.Linear
    labels: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self):
        if self.fst.output_space != self.snd.input_space:
            raise ValueError("MLP hidden spaces of the two layers differ")

    @property
    def hidden_space(self) -> bases.VectorSpaceWithBasis:
        return self.fst.output_space

    @property
    def residual_space(self) -> bases.VectorSpaceWithBasis:
        return bases.join_vector_spaces(self.fst.input_space, self.snd.output_space)

    def forward(self, x: np.ndarray, space: bases.VectorSpaceWithBasis) -> np.ndarray:
        h = np.maximum(bases.embed(x, space, self.fst.input_space) @ self.fst.matrix, 0.0)
        return bases.embed(h @ self.snd.matrix, self.snd.output_space, space)

    @classmethod
    def combine_in_parallel(cls, mlps: list["MLP"]) -> "MLP":
        """One wider MLP computing the sum of `mlps`; their hidden directions must be disjoint."""
        bases.direct_sum(*(m.hidden_space for m in mlps))  # raises on shared hidden units (tracr bug B)
        return cls(
            vf.combine_in_parallel([m.fst for m in mlps]),
            vf.combine_in_parallel([m.snd for m in mlps]),
            labels=[lbl for m in mlps for lbl in m.labels],
        )


Block = Union[AttentionHead, MultiAttentionHead, MLP]


@dataclasses.dataclass
class SeriesWithResiduals:
    """Blocks applied in turn, each adding its output to the residual: `x <- x + block(x)`."""

    blocks: list[Block]
    residual_space: Optional[bases.VectorSpaceWithBasis] = None

    def __post_init__(self):
        if self.residual_space is None:
            self.residual_space = bases.join_vector_spaces(*(b.residual_space for b in self.blocks))

    def forward(self, x: np.ndarray, space: Optional[bases.VectorSpaceWithBasis] = None) -> np.ndarray:
        space = space or self.residual_space
        for b in self.blocks:
            x = x + b.forward(x, space)
        return x
