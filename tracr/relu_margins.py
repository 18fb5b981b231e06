"""How far the ReLUs of a compiled model sit from their kinks, measured on given inputs.

A hidden unit whose pre-activation is exactly 0 on some input sits at its kink: the slightest change of its
weights switches it on in one direction and does nothing in the other, so the loss landscape around the compiled
weights is one-sided there. `compile_rasp_to_model(..., relu_margin=m)` promises `|pre-activation| >= m` for every
hidden unit (padding units included) at every real position and at BOS; `relu_margins` measures it. Pad positions
are reported separately: they are not outputs, and their inputs need not be clean.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Optional, Sequence

import torch

from tracr.haiku_to_pytorch import to_torch
from tracr.torch_body import TransformerBody


@dataclasses.dataclass(frozen=True)
class ReluMargins:
    """The distance of every ReLU from its kink over a batch of inputs.

    Attributes:
        smallest: the smallest |pre-activation| over every hidden unit at every real position, BOS included (inf
            for a model without hidden units).
        at_kink: how many (unit, position) pairs there have |pre-activation| <= `kink_tol`.
        pairs: how many (unit, position) pairs were looked at.
        at_kink_by_component: `at_kink` split by component: `L{layer}.MLP:{expression label}`, or
            `L{layer}.MLP:padding` for the units the assembler adds to fill a layer.
        worst: where `smallest` was found: (layer, unit, sequence, position); None without hidden units.
        smallest_at_pads: the smallest |pre-activation| at pad positions (inf if the batch has none).
    """

    smallest: float
    at_kink: int
    pairs: int
    at_kink_by_component: dict
    worst: Optional[tuple]
    smallest_at_pads: float


def preactivations(model, token_lists: Sequence[Sequence]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Hidden pre-activations of every layer's MLP on a batch of token lists.

    Args:
        model: a compiled model (converted with `to_torch` in float64) or a torch `TransformerBody` with `encode`.
        token_lists: sequences of tokens, BOS optional.

    Returns:
        ([B, T, M] per layer, real [B, T]: the non-pad positions, BOS included).
    """
    torch_model = model if isinstance(model, TransformerBody) else to_torch(model, dtype=torch.float64)
    ids = torch_model.encode(token_lists)
    with torch.no_grad():
        _, cache = torch_model.run_with_cache(ids)
    pre = [cache[f"blocks.{i}.mlp.hook_pre"] for i in range(torch_model.num_layers)]
    return pre, ids != torch_model.pad_id


def _unit_owner(components, layer: int, unit: int) -> str:
    for c in components:
        if c.kind == "mlp" and c.layer == layer and c.hidden[0] <= unit < c.hidden[1]:
            return f"L{layer}.MLP:{c.labels[0]}"
    return f"L{layer}.MLP:padding"


def relu_margins(model, token_lists: Sequence[Sequence], kink_tol: float = 1e-12) -> ReluMargins:
    """Measures how far every hidden ReLU of `model` stays from its kink on `token_lists` (see `ReluMargins`).

    Args:
        model: a compiled model or a torch `TransformerBody` (see `preactivations`).
        token_lists: inputs, BOS optional.
        kink_tol: |pre-activation| up to which a unit counts as at its kink.
    """
    pre, real = preactivations(model, token_lists)
    components = getattr(model, "components", [])
    smallest, worst, smallest_pads, at_kink, pairs = math.inf, None, math.inf, 0, 0
    by_component: collections.Counter = collections.Counter()
    for layer, p in enumerate(pre):
        size = p.abs().to(torch.float64)  # [B, T, M]
        if size.shape[-1] == 0:
            continue
        on_real = size.masked_fill(~real[..., None], math.inf)
        value = float(on_real.min())
        if value < smallest:
            b, t, unit = (int(i) for i in torch.nonzero(on_real == value)[0])
            smallest, worst = value, (layer, unit, b, t)
        smallest_pads = min(smallest_pads, float(size.masked_fill(real[..., None], math.inf).min()))
        kinked = on_real <= kink_tol
        at_kink += int(kinked.sum())
        pairs += int(real.sum()) * size.shape[-1]
        for unit, count in enumerate(kinked.sum((0, 1)).tolist()):
            if count:
                by_component[_unit_owner(components, layer, unit)] += count
    return ReluMargins(smallest, at_kink, pairs, dict(by_component), worst, smallest_pads)
