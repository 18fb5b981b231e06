"""Aggregate as one attention head, with BOS as the "nothing selected" default.

Every position but BOS carries `bos = 0`; BOS carries exactly `bos + one` in the S-op directions the head
reads (the compiler keeps every S-op zero at BOS). Scores before softmax: `C` for a selected key, `C/2` for BOS
(`C` with `always_attend_to_bos`), 0 otherwise. BOS wins only when nothing is selected, and the value read at BOS
is the default: the zero vector (None, or 0 for numerical aggregates). `C` is the softmax coldness (default 100):
a query with one selected key leaks a weight of about `exp(-C/2)` to BOS, so a lower coldness gives a smoother
but less exact head.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tracr.craft import bases, transformers, vectorspace_fns as vf
from tracr.craft.chamber.user_functions import safe

BD = bases.BasisDirection
Space = bases.VectorSpaceWithBasis
SOFTMAX_COLDNESS = 100.0


def categorical_attn(
    query_space: Space,
    key_space: Space,
    value_space: Space,
    output_space: Space,
    bos_dir: BD,
    one_dir: BD,
    predicate: Callable,
    value_to_output: Callable[[BD], dict],
    always_attend_to_bos: bool = False,
    softmax_coldness: float = SOFTMAX_COLDNESS,
    label: str = "",
) -> transformers.AttentionHead:
    """Builds the head.

    Args:
        query_space, key_space: categorical spaces of the Select's queries and keys.
        value_space, output_space: what the head reads and writes.
        predicate: `predicate(key_value, query_value) -> bool`.
        value_to_output: maps a value direction to {output direction: weight}.
        always_attend_to_bos: give BOS the full score (SelectorWidth counts with it).
        softmax_coldness: the score `C` of a selected key (finite, > 0).

    Raises:
        ValueError: a non-positive or non-finite `softmax_coldness`.
    """
    if not (np.isfinite(softmax_coldness) and softmax_coldness > 0):
        raise ValueError(f"softmax_coldness must be finite and positive, got {softmax_coldness!r}")

    def selects(key, query) -> bool:
        return bool(predicate(key, query))

    left = bases.join_vector_spaces(query_space, Space([one_dir]))
    right = bases.join_vector_spaces(key_space, Space([bos_dir]))
    qk = np.zeros((left.num_dims, right.num_dims))
    for q in query_space.basis:
        for k in key_space.basis:
            if safe(selects, k.value, q.value):
                qk[left.index(q), right.index(k)] = softmax_coldness
    qk[left.index(one_dir), right.index(bos_dir)] = softmax_coldness * (1.0 if always_attend_to_bos else 0.5)
    ov = vf.Linear.from_action(value_space, output_space, value_to_output)
    return transformers.AttentionHead(vf.ScalarBilinear(left, right, qk), ov, label=label)
