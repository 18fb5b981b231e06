"""MLPs for numerical inputs: discretising lookup tables and the exact LinearSequenceMap.

Discretisation. Sort the input values `x_0 < ... < x_{n-1}` and put a threshold `t_k` halfway between neighbours.
A pair of ReLUs makes a clipped ramp `r_k(x) = clip(s_k (x - t_k) + 1/2, 0, 1)`, which is 0 for
`x <= t_k - 1/(2 s_k)` and 1 for `x >= t_k + 1/(2 s_k)`. The output is `y_0 + sum_k (y_k - y_{k-1}) r_k(x)`,
which telescopes to `y_i` on input `x_i`. Unlike tracr (one global slope, exact only while every half-gap is at
least 1/L), each threshold gets the slope `s_k = max(L, 4 / gap_k)`, so every input value sits 3/8 of a gap away
from the ramp: exact for any value set, robust to small numerical error.

Every unit carrying a bias is switched off at the BOS position (a `-K * bos` term), so the block writes nothing at
BOS and later attention heads can rely on BOS carrying only `bos + one`.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from tracr.craft import bases, transformers, vectorspace_fns as vf
from tracr.craft.chamber.user_functions import safe

BD = bases.BasisDirection
Space = bases.VectorSpaceWithBasis


def _discretise(input_values, f: Callable, slope: float):
    """Sorted (x, y) pairs where f is defined, and per-threshold (t_k, s_k, k)."""
    pts = sorted((float(x), safe(f, x)) for x in set(input_values))
    pts = [(x, y) for x, y in pts if y is not None]
    if not pts:
        raise ValueError("discretising MLP: the function is undefined on every input value")
    ramps = []
    for k in range(1, len(pts)):
        gap = pts[k][0] - pts[k - 1][0]
        ramps.append(((pts[k][0] + pts[k - 1][0]) / 2, max(slope, 4.0 / gap), k))
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
    """
    (x_dir,) = input_space.basis
    pts, ramps = _discretise(input_values, f, slope)

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
    m1[ione, j], m1[ibos, j] = 1.0, -1.0
    m2[j] = out_vec(pts[0][1])
    for t, s, k in ramps:
        # Silences the unit at BOS, where x is 0 (S-ops are zero there) or, for SelectorWidth's helper, a value of
        # the input set: cover both.
        kill = s * max(abs(t), abs(pts[0][0] - t), abs(pts[-1][0] - t)) + 2.0
        delta = out_vec(pts[k][1]) - out_vec(pts[k - 1][1])
        for side, offset in ((0, 0.5), (1, -0.5)):
            j = hidden.index(BD(hidden_name, (k, side)))
            m1[ix, j] = s
            m1[ione, j] = -s * t + offset
            m1[ibos, j] = -kill
            m2[j] = delta if side == 0 else -delta
    return transformers.MLP(vf.Linear(in_space, hidden, m1), vf.Linear(hidden, output_space, m2))


def linear_sequence_map_numerical_mlp(
    input1: Space, input2: Space, output_space: Space, fst_fac: float, snd_fac: float, hidden_name: str
) -> transformers.MLP:
    """`a x + b y` exactly, with units ReLU(x), ReLU(-x), ReLU(y), ReLU(-y). Works when x and y coincide."""
    (x_dir,), (y_dir,), (out_dir,) = input1.basis, input2.basis, output_space.basis
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
) -> transformers.MLP:
    """A discretising MLP, optionally merged in parallel with `extra` (e.g. SelectorWidth's BOS clean-up)."""
    mlp = discretising_mlp(input_space, output_space, input_values, f, hidden_name, one_dir, bos_dir, slope,
                           categorical_output)
    return transformers.MLP.combine_in_parallel([mlp, extra]) if extra is not None else mlp
