"""Linear maps and bilinear forms between named spaces (row-vector convention: `y = x @ M`)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from tracr.craft import bases


@dataclasses.dataclass
class Linear:
    """A matrix `[input_space, output_space]` acting on row vectors."""

    input_space: bases.VectorSpaceWithBasis
    output_space: bases.VectorSpaceWithBasis
    matrix: np.ndarray

    def __post_init__(self):
        expected = (self.input_space.num_dims, self.output_space.num_dims)
        if self.matrix.shape != expected:
            raise ValueError(f"Linear matrix has shape {self.matrix.shape}, expected {expected}")

    @classmethod
    def from_action(
        cls,
        input_space: bases.VectorSpaceWithBasis,
        output_space: bases.VectorSpaceWithBasis,
        action: Callable[[bases.BasisDirection], dict[bases.BasisDirection, float]],
    ) -> "Linear":
        """Builds the matrix row by row: `action(d)` maps an input direction to {output direction: weight}."""
        m = np.zeros((input_space.num_dims, output_space.num_dims))
        for i, d in enumerate(input_space.basis):
            for out_d, w in action(d).items():
                m[i, output_space.index(out_d)] += w
        return cls(input_space, output_space, m)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.matrix


@dataclasses.dataclass
class ScalarBilinear:
    """`score(query, key) = query @ W @ key^T`; `left` is the query side, `right` the key side."""

    left_space: bases.VectorSpaceWithBasis
    right_space: bases.VectorSpaceWithBasis
    matrix: np.ndarray

    def __post_init__(self):
        expected = (self.left_space.num_dims, self.right_space.num_dims)
        if self.matrix.shape != expected:
            raise ValueError(f"ScalarBilinear matrix has shape {self.matrix.shape}, expected {expected}")


def combine_in_parallel(fns: list[Linear]) -> Linear:
    """Sums linear maps after lifting each to the union of inputs and the union of outputs."""
    in_space = bases.join_vector_spaces(*(f.input_space for f in fns))
    out_space = bases.join_vector_spaces(*(f.output_space for f in fns))
    m = np.zeros((in_space.num_dims, out_space.num_dims))
    for f in fns:
        m += in_space.projection_to(f.input_space) @ f.matrix @ f.output_space.projection_to(out_space)
    return Linear(in_space, out_space, m)
