"""Exact conversion of a compiled (Haiku) model into a `torch.nn.Module`.

Heads are split using `num_heads` and `key_size` from the model config (an earlier attempt inferred one merged
head from the weight shapes and silently broke every multi-head program), so each head owns its own parameters:

    token_embed [V, D], pos_embed [P, D]                                  (trainable embeddings)
    blocks.{i}.attn.heads.{h}.{W_Q,W_K,W_V} [D, K], {b_Q,b_K,b_V} [K], W_O [K, D]
    blocks.{i}.attn.b_O [D]
    blocks.{i}.mlp.{W_in [D, M], b_in [M], W_out [M, D], b_out [D]}
    unembed [D, n_out]                                                    (a buffer, never trained)

`run_with_cache` returns named activations (hook points), one to one with the Haiku output:
`blocks.{i}.hook_resid_mid` == residuals[2i], `blocks.{i}.hook_resid_post` == residuals[2i+1],
`blocks.{i}.attn.hook_logits` == attn_logits[i], plus `hook_pattern`, `hook_attn_out`, `hook_mlp_out`, `hook_embed`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

MASK_VALUE = -1e30  # the Haiku model's fill value for masked logits


class Head(nn.Module):
    """One attention head's parameters (W_O maps the head's value space back to the residual)."""

    def __init__(self, d_model: int, key_size: int):
        super().__init__()
        for n in ("Q", "K", "V"):
            self.register_parameter(f"W_{n}", nn.Parameter(torch.zeros(d_model, key_size)))
            self.register_parameter(f"b_{n}", nn.Parameter(torch.zeros(key_size)))
        self.W_O = nn.Parameter(torch.zeros(key_size, d_model))


class Attention(nn.Module):
    def __init__(self, d_model: int, num_heads: int, key_size: int):
        super().__init__()
        self.key_size = key_size
        self.heads = nn.ModuleList(Head(d_model, key_size) for _ in range(num_heads))
        self.b_O = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache: Optional[dict], prefix: str) -> torch.Tensor:
        # x [B, T, D]; mask [B, 1, T, T] (True = may attend)
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
    def __init__(self, d_model: int, hidden: int):
        super().__init__()
        self.W_in = nn.Parameter(torch.zeros(d_model, hidden))
        self.b_in = nn.Parameter(torch.zeros(hidden))
        self.W_out = nn.Parameter(torch.zeros(hidden, d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ self.W_in + self.b_in) @ self.W_out + self.b_out


class Block(nn.Module):
    def __init__(self, d_model: int, num_heads: int, key_size: int, hidden: int):
        super().__init__()
        self.attn = Attention(d_model, num_heads, key_size)
        self.mlp = MLP(d_model, hidden)


class CompiledTransformer(nn.Module):
    """The compiled transformer in PyTorch: same function, named parameters, fixed readout.

    Build it with `to_torch(model)`. `forward(ids)` returns the final residual stream [B, T, D].
    """

    def __init__(self, model, dtype: torch.dtype = torch.float64, device: Optional[torch.device] = None):
        super().__init__()
        cfg = model.model_config
        if cfg.layer_norm:
            raise NotImplementedError("layer norm is not supported: compiled weights assume none")
        self.num_layers, self.num_heads, self.key_size = cfg.num_layers, cfg.num_heads, cfg.key_size
        self.mlp_hidden_size, self.causal = cfg.mlp_hidden_size, cfg.causal
        self.residual_labels = list(model.residual_labels)
        self.input_encoder, self.output_encoder = model.input_encoder, model.output_encoder
        self.categorical_output = model.is_categorical_output
        self.components = list(model.components)
        D = len(self.residual_labels)
        p = model.params
        self.token_embed = nn.Parameter(_t(p["token_embed"]["embeddings"]))
        self.pos_embed = nn.Parameter(_t(p["pos_embed"]["embeddings"]))
        self.blocks = nn.ModuleList(Block(D, cfg.num_heads, cfg.key_size, cfg.mlp_hidden_size)
                                    for _ in range(cfg.num_layers)).to(torch.float64)  # copy without rounding
        K = cfg.key_size
        with torch.no_grad():
            for i, blk in enumerate(self.blocks):
                pre = f"transformer/layer_{i}"
                for h, head in enumerate(blk.attn.heads):
                    cols = slice(h * K, (h + 1) * K)  # Haiku packs heads as [D, H * K]
                    for n, hk_name in (("Q", "query"), ("K", "key"), ("V", "value")):
                        getattr(head, f"W_{n}").copy_(_t(p[f"{pre}/attn/{hk_name}"]["w"][:, cols]))
                        getattr(head, f"b_{n}").copy_(_t(p[f"{pre}/attn/{hk_name}"]["b"][cols]))
                    head.W_O.copy_(_t(p[f"{pre}/attn/linear"]["w"][cols, :]))
                blk.attn.b_O.copy_(_t(p[f"{pre}/attn/linear"]["b"]))
                blk.mlp.W_in.copy_(_t(p[f"{pre}/mlp/linear_1"]["w"]))
                blk.mlp.b_in.copy_(_t(p[f"{pre}/mlp/linear_1"]["b"]))
                blk.mlp.W_out.copy_(_t(p[f"{pre}/mlp/linear_2"]["w"]))
                blk.mlp.b_out.copy_(_t(p[f"{pre}/mlp/linear_2"]["b"]))
        self.register_buffer("unembed", _unembedding(self.residual_labels, self.output_encoder))
        self.to(dtype=dtype, device=device)

    # -- tokens ---------------------------------------------------------------------------------------------
    @property
    def bos_id(self) -> int:
        return self.input_encoder.bos_encoding

    @property
    def pad_id(self) -> int:
        return self.input_encoder.pad_encoding

    def encode(self, batch: Sequence[Sequence]) -> torch.Tensor:
        """Token lists (BOS optional) -> ids [B, T], BOS first, padded with `compiler_pad`.

        Raises:
            ValueError: unknown token or sequence longer than `max_seq_len`.
        """
        bos = self.input_encoder.bos_token
        rows = [self.input_encoder.encode(list(xs) if (xs and xs[0] == bos) else [bos, *xs]) for xs in batch]
        T = max(len(r) for r in rows)
        ids = [r + [self.pad_id] * (T - len(r)) for r in rows]
        return torch.tensor(ids, dtype=torch.long, device=self.unembed.device)

    # -- forward --------------------------------------------------------------------------------------------
    def attention_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """[B, 1, T, T]: keys that are not padding (and not in the future, if causal)."""
        T = ids.shape[1]
        mask = (ids != self.pad_id)[:, None, None, :]
        if self.causal:
            mask = mask & torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
        return mask

    def run_with_cache(self, ids: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Forward pass returning (final residual [B, T, D], named activations)."""
        cache: dict = {}
        return self._forward(ids, cache), cache

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self._forward(ids, None)

    def _forward(self, ids: torch.Tensor, cache: Optional[dict]) -> torch.Tensor:
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
            mlp_out = blk.mlp(x)
            if cache is not None:
                cache[f"blocks.{i}.hook_attn_out"], cache[f"blocks.{i}.hook_resid_mid"] = attn_out, x
            x = x + mlp_out
            if cache is not None:
                cache[f"blocks.{i}.hook_mlp_out"], cache[f"blocks.{i}.hook_resid_post"] = mlp_out, x
        return x

    def readout(self, residual: torch.Tensor) -> torch.Tensor:
        """Fixed projection onto the output space: [B, T, D] -> [B, T, n_out]."""
        return residual @ self.unembed

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> list[list]:
        """Runs the model and decodes each row like `model.apply(...).decoded` (pads dropped)."""
        out = self.readout(self.forward(ids))
        rows = []
        for b in range(ids.shape[0]):
            T = int((ids[b] != self.pad_id).sum())
            if self.categorical_output:
                vals = self.output_encoder.decode(out[b, :T].argmax(-1).tolist())
            else:
                vals = self.output_encoder.decode(out[b, :T, 0].tolist())
            rows.append([self.input_encoder.bos_token] + vals[1:])
        return rows

    # -- parameter groups -----------------------------------------------------------------------------------
    def component_params(self) -> dict[str, list[str]]:
        """Parameter names per component: `embed`, `L{i}.H{h}` (one head), `L{i}.MLP`, `L{i}.attn_out_bias`."""
        groups: dict[str, list[str]] = {"embed": ["token_embed", "pos_embed"]}
        for i, blk in enumerate(self.blocks):
            for h in range(len(blk.attn.heads)):
                groups[f"L{i}.H{h}"] = [f"blocks.{i}.attn.heads.{h}.{n}" for n in
                                        ("W_Q", "b_Q", "W_K", "b_K", "W_V", "b_V", "W_O")]
            groups[f"L{i}.attn_out_bias"] = [f"blocks.{i}.attn.b_O"]
            groups[f"L{i}.MLP"] = [f"blocks.{i}.mlp.{n}" for n in ("W_in", "b_in", "W_out", "b_out")]
        return groups

    def component_labels(self) -> dict[str, list[str]]:
        """Which RASP expressions each component implements (from the compiler's layer allocation)."""
        out: dict[str, list[str]] = {}
        for c in self.components:
            key = f"L{c.layer}.H{c.head}" if c.kind == "attn" else f"L{c.layer}.MLP"
            out.setdefault(key, []).extend(c.labels)
        return out


def _t(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64))


def _unembedding(residual_labels: list[str], output_encoder) -> torch.Tensor:
    """[D, n_out] projection onto the output directions, found by label (never by position)."""
    index = {lbl: i for i, lbl in enumerate(residual_labels)}
    out_labels = [str(d) for d in output_encoder.basis]
    missing = [lbl for lbl in out_labels if lbl not in index]
    if missing:
        raise ValueError(f"output directions {missing} are not in the residual labels")
    m = torch.zeros(len(residual_labels), len(out_labels), dtype=torch.float64)
    for j, lbl in enumerate(out_labels):
        m[index[lbl], j] = 1.0
    return m


def to_torch(model, dtype: torch.dtype = torch.float64, device: Optional[torch.device] = None) -> CompiledTransformer:
    """Converts an `AssembledTransformerModel` into an equivalent `CompiledTransformer`."""
    return CompiledTransformer(model, dtype=dtype, device=device)
