"""Lookup-table MLPs for categorical inputs (exact: inputs are one-hot)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from tracr.craft import bases, transformers, vectorspace_fns as vf
from tracr.craft.chamber.user_functions import safe

BD = bases.BasisDirection
Space = bases.VectorSpaceWithBasis


def map_categorical_mlp(input_space: Space, output_space: Space, f: Callable, hidden_name: str) -> transformers.MLP:
    """Categorical -> categorical: one hidden unit per output value; input x switches on unit f(x)."""
    hidden = Space(BD(hidden_name, d.value) for d in output_space.basis)
    out_name = output_space.basis[0].name if output_space.num_dims else hidden_name

    def first(d: bases.BasisDirection):
        y = safe(f, d.value)
        h = BD(hidden_name, y)
        return {h: 1.0} if h in hidden else {}

    fst = vf.Linear.from_action(input_space, hidden, first)
    snd = vf.Linear.from_action(hidden, output_space, lambda h: {BD(out_name, h.value): 1.0})
    return transformers.MLP(fst, snd)


def map_categorical_to_numerical_mlp(
    input_space: Space, output_space: Space, f: Callable, hidden_name: str
) -> transformers.MLP:
    """Categorical -> numerical: `out = sum_x f(x) 1[x]`, split into a positive and a negative ReLU unit.

    tracr used a single unit, so negative outputs were clipped to 0 (its issue #24); two units keep the sign.
    """
    (out_dir,) = output_space.basis
    ys = np.array([float(safe(f, d.value) or 0.0) for d in input_space.basis])
    names = [BD(f"{hidden_name}", "+")] + ([BD(f"{hidden_name}", "-")] if (ys < 0).any() else [])
    hidden = Space(names)
    m1 = np.zeros((input_space.num_dims, hidden.num_dims))
    m1[:, hidden.index(BD(hidden_name, "+"))] = np.maximum(ys, 0)
    m2 = np.zeros((hidden.num_dims, 1))
    m2[hidden.index(BD(hidden_name, "+")), 0] = 1.0
    if (ys < 0).any():
        m1[:, hidden.index(BD(hidden_name, "-"))] = np.maximum(-ys, 0)
        m2[hidden.index(BD(hidden_name, "-")), 0] = -1.0
    return transformers.MLP(vf.Linear(input_space, hidden, m1), vf.Linear(hidden, output_space, m2))


def sequence_map_categorical_mlp(
    input1: Space, input2: Space, output_space: Space, f: Callable, hidden_name: str, one_dir: bases.BasisDirection
) -> transformers.MLP:
    """Categorical SequenceMap: one AND-gate unit per input pair, `ReLU(1[x] + 1[y] - 1)`."""
    if set(input1.basis) & set(input2.basis):
        raise ValueError("sequence_map_categorical_mlp needs disjoint input spaces; use a Map for f(x, x)")
    out_name = output_space.basis[0].name if output_space.num_dims else hidden_name
    pairs = [(x, y) for x in input1.basis for y in input2.basis]
    hidden = Space(BD(hidden_name, (x.name, x.value, y.name, y.value)) for x, y in pairs)
    in_space = bases.join_vector_spaces(input1, input2, Space([one_dir]))
    m1 = np.zeros((in_space.num_dims, hidden.num_dims))
    m2 = np.zeros((hidden.num_dims, output_space.num_dims))
    for x, y in pairs:
        j = hidden.index(BD(hidden_name, (x.name, x.value, y.name, y.value)))
        m1[in_space.index(x), j] = 1.0
        m1[in_space.index(y), j] = 1.0
        m1[in_space.index(one_dir), j] = -1.0
        out = BD(out_name, safe(f, x.value, y.value))
        if out in output_space:
            m2[j, output_space.index(out)] = 1.0
    return transformers.MLP(vf.Linear(in_space, hidden, m1), vf.Linear(hidden, output_space, m2))
