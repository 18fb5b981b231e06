"""Lookup-table MLPs for categorical inputs (exact: inputs are one-hot).

ReLU margin. With `relu_margin = m > 0` no unit sits at its kink on a clean input (a one-hot or the zero vector,
which is what every S-op holds at real positions, and the zero vector at BOS): every pre-activation is `>= m`
(the unit is on) or `<= -m` (off), and the output is unchanged. An "on" unit takes the value `active_level(m)`
and its output weight is divided by it; with `m = 0` the weights are tracr's (units exactly at 0 when off).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tracr.craft import bases, transformers, vectorspace_fns as vf
from tracr.craft.chamber.user_functions import safe

BD = bases.BasisDirection
Space = bases.VectorSpaceWithBasis


def active_level(relu_margin: float) -> float:
    """The pre-activation of a switched-on indicator unit: 1, or the margin when that is larger."""
    return max(1.0, relu_margin)


def map_categorical_mlp(input_space: Space, output_space: Space, f: Callable, hidden_name: str, one_dir: BD,
                        relu_margin: float = 0.0) -> transformers.MLP:
    """Categorical -> categorical: one hidden unit per output value; input x switches on unit f(x).

    Unit `h` has pre-activation `(A + m) 1[f(x) = h] - m` (`A = active_level(m)`): `A` when on, `-m` when off,
    also at BOS and where the input is None (all inputs 0). Its output weight is `1 / A`.
    """
    hidden = Space(BD(hidden_name, d.value) for d in output_space.basis)
    out_name = output_space.basis[0].name if output_space.num_dims else hidden_name
    on = active_level(relu_margin)
    in_space = bases.join_vector_spaces(input_space, Space([one_dir]))
    m1 = np.zeros((in_space.num_dims, hidden.num_dims))
    for d in input_space.basis:
        h = BD(hidden_name, safe(f, d.value))
        if h in hidden:
            m1[in_space.index(d), hidden.index(h)] = on + relu_margin
    m1[in_space.index(one_dir)] -= relu_margin
    snd = vf.Linear.from_action(hidden, output_space, lambda h: {BD(out_name, h.value): 1.0 / on})
    return transformers.MLP(vf.Linear(in_space, hidden, m1), snd)


def map_categorical_to_numerical_mlp(
    input_space: Space, output_space: Space, f: Callable, hidden_name: str, one_dir: BD, relu_margin: float = 0.0
) -> transformers.MLP:
    """Categorical -> numerical: `out = sum_x f(x) 1[x]`, split into a positive and a negative ReLU unit.

    tracr used a single unit, so negative outputs were clipped to 0 (its issue #24); two units keep the sign.
    With a margin `m` both units are shifted on: `ReLU(max(f(x), 0) + m) - ReLU(max(-f(x), 0) + m)` for a
    one-hot input (the shifts cancel), both `-m` (off) for the zero input; the "-" unit then always exists.
    """
    ys = np.array([float(safe(f, d.value) or 0.0) for d in input_space.basis])
    signs = ["+"] + (["-"] if (ys < 0).any() or relu_margin > 0 else [])
    hidden = Space(BD(hidden_name, s) for s in signs)
    in_space = bases.join_vector_spaces(input_space, Space([one_dir]))
    rows = [in_space.index(d) for d in input_space.basis]
    m1 = np.zeros((in_space.num_dims, hidden.num_dims))
    m2 = np.zeros((hidden.num_dims, 1))
    for sign, part in (("+", ys), ("-", -ys)):
        if sign in signs:
            j = hidden.index(BD(hidden_name, sign))
            m1[rows, j] = np.maximum(part, 0) + 2 * relu_margin
            m1[in_space.index(one_dir), j] -= relu_margin
            m2[j, 0] = 1.0 if sign == "+" else -1.0
    return transformers.MLP(vf.Linear(in_space, hidden, m1), vf.Linear(hidden, output_space, m2))


def sequence_map_categorical_mlp(
    input1: Space, input2: Space, output_space: Space, f: Callable, hidden_name: str, one_dir: BD,
    relu_margin: float = 0.0,
) -> transformers.MLP:
    """Categorical SequenceMap: one AND-gate unit per input pair, `ReLU((A + m)(1[x] + 1[y]) - (A + 2m))`.

    The pre-activation is `A = active_level(m)` when both inputs match, `-m` when one does and `-(A + 2m)` when
    neither does (BOS); the output weight is `1 / A`. With `m = 0` this is tracr's `ReLU(1[x] + 1[y] - 1)`.
    """
    if set(input1.basis) & set(input2.basis):
        raise ValueError("sequence_map_categorical_mlp needs disjoint input spaces; use a Map for f(x, x)")
    out_name = output_space.basis[0].name if output_space.num_dims else hidden_name
    on = active_level(relu_margin)
    pairs = [(x, y) for x in input1.basis for y in input2.basis]
    hidden = Space(BD(hidden_name, (x.name, x.value, y.name, y.value)) for x, y in pairs)
    in_space = bases.join_vector_spaces(input1, input2, Space([one_dir]))
    m1 = np.zeros((in_space.num_dims, hidden.num_dims))
    m2 = np.zeros((hidden.num_dims, output_space.num_dims))
    for x, y in pairs:
        j = hidden.index(BD(hidden_name, (x.name, x.value, y.name, y.value)))
        m1[in_space.index(x), j] = on + relu_margin
        m1[in_space.index(y), j] = on + relu_margin
        m1[in_space.index(one_dir), j] = -(on + 2 * relu_margin)
        out = BD(out_name, safe(f, x.value, y.value))
        if out in output_space:
            m2[j, output_space.index(out)] = 1.0 / on
    return transformers.MLP(vf.Linear(in_space, hidden, m1), vf.Linear(hidden, output_space, m2))
