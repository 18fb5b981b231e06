"""MLPs for numerical inputs: discretising lookup tables and the exact LinearSequenceMap.

Discretisation. Sort the input values `x_0 < ... < x_{n-1}` and put a threshold `t_k` halfway between neighbours.
A pair of ReLUs makes a clipped ramp `r_k(x) = clip(s_k (x - t_k) + 1/2, 0, 1)`, which is 0 for
`x <= t_k - 1/(2 s_k)` and 1 for `x >= t_k + 1/(2 s_k)`. The output is `y_0 + sum_k (y_k - y_{k-1}) r_k(x)`,
which telescopes to `y_i` on input `x_i`. Unlike tracr (one global slope, exact only while every half-gap is at
least 1/L), each threshold gets the slope `s_k = max(L, 4 / gap_k)`, so every input value sits 3/8 of a gap away
from the ramp: exact for any value set, robust to small numerical error.

Every unit carrying a bias is switched off at the BOS position (a `-K * bos` term), so the block writes nothing at
BOS and later attention heads can rely on BOS carrying only `bos + one`.

ReLU margin. With `relu_margin = m > 0` no unit sits at its kink on a value of the input set or at BOS: every
pre-activation is `>= m` or `<= -m` and the output is unchanged (see `categorical_mlp`). The ramps already keep
`s_k gap_k / 2 - 1/2 >= 3/2` away from 0 at the data (their slopes grow when `m` exceeds that), the start unit is
`A one - (A + m) bos`, and the LinearSequenceMap shifts its inputs by constants (see there).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from tracr.craft import bases, transformers, vectorspace_fns as vf
from tracr.craft.chamber.categorical_mlp import active_level
from tracr.craft.chamber.user_functions import safe

BD = bases.BasisDirection
Space = bases.VectorSpaceWithBasis


def _discretise(input_values, f: Callable, slope: float, relu_margin: float):
    """Sorted (x, y) pairs where f is defined, and per-threshold (t_k, s_k, k).

    The threshold between defined neighbours lies halfway across the gap between them. With a margin, input values
    where f is undefined may lie in that gap too: the threshold then goes halfway across the widest gap between
    consecutive input values there, so that no input value comes near a ramp. `s_k gap_k / 2 - 1/2`, the distance
    of a ramp unit from its kink at the nearest input value, is at least `max(3/2, relu_margin)`.
    """
    values = sorted((float(x), safe(f, x)) for x in set(input_values))
    pts = [(x, y) for x, y in values if y is not None]
    if not pts:
        raise ValueError("discretising MLP: the function is undefined on every input value")
    ramps = []
    for k in range(1, len(pts)):
        lo, hi = pts[k - 1][0], pts[k][0]
        edges = [x for x, _ in values if lo <= x <= hi] if relu_margin > 0 else [lo, hi]
        a, b = max(zip(edges, edges[1:]), key=lambda e: e[1] - e[0])
        ramps.append(((a + b) / 2, max(slope, max(4.0, 2 * relu_margin + 1) / (b - a)), k))
    return pts, ramps


def discretising_mlp(
    input_space: Space,
    output_space: Space,
    input_values,
    f: Callable,
    hidden_name: str,
    one_dir: BD,
    bos_dir: BD,
    slope: float = 100.0,
    categorical_output: bool = False,
    relu_margin: float = 0.0,
) -> transformers.MLP:
    """Numerical input -> numerical or categorical output through a piecewise-constant lookup.

    Args:
        input_space: the single numerical input direction.
        output_space: one direction (numerical) or one per output value (categorical).
        input_values: every value the input can take.
        f: the map; inputs where it fails or returns None are skipped.
        hidden_name: unique prefix of the hidden units.
        slope: the minimum ramp slope (`mlp_exactness`).
        categorical_output: write one-hots instead of a scalar.
        relu_margin: keep every unit at least this far from its kink (see the module docstring).
    """
    (x_dir,) = input_space.basis
    pts, ramps = _discretise(input_values, f, slope, relu_margin)

    def out_vec(y) -> np.ndarray:
        v = np.zeros(output_space.num_dims)
        if categorical_output:
            d = BD(output_space.basis[0].name, y)
            if d not in output_space:
                raise ValueError(f"discretising MLP: output {y!r} not in the output space")
            v[output_space.index(d)] = 1.0
        else:
            v[0] = float(y)
        return v

    # Only thresholds where the output changes need units.
    ramps = [(t, s, k) for t, s, k in ramps if np.any(out_vec(pts[k][1]) != out_vec(pts[k - 1][1]))]
    hidden_dirs = [BD(hidden_name, "start")] + [BD(hidden_name, (k, side)) for _, _, k in ramps for side in (0, 1)]
    hidden = Space(hidden_dirs)
    in_space = bases.join_vector_spaces(input_space, Space([one_dir, bos_dir]))
    m1 = np.zeros((in_space.num_dims, hidden.num_dims))
    m2 = np.zeros((hidden.num_dims, output_space.num_dims))
    ix, ione, ibos = in_space.index(x_dir), in_space.index(one_dir), in_space.index(bos_dir)
    j = hidden.index(BD(hidden_name, "start"))
    on = active_level(relu_margin)
    m1[ione, j], m1[ibos, j] = on, -(on + relu_margin)
    m2[j] = out_vec(pts[0][1]) / on
    for t, s, k in ramps:
        # Silences the unit at BOS, where x is 0 (S-ops are zero there) or, for SelectorWidth's helper, a value of
        # the input set: cover both, leaving every unit at least max(3/2, relu_margin) below its kink.
        kill = s * max(abs(t), abs(pts[0][0] - t), abs(pts[-1][0] - t)) + (0.5 + max(1.5, relu_margin))
        delta = out_vec(pts[k][1]) - out_vec(pts[k - 1][1])
        for side, offset in ((0, 0.5), (1, -0.5)):
            j = hidden.index(BD(hidden_name, (k, side)))
            m1[ix, j] = s
            m1[ione, j] = -s * t + offset
            m1[ibos, j] = -kill
            m2[j] = delta if side == 0 else -delta
    return transformers.MLP(vf.Linear(in_space, hidden, m1), vf.Linear(hidden, output_space, m2))


def linear_sequence_map_numerical_mlp(
    input1: Space,
    input2: Space,
    output_space: Space,
    fst_fac: float,
    snd_fac: float,
    hidden_name: str,
    one_dir: BD,
    bos_dir: BD,
    fst_values,
    snd_values,
    relu_margin: float = 0.0,
) -> transformers.MLP:
    """`a x + b y` exactly. Works when x and y coincide.

    Without a margin: units ReLU(x), ReLU(-x), ReLU(y), ReLU(-y), each at its kink wherever its input is 0.
    With a margin `m`: one unit per input, `ReLU(x + c_x - (max(c_x, 0) + m) bos)` with `c_x = m - min(x values)`,
    which is `>= m` on every value of `x` and `<= -m` at BOS (where S-ops are 0); a unit
    `ReLU(A one - (A + m) bos)` with output weight `-(a c_x + b c_y) / A` removes the shifts off BOS.

    Args:
        fst_values, snd_values: the value sets of x and y (only used with a margin).
    """
    (x_dir,), (y_dir,) = input1.basis, input2.basis
    if relu_margin > 0:
        return _shifted_linear_sequence_map(
            ((x_dir, fst_fac, fst_values), (y_dir, snd_fac, snd_values)), output_space, hidden_name, one_dir,
            bos_dir, relu_margin)
    in_space = bases.join_vector_spaces(input1, input2)
    hidden = Space(BD(hidden_name, (side, sign)) for side in ("x", "y") for sign in (1, -1))
    m1 = np.zeros((in_space.num_dims, 4))
    m2 = np.zeros((4, 1))
    for side, d, fac in (("x", x_dir, fst_fac), ("y", y_dir, snd_fac)):
        for sign in (1, -1):
            j = hidden.index(BD(hidden_name, (side, sign)))
            m1[in_space.index(d), j] += sign
            m2[j, 0] = sign * fac
    return transformers.MLP(vf.Linear(in_space, hidden, m1), vf.Linear(hidden, output_space, m2))


def _shifted_linear_sequence_map(terms, output_space: Space, hidden_name: str, one_dir: BD, bos_dir: BD,
                                 relu_margin: float) -> transformers.MLP:
    """The margin construction of `linear_sequence_map_numerical_mlp`; `terms` is ((direction, factor, values),) * 2."""
    on = active_level(relu_margin)
    in_space = bases.join_vector_spaces(Space([d for d, _, _ in terms]), Space([one_dir, bos_dir]))
    hidden = Space([BD(hidden_name, "x"), BD(hidden_name, "y"), BD(hidden_name, "shift")])
    m1 = np.zeros((in_space.num_dims, hidden.num_dims))
    m2 = np.zeros((hidden.num_dims, 1))
    ione, ibos, k = in_space.index(one_dir), in_space.index(bos_dir), hidden.index(BD(hidden_name, "shift"))
    for side, (d, fac, values) in zip(("x", "y"), terms):
        shift = relu_margin - min(float(v) for v in values)
        j = hidden.index(BD(hidden_name, side))
        m1[in_space.index(d), j] = 1.0
        m1[ione, j] = shift
        m1[ibos, j] = -(max(shift, 0.0) + relu_margin)
        m2[j, 0] = fac
        m2[k, 0] -= fac * shift / on
    m1[ione, k], m1[ibos, k] = on, -(on + relu_margin)
    return transformers.MLP(vf.Linear(in_space, hidden, m1), vf.Linear(hidden, output_space, m2))


def numerical_map_mlp(
    input_space: Space,
    output_space: Space,
    input_values,
    f: Callable,
    hidden_name: str,
    one_dir: BD,
    bos_dir: BD,
    slope: float,
    categorical_output: bool,
    extra: Optional[transformers.MLP] = None,
    relu_margin: float = 0.0,
) -> transformers.MLP:
    """A discretising MLP, optionally merged in parallel with `extra` (e.g. SelectorWidth's BOS clean-up)."""
    mlp = discretising_mlp(input_space, output_space, input_values, f, hidden_name, one_dir, bos_dir, slope,
                           categorical_output, relu_margin)
    return transformers.MLP.combine_in_parallel([mlp, extra]) if extra is not None else mlp
