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


def ablate_components(model, comps: list, mode: str = "zero", ids: Optional[torch.Tensor] = None):
    """Several components at once (e.g. every head of a layer and its MLP): (ablated model, removed masks).

    Zero: every owned entry set to 0. Mean: the same, and at each component's output site the *removed* part of
    the output (the hook's value in the intact model minus its value with only that site's components removed,
    which is exactly their contribution because removing a sublayer's weights does not change that sublayer's
    input) is averaged over the real positions of `ids` and added to the site's bias. One component is
    `ablate_component`'s edit, so compiled and trained models go through the same code.

    Raises:
        ValueError: as `ablate_component`, or components that own the same entries.
    """
    from llc_estim.ablation import zero_ablate

    if len(comps) == 1:
        return ablate_component(model, comps[0], mode, ids)
    if mode not in ("zero", "mean"):
        raise ValueError(f"unknown ablation mode {mode!r}")
    masks: dict = {}
    for c in comps:
        for name, m in c.masks.items():
            if name in masks and bool((masks[name] & m).any()):
                raise ValueError(f"components overlap in {name}")
            masks[name] = masks[name] | m if name in masks else m.clone()
    new = zero_ablate(model, masks)
    if mode == "mean":
        if ids is None:
            raise ValueError("mean-ablation needs the data ids to average over")
        if any(c.layer < 0 for c in comps):
            raise ValueError("a component writes into the embeddings; mean-ablation has no bias to fold into")
        sites: dict = {}
        for c in comps:
            sites.setdefault(c.site, []).append(c)
        weight = (ids != model.pad_id).to(next(model.parameters()).dtype)[..., None]
        with torch.no_grad():
            old = model.run_with_cache(ids)[1]
            params = dict(new.named_parameters())
            for (hook, bias), members in sites.items():
                site_masks: dict = {}
                for c in members:
                    site_masks.update({n: site_masks[n] | m if n in site_masks else m for n, m in c.masks.items()})
                without = zero_ablate(model, site_masks).run_with_cache(ids)[1][hook]
                diff = (old[hook] - without) * weight
                params[bias].add_(diff.sum(tuple(range(diff.dim() - 1))) / weight.sum())
    return new, masks
