"""SelectorWidth as an attention head plus a discretising MLP.

The head attends to BOS and to every selected key with equal scores and reads the `bos` direction, so a query
with `w` selected keys receives `1/(w+1)` in a private direction. The MLP maps `1/(w+1) -> w` (numerical or
one-hot). A clean-up unit `ReLU(bos)` removes the head's write at BOS. Its name is unique per SelectorWidth, so
two SelectorWidths in one layer no longer share it (tracr bug B applied the clean-up twice). With a ReLU margin
`m > 0` the clean-up unit is `ReLU((A + m) bos - m one)` with output weight `-1/A` (`A = active_level(m)`): `A` at
BOS, `-m` elsewhere, instead of sitting at its kink at every other position.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from tracr.craft import bases, transformers, vectorspace_fns as vf
from tracr.craft.chamber import categorical_attn, categorical_mlp, numerical_mlp

BD = bases.BasisDirection
Space = bases.VectorSpaceWithBasis


def selector_width(
    query_space: Space,
    key_space: Space,
    output_space: Space,
    predicate: Callable,
    max_seq_len: int,
    bos_dir: BD,
    one_dir: BD,
    label: str,
    categorical_output: bool,
    slope: float = 100.0,
    softmax_coldness: float = categorical_attn.SOFTMAX_COLDNESS,
    relu_margin: float = 0.0,
) -> tuple[transformers.AttentionHead, transformers.MLP]:
    """Returns the (head, MLP) pair computing the width of `Select(keys, queries, predicate)` into `output_space`.

    `slope` is the discretising MLP's minimum ramp slope, `softmax_coldness` the head's score of a selected key,
    `relu_margin` the distance every MLP unit keeps from its kink.
    """
    helper = Space([BD(f"{label}_selector_width_attn_output")])
    head = categorical_attn.categorical_attn(
        query_space, key_space, Space([bos_dir]), helper, bos_dir, one_dir, predicate,
        value_to_output=lambda d: {helper.basis[0]: 1.0}, always_attend_to_bos=True,
        softmax_coldness=softmax_coldness, label=label,
    )
    clean_name = f"_hidden_{label}_clean_bos"
    clean_hidden = Space([BD(clean_name)])
    clean_in = Space([bos_dir, one_dir])
    on = categorical_mlp.active_level(relu_margin)
    w_in = np.zeros((2, 1))
    w_in[clean_in.index(bos_dir)] = on + relu_margin
    w_in[clean_in.index(one_dir)] -= relu_margin
    clean = transformers.MLP(
        vf.Linear(clean_in, clean_hidden, w_in),
        vf.Linear(clean_hidden, helper, -np.ones((1, 1)) / on),
    )
    widths = range(max_seq_len + 1)
    mlp = numerical_mlp.numerical_map_mlp(
        helper, output_space, [1.0 / (w + 1) for w in widths], lambda x: int(round(1.0 / x - 1.0)),
        f"_hidden_{label}_width", one_dir, bos_dir, slope, categorical_output, extra=clean, relu_margin=relu_margin,
    )
    mlp.labels = [label]
    return head, mlp
