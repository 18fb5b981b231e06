"""The Haiku transformer that compiled weights are written into.

Decoder-only, no LayerNorm, ReLU MLPs, attention logits scaled by 1/sqrt(key_size). Parameter tree:
`token_embed/embeddings`, `pos_embed/embeddings`, `transformer/layer_{i}/attn/{query,key,value,linear}/{w,b}`,
`transformer/layer_{i}/mlp/{linear_1,linear_2}/{w,b}`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple, Optional

import haiku as hk
import jax
import jax.numpy as jnp


@dataclasses.dataclass
class TransformerConfig:
    num_heads: int
    num_layers: int
    key_size: int
    mlp_hidden_size: int
    dropout_rate: float = 0.0
    activation_function: callable = jax.nn.relu
    layer_norm: bool = False
    causal: bool = False


class TransformerOutput(NamedTuple):  # a NamedTuple is a JAX pytree, so the forward can be jitted
    layer_outputs: list  # 2 * num_layers arrays [B, T, D]: attention out, MLP out, ...
    residuals: list  # residual after each half-layer, [B, T, D]
    attn_logits: list  # per layer [B, H, T, T], scaled and masked, before softmax
    output: jax.Array  # final residual [B, T, D]
    input_embeddings: jax.Array


class MultiHeadAttention(hk.Module):
    """Multi-head attention that also returns its logits."""

    def __init__(self, num_heads: int, key_size: int, name: Optional[str] = None):
        super().__init__(name=name)
        self.num_heads, self.key_size = num_heads, key_size

    def __call__(self, x: jax.Array, mask: jax.Array):
        B, T, D = x.shape
        H, K = self.num_heads, self.key_size
        q = hk.Linear(H * K, name="query")(x).reshape(B, T, H, K)
        k = hk.Linear(H * K, name="key")(x).reshape(B, T, H, K)
        v = hk.Linear(H * K, name="value")(x).reshape(B, T, H, K)
        logits = jnp.einsum("bthk,bshk->bhts", q, k) / math.sqrt(K)  # [B, H, T, T]
        logits = jnp.where(mask, logits, -1e30)
        weights = jax.nn.softmax(logits, axis=-1)
        mixed = jnp.einsum("bhts,bshk->bthk", weights, v).reshape(B, T, H * K)
        return hk.Linear(D, name="linear")(mixed), logits


class Transformer(hk.Module):
    """The residual stack: per layer, multi-head attention then a ReLU MLP, each added to the residual."""

    def __init__(self, config: TransformerConfig, name: Optional[str] = None):
        super().__init__(name=name)
        self.config = config

    def __call__(self, embeddings: jax.Array, mask: jax.Array) -> TransformerOutput:
        """`mask` [B, T] marks real (non-pad) positions; pads are never attended to."""
        cfg = self.config
        if cfg.layer_norm:
            raise NotImplementedError("compiled models have no LayerNorm")
        T = embeddings.shape[1]
        attn_mask = mask[:, None, None, :].astype(bool)  # keys
        if cfg.causal:
            attn_mask = attn_mask & jnp.tril(jnp.ones((T, T), dtype=bool))[None, None]
        x = embeddings
        layer_outputs, residuals, logits_all = [], [], []
        for i in range(cfg.num_layers):
            with hk.name_scope(f"layer_{i}"):
                attn_out, logits = MultiHeadAttention(cfg.num_heads, cfg.key_size, name="attn")(x, attn_mask)
                x = x + attn_out
                layer_outputs.append(attn_out)
                residuals.append(x)
                logits_all.append(logits)
                with hk.name_scope("mlp"):
                    h = cfg.activation_function(hk.Linear(cfg.mlp_hidden_size, name="linear_1")(x))
                    mlp_out = hk.Linear(embeddings.shape[-1], name="linear_2")(h)
                x = x + mlp_out
                layer_outputs.append(mlp_out)
                residuals.append(x)
        return TransformerOutput(layer_outputs, residuals, logits_all, x, embeddings)


def make_forward(config: TransformerConfig, vocab_size: int, max_seq_len: int, d_model: int, pad_id: int):
    """Returns `forward(params, ids[B, T]) -> TransformerOutput`, a pure function of the parameters."""

    def fwd(ids):
        tok = hk.Embed(vocab_size, d_model, name="token_embed")(ids)
        pos = hk.Embed(max_seq_len, d_model, name="pos_embed")(jnp.arange(ids.shape[-1]))[None]
        return Transformer(config, name="transformer")(tok + pos, ids != pad_id)

    transformed = hk.without_apply_rng(hk.transform(fwd))
    return jax.jit(transformed.apply)  # traced once per input length
