"""Ablations as weight edits on a converted compiled model (never forward-pass bypasses).

A component owns a set of parameter entries (boolean masks per parameter name):
  * a head `L{i}.H{h}`: all of its Q/K/V/O weights and biases;
  * an MLP layer `L{i}.MLP`: W_in, b_in, W_out (the output bias b_out stays: it belongs to the layer, not to a
    stored expression);
  * one expression's slice of a merged MLP `L{i}.MLP[label]`: its hidden units' columns of W_in/b_in and rows of W_out;
  * a residual direction `dir[label]`: the columns of every writer (head outputs, MLP outputs, embeddings,
    biases) into the S-op's value space, found through `residual_labels`.
Zero-ablation sets the entries to 0. Mean-ablation also adds the component's mean output over a data set (its
contribution at the layer where it writes, averaged over non-pad positions) to that layer's output bias.
`ablate` returns a new model and the removed entries; the original is unchanged. Sample the ablated model with
`param_masks=keep_masks(...)` so removed entries get no noise.

Works on any module with the parameter layout of `tracr.haiku_to_pytorch.CompiledTransformer` (duck-typed).
"""

from __future__ import annotations

import copy
import dataclasses
import re

import torch

HEAD_PARAMS = ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O")


@dataclasses.dataclass
class Component:
    name: str
    kind: str  # "head" | "mlp" | "mlp_slice" | "direction"
    layer: int  # where it writes (-1: embeddings)
    masks: dict  # parameter name -> bool tensor (True = owned by the component)
    labels: list  # RASP expressions it implements

    @property
    def num_params(self) -> int:
        return int(sum(int(m.sum()) for m in self.masks.values()))


def _full(p: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(p, dtype=torch.bool)


def components(tm, include_directions: bool = True) -> list[Component]:
    """Every head, MLP layer, per-expression MLP slice (in layers implementing several) and S-op direction."""
    params = dict(tm.named_parameters())
    labels = tm.component_labels()
    out = []
    for i, blk in enumerate(tm.blocks):
        for h in range(len(blk.attn.heads)):
            names = [f"blocks.{i}.attn.heads.{h}.{n}" for n in HEAD_PARAMS]
            lbl = labels.get(f"L{i}.H{h}", [])
            if lbl:  # unused (all-zero) heads implement nothing
                out.append(Component(f"L{i}.H{h}", "head", i, {n: _full(params[n]) for n in names}, lbl))
        mlp_labels = labels.get(f"L{i}.MLP", [])
        if mlp_labels:
            names = [f"blocks.{i}.mlp.{n}" for n in ("W_in", "b_in", "W_out")]
            out.append(Component(f"L{i}.MLP", "mlp", i, {n: _full(params[n]) for n in names}, mlp_labels))
        slices = [c for c in tm.components if c.layer == i and c.kind == "mlp"]
        if len(slices) > 1:
            for c in slices:
                a, b = c.hidden
                m_in = torch.zeros_like(params[f"blocks.{i}.mlp.W_in"], dtype=torch.bool)
                m_in[:, a:b] = True
                m_b = torch.zeros_like(params[f"blocks.{i}.mlp.b_in"], dtype=torch.bool)
                m_b[a:b] = True
                m_out = torch.zeros_like(params[f"blocks.{i}.mlp.W_out"], dtype=torch.bool)
                m_out[a:b, :] = True
                out.append(Component(f"L{i}.MLP[{c.labels[0]}]", "mlp_slice", i,
                                     {f"blocks.{i}.mlp.W_in": m_in, f"blocks.{i}.mlp.b_in": m_b,
                                      f"blocks.{i}.mlp.W_out": m_out}, list(c.labels)))
    if include_directions:
        for c in tm.components:
            for lbl in c.labels:
                comp = direction_component(tm, lbl)
                if comp is not None and all(comp.name != o.name for o in out):
                    out.append(comp)
    return out


def structural_components(model) -> list[Component]:
    """Heads and MLP layers found from parameter names alone (for trained models, which have no RASP labels)."""
    params = dict(model.named_parameters())
    out = []
    for name in params:
        m = re.match(r"^blocks\.(\d+)\.attn\.heads\.(\d+)\.W_Q$", name)
        if m:
            i, h = int(m.group(1)), int(m.group(2))
            names = [f"blocks.{i}.attn.heads.{h}.{n}" for n in HEAD_PARAMS]
            out.append(Component(f"L{i}.H{h}", "head", i, {n: _full(params[n]) for n in names}, []))
        m = re.match(r"^blocks\.(\d+)\.mlp\.W_in$", name)
        if m:
            i = int(m.group(1))
            names = [f"blocks.{i}.mlp.{n}" for n in ("W_in", "b_in", "W_out")]
            out.append(Component(f"L{i}.MLP", "mlp", i, {n: _full(params[n]) for n in names}, []))
    return out


def direction_columns(tm, label: str) -> list[int]:
    """Residual indices of an S-op: `label` (numerical) or `label:value` (categorical)."""
    pat = re.compile(rf"^{re.escape(label)}(:.*)?$")
    return [j for j, r in enumerate(tm.residual_labels) if pat.match(r)]


def direction_component(tm, label: str):
    """Every parameter entry that writes into the S-op's residual directions, or None if it has none."""
    cols = direction_columns(tm, label)
    if not cols:
        return None
    masks, layer = {}, None
    for name, p in tm.named_parameters():
        writes = name in ("token_embed", "pos_embed") or name.endswith(("W_O", "b_O", "W_out", "b_out"))
        if not writes:
            continue
        m = torch.zeros_like(p, dtype=torch.bool)
        m[..., cols] = True
        if bool((p.detach()[..., cols] != 0).any()):
            layer = int(name.split(".")[1]) if name.startswith("blocks.") else -1
        masks[name] = m
    return Component(f"dir[{label}]", "direction", layer if layer is not None else -1, masks, [label])


def _site(comp: Component) -> tuple[str, str]:
    """(hook of the output where the component writes, bias that mean-ablation folds into)."""
    i = comp.layer
    if comp.kind == "head" or (comp.kind == "direction" and any(".attn." in n and "heads" in n and m.any()
                                                                 for n, m in comp.masks.items())):
        return f"blocks.{i}.hook_attn_out", f"blocks.{i}.attn.b_O"
    return f"blocks.{i}.hook_mlp_out", f"blocks.{i}.mlp.b_out"


def _zeroed(tm, comp: Component):
    new = copy.deepcopy(tm)
    params = dict(new.named_parameters())
    with torch.no_grad():
        for name, m in comp.masks.items():
            params[name][m] = 0.0
    return new


def ablate(tm, comp: Component, mode: str = "zero", ids: torch.Tensor = None):
    """Returns (ablated model, removed masks). `mode`: "zero" or "mean" (needs `ids`, the data to average over).

    Raises:
        ValueError: unknown mode, or mean-ablation of a component that writes into the embeddings.
    """
    if mode not in ("zero", "mean"):
        raise ValueError(f"unknown ablation mode {mode!r}")
    new = _zeroed(tm, comp)
    if mode == "mean":
        if comp.layer < 0:
            raise ValueError(f"{comp.name} writes into the embeddings; mean-ablation has no bias to fold into")
        if ids is None:
            raise ValueError("mean-ablation needs the data ids to average over")
        hook, bias = _site(comp)
        with torch.no_grad():
            _, c_old = tm.run_with_cache(ids)
            _, c_new = new.run_with_cache(ids)
            real = (ids != tm.pad_id).to(c_old[hook].dtype)[..., None]
            contrib = (c_old[hook] - c_new[hook]) * real
            mean = contrib.sum((0, 1)) / real.sum()
            dict(new.named_parameters())[bias].add_(mean)
    return new, comp.masks


def keep_masks(tm, removed: dict) -> dict:
    """param_masks for the sampler: every entry except the removed ones."""
    return {n: ~m for n, m in removed.items()}
