"""Which parameter entries make up a component of a `TransformerBody` (the layout side of ablations).

A component owns a set of parameter entries (boolean masks per parameter name):
  * a head `L{i}.H{h}`: all of its Q/K/V/O weights and biases;
  * an MLP layer `L{i}.MLP`: W_in, b_in, W_out (the output bias b_out stays: it belongs to the layer, not to a
    stored expression);
  * one expression's slice of a merged MLP `L{i}.MLP[label]`: its hidden units' columns of W_in/b_in and rows of W_out;
  * a residual direction `dir[label]`: the columns of every writer (head outputs, MLP outputs, embeddings,
    biases) into the S-op's value space, found through `residual_labels`.
Heads and MLP layers come from the body's structure, so compiled and trained models are described by the same code;
slices and directions need the compiler's labels, so only compiled models have them. `Component.site` names the
hook point where the component writes and the bias a mean-ablation folds its mean output into. The edits themselves
are model-agnostic (`llc_estim.ablation`).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Optional

import torch

from tracr.torch_body import HEAD_PARAMS, TransformerBody

MLP_OWNED = ("W_in", "b_in", "W_out")  # b_out belongs to the layer, not to a stored expression


@dataclasses.dataclass
class Component:
    """A set of parameter entries.

    Attributes:
        name: `L{i}.H{h}`, `L{i}.MLP`, `L{i}.MLP[label]` or `dir[label]`.
        kind: "head" | "mlp" | "mlp_slice" | "direction".
        layer: the block it writes in (-1: the embeddings).
        masks: parameter name -> bool tensor (True = owned by the component).
        labels: the RASP expressions it implements (empty for trained models).
    """

    name: str
    kind: str
    layer: int
    masks: dict
    labels: list

    @property
    def num_params(self) -> int:
        """Number of owned entries."""
        return int(sum(int(m.sum()) for m in self.masks.values()))

    @property
    def site(self) -> tuple[str, str]:
        """(hook of the output where the component writes, bias that mean-ablation folds into)."""
        i = self.layer
        writes_attn = any(".attn." in n and "heads" in n and m.any() for n, m in self.masks.items())
        if self.kind == "head" or (self.kind == "direction" and writes_attn):
            return f"blocks.{i}.hook_attn_out", f"blocks.{i}.attn.b_O"
        return f"blocks.{i}.hook_mlp_out", f"blocks.{i}.mlp.b_out"


def _full(p: torch.Tensor) -> torch.Tensor:
    return torch.ones_like(p, dtype=torch.bool)


def _head(params: dict, i: int, h: int, labels: list) -> Component:
    names = [f"blocks.{i}.attn.heads.{h}.{n}" for n in HEAD_PARAMS]
    return Component(f"L{i}.H{h}", "head", i, {n: _full(params[n]) for n in names}, labels)


def _mlp(params: dict, i: int, labels: list) -> Component:
    names = [f"blocks.{i}.mlp.{n}" for n in MLP_OWNED]
    return Component(f"L{i}.MLP", "mlp", i, {n: _full(params[n]) for n in names}, labels)


def structural_components(model: TransformerBody) -> list[Component]:
    """Every head and MLP layer of the body, in layer order (no labels: works for trained models)."""
    params = dict(model.named_parameters())
    out = []
    for i, blk in enumerate(model.blocks):
        out += [_head(params, i, h, []) for h in range(len(blk.attn.heads))]
        out.append(_mlp(params, i, []))
    return out


def components(tm, include_directions: bool = True) -> list[Component]:
    """Every used head, MLP layer, per-expression MLP slice (in layers implementing several) and S-op direction
    of a converted compiled model (`tracr.haiku_to_pytorch.CompiledTransformer`)."""
    params = dict(tm.named_parameters())
    labels = tm.component_labels()
    out = []
    for i, blk in enumerate(tm.blocks):
        for h in range(len(blk.attn.heads)):
            if labels.get(f"L{i}.H{h}"):  # unused (all-zero) heads implement nothing
                out.append(_head(params, i, h, labels[f"L{i}.H{h}"]))
        if labels.get(f"L{i}.MLP"):
            out.append(_mlp(params, i, labels[f"L{i}.MLP"]))
        slices = [c for c in tm.components if c.layer == i and c.kind == "mlp"]
        if len(slices) > 1:
            out += [_mlp_slice(params, i, c) for c in slices]
    if include_directions:
        for c in tm.components:
            for lbl in c.labels:
                comp = direction_component(tm, lbl)
                if comp is not None and all(comp.name != o.name for o in out):
                    out.append(comp)
    return out


def _mlp_slice(params: dict, i: int, c) -> Component:
    a, b = c.hidden
    m_in = torch.zeros_like(params[f"blocks.{i}.mlp.W_in"], dtype=torch.bool)
    m_in[:, a:b] = True
    m_b = torch.zeros_like(params[f"blocks.{i}.mlp.b_in"], dtype=torch.bool)
    m_b[a:b] = True
    m_out = torch.zeros_like(params[f"blocks.{i}.mlp.W_out"], dtype=torch.bool)
    m_out[a:b, :] = True
    return Component(f"L{i}.MLP[{c.labels[0]}]", "mlp_slice", i,
                     {f"blocks.{i}.mlp.W_in": m_in, f"blocks.{i}.mlp.b_in": m_b, f"blocks.{i}.mlp.W_out": m_out},
                     list(c.labels))


def direction_columns(tm, label: str) -> list[int]:
    """Residual indices of an S-op: `label` (numerical) or `label:value` (categorical)."""
    pat = re.compile(rf"^{re.escape(label)}(:.*)?$")
    return [j for j, r in enumerate(tm.residual_labels) if pat.match(r)]


def direction_component(tm, label: str) -> Optional[Component]:
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


def rescaled(model: TransformerBody, mlp: float = 1.0, qk: float = 1.0) -> TransformerBody:
    """A copy that computes the same function with rescaled weights (a reparametrisation; the true LLC is unchanged).

    Every MLP's W_in and b_in are multiplied by `mlp` and W_out divided by it (ReLU is positively homogeneous);
    every head's W_Q and b_Q are multiplied by `qk` and W_K and b_K divided by it (the scores q.k are unchanged).

    Raises:
        ValueError: a factor that is not a positive finite number.
    """
    for name, a in (("mlp", mlp), ("qk", qk)):
        if not (isinstance(a, (int, float)) and 0 < a < float("inf")):
            raise ValueError(f"{name} factor must be a positive finite number, got {a!r}")
    new = copy.deepcopy(model)
    with torch.no_grad():
        for blk in new.blocks:
            blk.mlp.W_in.mul_(mlp)
            blk.mlp.b_in.mul_(mlp)
            blk.mlp.W_out.div_(mlp)
            for head in blk.attn.heads:
                head.W_Q.mul_(qk)
                head.b_Q.mul_(qk)
                head.W_K.div_(qk)
                head.b_K.div_(qk)
    return new
