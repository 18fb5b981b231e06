"""The one torch transformer body shared by the converted compiled model and the trainable one.

Embeddings, blocks and hook points; no readout (the compiled model adds a fixed unembedding, the trainable one a
trained readout). Parameter names:

    token_embed [V, D], pos_embed [P, D]
    blocks.{i}.attn.heads.{h}.{W_Q,W_K,W_V} [D, K], {b_Q,b_K,b_V} [K], W_O [K, D]
    blocks.{i}.attn.b_O [D]
    blocks.{i}.mlp.{W_in [D, M], b_in [M], W_out [M, D], b_out [D]}

Attention scales logits by 1/sqrt(key_size), masks padding keys (and future keys when causal) with the Haiku
model's fill value, and mixes positions, never batch rows. No LayerNorm. `run_with_cache` returns named activations:
`hook_embed`, `blocks.{i}.attn.hook_logits`, `blocks.{i}.attn.hook_pattern`, `blocks.{i}.hook_attn_out`,
`blocks.{i}.hook_resid_mid`, `blocks.{i}.mlp.hook_pre` (hidden pre-activations [B, T, M]),
`blocks.{i}.hook_mlp_out`, `blocks.{i}.hook_resid_post`.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

MASK_VALUE = -1e30  # the Haiku model's fill value for masked logits
HEAD_PARAMS = ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O")
MLP_PARAMS = ("W_in", "b_in", "W_out", "b_out")


class Head(nn.Module):
    """One attention head's parameters (W_O maps the head's value space back to the residual)."""

    def __init__(self, d_model: int, key_size: int):
        super().__init__()
        for n in ("Q", "K", "V"):
            self.register_parameter(f"W_{n}", nn.Parameter(torch.zeros(d_model, key_size)))
            self.register_parameter(f"b_{n}", nn.Parameter(torch.zeros(key_size)))
        self.W_O = nn.Parameter(torch.zeros(key_size, d_model))


class Attention(nn.Module):
    """Multi-head attention with one parameter set per head and a shared output bias."""

    def __init__(self, d_model: int, num_heads: int, key_size: int):
        super().__init__()
        self.key_size = key_size
        self.heads = nn.ModuleList(Head(d_model, key_size) for _ in range(num_heads))
        self.b_O = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: Optional[dict], prefix: str) -> torch.Tensor:
        """x [B, T, D], mask [B, 1, T, T] (True = may attend) -> [B, T, D]; logits and pattern go to `cache`."""
        W = {n: torch.stack([getattr(h, f"W_{n}") for h in self.heads]) for n in "QKV"}  # [H, D, K]
        b = {n: torch.stack([getattr(h, f"b_{n}") for h in self.heads]) for n in "QKV"}  # [H, K]
        q = torch.einsum("btd,hdk->bhtk", x, W["Q"]) + b["Q"][None, :, None]
        k = torch.einsum("btd,hdk->bhtk", x, W["K"]) + b["K"][None, :, None]
        v = torch.einsum("btd,hdk->bhtk", x, W["V"]) + b["V"][None, :, None]
        logits = torch.einsum("bhtk,bhsk->bhts", q, k) / math.sqrt(self.key_size)  # [B, H, T, T]
        logits = logits.masked_fill(~mask, MASK_VALUE)
        pattern = torch.softmax(logits, dim=-1)
        z = torch.einsum("bhts,bhsk->bhtk", pattern, v)  # [B, H, T, K]
        W_O = torch.stack([h.W_O for h in self.heads])  # [H, K, D]
        out = torch.einsum("bhtk,hkd->btd", z, W_O) + self.b_O
        if cache is not None:
            cache[f"{prefix}.hook_logits"], cache[f"{prefix}.hook_pattern"] = logits, pattern
        return out


class MLP(nn.Module):
    """ReLU MLP: relu(x W_in + b_in) W_out + b_out."""

    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.W_in = nn.Parameter(torch.zeros(d_model, hidden))
        self.b_in = nn.Parameter(torch.zeros(hidden))
        self.W_out = nn.Parameter(torch.zeros(hidden, d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor, cache: Optional[dict] = None, prefix: str = "") -> torch.Tensor:
        """x [B, T, D] -> [B, T, D]; the hidden pre-activations go to `cache` as `{prefix}.hook_pre`."""
        pre = x @ self.W_in + self.b_in
        if cache is not None:
            cache[f"{prefix}.hook_pre"] = pre
        return torch.relu(pre) @ self.W_out + self.b_out


class Block(nn.Module):
    """Attention then MLP, each added to the residual stream."""

    def __init__(self, d_model: int, num_heads: int, key_size: int, hidden: int):
        super().__init__()
        self.attn = Attention(d_model, num_heads, key_size)
        self.mlp = MLP(d_model, hidden)


class TransformerBody(nn.Module):
    """Token and position embeddings plus blocks, all zero-initialised parameters; `forward` is the residual.

    Subclasses set the weights (copied from a compiled model, or drawn at random) and add a readout.

    Attributes:
        num_layers, num_heads, key_size, mlp_hidden_size: the architecture.
        pad_id: the padding token id (padding keys are never attended to).
        causal: mask future keys.
    """

    def __init__(self, vocab_size: int, max_len: int, d_model: int, num_layers: int, num_heads: int, key_size: int,
                 mlp_hidden_size: int, pad_id: int, causal: bool = False):
        super().__init__()
        self.num_layers, self.num_heads, self.key_size = num_layers, num_heads, key_size
        self.mlp_hidden_size, self.pad_id, self.causal = mlp_hidden_size, pad_id, causal
        self.token_embed = nn.Parameter(torch.zeros(vocab_size, d_model))
        self.pos_embed = nn.Parameter(torch.zeros(max_len, d_model))
        self.blocks = nn.ModuleList(Block(d_model, num_heads, key_size, mlp_hidden_size) for _ in range(num_layers))

    def attention_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, 1, T, T]: keys that are not padding (and not in the future, if causal)."""
        T = ids.shape[1]
        mask = (ids != self.pad_id)[:, None, None, :]
        if self.causal:
            mask = mask & torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
        return mask

    def residual(self, ids: torch.Tensor, cache: Optional[dict] = None) -> torch.Tensor:
        """The final residual stream [B, T, D] of ids [B, T]; named activations go into `cache` if given.

        Raises:
            ValueError: more positions than the position embedding has.
        """
        T = ids.shape[1]
        if T > self.pos_embed.shape[0]:
            raise ValueError(f"sequence of length {T} exceeds max_seq_len + 1 = {self.pos_embed.shape[0]}")
        x = self.token_embed[ids] + self.pos_embed[:T][None]  # [B, T, D]
        mask = self.attention_mask(ids)
        if cache is not None:
            cache["hook_embed"] = x
        for i, blk in enumerate(self.blocks):
            attn_out = blk.attn(x, mask, cache, f"blocks.{i}.attn")
            x = x + attn_out
            mlp_out = blk.mlp(x, cache, f"blocks.{i}.mlp")
            if cache is not None:
                cache[f"blocks.{i}.hook_attn_out"], cache[f"blocks.{i}.hook_resid_mid"] = attn_out, x
            x = x + mlp_out
            if cache is not None:
                cache[f"blocks.{i}.hook_mlp_out"], cache[f"blocks.{i}.hook_resid_post"] = mlp_out, x
        return x

    def run_with_cache(self, ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Forward pass returning (final residual [B, T, D], named activations)."""
        cache: dict = {}
        return self.residual(ids, cache), cache

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.residual(ids)

    def component_params(self) -> dict[str, list[str]]:
        """Parameter names per component: `embed`, `L{i}.H{h}` (one head), `L{i}.MLP`, `L{i}.attn_out_bias`."""
        groups: dict[str, list[str]] = {"embed": ["token_embed", "pos_embed"]}
        for i, blk in enumerate(self.blocks):
            for h in range(len(blk.attn.heads)):
                groups[f"L{i}.H{h}"] = [f"blocks.{i}.attn.heads.{h}.{n}" for n in HEAD_PARAMS]
            groups[f"L{i}.attn_out_bias"] = [f"blocks.{i}.attn.b_O"]
            groups[f"L{i}.MLP"] = [f"blocks.{i}.mlp.{n}" for n in MLP_PARAMS]
        return groups
