"""Ablations as weight edits (never forward-pass bypasses), for any `torch.nn.Module`.

A component is given as boolean masks per parameter name (True = the entries it owns); which entries make up a
head or an MLP is the model's business (for our transformers: `tracr.torch_components`). Zero-ablation sets the
entries to 0. Mean-ablation also adds the component's mean output over a data set (its contribution to an
activation, averaged over the weighted positions) to a bias parameter. `ablate` returns a new model and the removed
entries; the original is unchanged. Sample the ablated model with `param_masks=keep_masks(removed)` so removed
entries get no noise.
"""

from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
from torch import nn


def zero_ablate(model: nn.Module, masks: dict) -> nn.Module:
    """A copy of `model` with the masked entries set to 0."""
    new = copy.deepcopy(model)
    params = dict(new.named_parameters())
    with torch.no_grad():
        for name, m in masks.items():
            params[name][m] = 0.0
    return new


def ablate(model: nn.Module, masks: dict, mode: str = "zero", *,
           activation: Optional[Callable[[nn.Module], torch.Tensor]] = None, weight: Optional[torch.Tensor] = None,
           bias: Optional[str] = None) -> tuple[nn.Module, dict]:
    """Returns (ablated model, removed masks).

    Args:
        mode: "zero", or "mean": zero the entries, then add to parameter `bias` the weighted mean over all but the
            last dimension of `activation(model) - activation(ablated)` (`weight` broadcasts against the
            activation without its last dimension, e.g. 1 on real positions and 0 on padding).

    Raises:
        ValueError: unknown mode, or mean-ablation without `activation`, `weight` and `bias`.
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"unknown ablation mode {mode!r}")
    new = zero_ablate(model, masks)
    if mode == "mean":
        if activation is None or weight is None or bias is None:
            raise ValueError("mean-ablation needs the activation, the position weights and the bias to fold into")
        with torch.no_grad():
            old_out, new_out = activation(model), activation(new)
            w = weight.to(old_out.dtype)[..., None]
            mean = ((old_out - new_out) * w).sum(tuple(range(old_out.dim() - 1))) / w.sum()
            dict(new.named_parameters())[bias].add_(mean)
    return new, masks


def keep_masks(removed: dict) -> dict:
    """`param_masks` for the sampler: every entry except the removed ones."""
    return {n: ~m for n, m in removed.items()}
