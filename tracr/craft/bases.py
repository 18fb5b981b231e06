"""Named bases: the vocabulary of the residual stream.

Every residual dimension is a `BasisDirection(name, value)`: `tokens:a`, `indices:3`, `frac_prevs_7` (a
numerical S-op, value None), `one`. Spaces are kept sorted by a *total* order, so the layout of the residual
stream, the token ids and the output ids are deterministic even for mixed-type value sets.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Iterable, Sequence

import numpy as np


def _value_key(value: Any) -> tuple:
    """Total order on values: None < numbers < strings < anything else (by repr)."""
    if value is None:
        return (0, 0)
    if isinstance(value, numbers.Real):
        return (1, float(value), repr(value))
    if isinstance(value, str):
        return (2, value)
    return (3, type(value).__name__, repr(value))


@dataclasses.dataclass(frozen=True)
class BasisDirection:
    """One named residual dimension. `value` is None for numerical S-ops and helper directions."""

    name: str
    value: Any = None

    def sort_key(self) -> tuple:
        return (self.name, _value_key(self.value))

    def __lt__(self, other: "BasisDirection") -> bool:
        return self.sort_key() < other.sort_key()

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


class VectorSpaceWithBasis:
    """An ordered set of basis directions (always sorted)."""

    def __init__(self, basis: Iterable[BasisDirection]):
        self.basis: list[BasisDirection] = sorted(set(basis), key=BasisDirection.sort_key)
        self._index = {d: i for i, d in enumerate(self.basis)}

    @classmethod
    def from_names(cls, names: Iterable[str]) -> "VectorSpaceWithBasis":
        return cls(BasisDirection(n) for n in names)

    @classmethod
    def from_values(cls, name: str, values: Iterable[Any]) -> "VectorSpaceWithBasis":
        return cls(BasisDirection(name, v) for v in values)

    @property
    def num_dims(self) -> int:
        return len(self.basis)

    def index(self, direction: BasisDirection) -> int:
        return self._index[direction]

    def __contains__(self, direction: BasisDirection) -> bool:
        return direction in self._index

    def __iter__(self):
        return iter(self.basis)

    def __len__(self) -> int:
        return len(self.basis)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VectorSpaceWithBasis) and self.basis == other.basis

    def issubspace(self, other: "VectorSpaceWithBasis") -> bool:
        return all(d in other for d in self.basis)

    def vector(self, direction: BasisDirection) -> np.ndarray:
        """The one-hot row vector of `direction` in this space."""
        v = np.zeros(self.num_dims)
        v[self.index(direction)] = 1.0
        return v

    def projection_to(self, other: "VectorSpaceWithBasis") -> np.ndarray:
        """Matrix [self, other]: identity on shared directions, zero elsewhere."""
        m = np.zeros((self.num_dims, other.num_dims))
        for i, d in enumerate(self.basis):
            if d in other:
                m[i, other.index(d)] = 1.0
        return m

    def __repr__(self) -> str:
        return f"VectorSpaceWithBasis({[str(d) for d in self.basis]})"


def join_vector_spaces(*spaces: VectorSpaceWithBasis) -> VectorSpaceWithBasis:
    """The sorted union of several spaces."""
    return VectorSpaceWithBasis(d for s in spaces for d in s.basis)


def direct_sum(*spaces: VectorSpaceWithBasis) -> VectorSpaceWithBasis:
    """Union of spaces that must not overlap."""
    seen: set[BasisDirection] = set()
    for s in spaces:
        overlap = seen.intersection(s.basis)
        if overlap:
            raise ValueError(f"direct_sum of overlapping spaces: {sorted(map(str, overlap))}")
        seen.update(s.basis)
    return VectorSpaceWithBasis(seen)


def embed(x: np.ndarray, space: VectorSpaceWithBasis, target: VectorSpaceWithBasis) -> np.ndarray:
    """Re-expresses the rows of `x` (coordinates in `space`) in `target` (missing directions dropped)."""
    return x @ space.projection_to(target)


def values_of(directions: Sequence[BasisDirection]) -> list[Any]:
    return [d.value for d in directions]
