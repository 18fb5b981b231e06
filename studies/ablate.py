"""Ablating a component of a compiled or trained transformer: the body's layout plus the estimator's weight edits.

`tracr.torch_components` says which entries make up a component and where it writes; `llc_estim.ablation` edits
the weights (model-agnostic). This module joins the two, so compiled and trained models are ablated by one code path.
"""

from __future__ import annotations

from typing import Optional

import torch

from llc_estim.ablation import ablate
from tracr.torch_components import Component


def ablate_component(model, comp: Component, mode: str = "zero", ids: Optional[torch.Tensor] = None):
    """Returns (ablated model, removed masks) of a compiled or trained transformer; the original is unchanged.

    `mode`: "zero", or "mean" (needs `ids`, the data to average the component's output over, at real positions).

    Raises:
        ValueError: unknown mode, or mean-ablation without ids or of a component that writes into the embeddings.
    """
    if mode != "mean":
        return ablate(model, comp.masks, mode)
    if comp.layer < 0:
        raise ValueError(f"{comp.name} writes into the embeddings; mean-ablation has no bias to fold into")
    if ids is None:
        raise ValueError("mean-ablation needs the data ids to average over")
    hook, bias = comp.site
    return ablate(model, comp.masks, "mean", activation=lambda m: m.run_with_cache(ids)[1][hook],
                  weight=ids != model.pad_id, bias=bias)
