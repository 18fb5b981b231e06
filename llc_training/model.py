"""A trainable transformer of the compiled models' architecture family.

The same body as the converted compiled model (`tracr.torch_body.TransformerBody`: per-head Q/K/V/O parameters,
1/sqrt(key_size) scaling, ReLU MLP, no LayerNorm, hook points, the same parameter names), same BOS/padding
conventions (pads are never attended to), trainable token and position embeddings, and a trainable readout suited
to the labels: class logits for categorical outputs, one scalar for numerical outputs. Attention mixes positions,
never batch rows.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from tracr.torch_body import TransformerBody


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    max_len: int  # max_seq_len + 1 (BOS)
    d_model: int
    num_layers: int
    num_heads: int
    key_size: int
    mlp_hidden: int
    num_outputs: int  # classes, or 1 for a numerical output
    pad_id: int
    causal: bool = False
    init_scale: float = 1.0

    @classmethod
    def from_compiled(cls, model, **overrides) -> "ModelConfig":
        """The compiled model's widths (layers, heads, key size, MLP width, residual width)."""
        cfg = model.model_config
        n_out = len(model.output_encoder.basis) if model.is_categorical_output else 1
        base = dict(vocab_size=len(model.input_encoder.encoding_map), max_len=model.input_encoder.max_seq_len,
                    d_model=len(model.residual_labels), num_layers=max(cfg.num_layers, 1), num_heads=cfg.num_heads,
                    key_size=cfg.key_size, mlp_hidden=cfg.mlp_hidden_size, num_outputs=n_out,
                    pad_id=model.input_encoder.pad_encoding, causal=cfg.causal)
        base.update(overrides)
        return cls(**base)


class TrainableTransformer(TransformerBody):
    """`forward(ids [B, T]) -> outputs [B, T, num_outputs]` (logits, or the scalar in channel 0).

    `residual(ids)` and `run_with_cache(ids)` give the final residual stream and the hook points of the body.
    """

    def __init__(self, cfg: ModelConfig, seed: int = 0):
        super().__init__(cfg.vocab_size, cfg.max_len, cfg.d_model, cfg.num_layers, cfg.num_heads, cfg.key_size,
                         cfg.mlp_hidden, cfg.pad_id, cfg.causal)
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        D = cfg.d_model
        with torch.no_grad():  # draw order: token, position, 2-d block weights, readout
            self.token_embed.copy_(torch.randn(cfg.vocab_size, D, generator=g) * cfg.init_scale / math.sqrt(D))
            self.pos_embed.copy_(torch.randn(cfg.max_len, D, generator=g) * cfg.init_scale / math.sqrt(D))
            for p in self.blocks.parameters():
                if p.dim() == 2:
                    p.copy_(torch.randn(p.shape, generator=g) * cfg.init_scale / math.sqrt(p.shape[0]))
        self.readout_w = nn.Parameter(torch.randn(D, cfg.num_outputs, generator=g) / math.sqrt(D))
        self.readout_b = nn.Parameter(torch.zeros(cfg.num_outputs))

    def readout(self, residual: torch.Tensor) -> torch.Tensor:
        """The trainable readout: [B, T, D] -> [B, T, num_outputs]."""
        return residual @ self.readout_w + self.readout_b

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.readout(self.residual(ids))


class ModAddMLP(nn.Module):
    """The grokking anchor: shared Embedding(p, d), two Linear(d -> h) on a and b summed, GELU, Linear(h -> p)."""

    def __init__(self, p: int = 53, d: int = 12, h: int = 48, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng():  # seeded default init without touching the caller's RNG state
            torch.manual_seed(seed)
            self.embed = nn.Embedding(p, d)
            self.lin_a = nn.Linear(d, h)
            self.lin_b = nn.Linear(d, h)
            self.out = nn.Linear(h, p, bias=False)

    def forward(self, ab: torch.Tensor) -> torch.Tensor:  # ab [B, 2] -> logits [B, p]
        return self.out(nn.functional.gelu(self.lin_a(self.embed(ab[:, 0])) + self.lin_b(self.embed(ab[:, 1]))))
