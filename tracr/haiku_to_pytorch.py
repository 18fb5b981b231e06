"""Exact conversion of a compiled (Haiku) model into a `torch.nn.Module`.

Heads are split using `num_heads` and `key_size` from the model config (an earlier attempt inferred one merged
head from the weight shapes and silently broke every multi-head program), so each head owns its own parameters.
The layout, forward pass and hook points are those of `tracr.torch_body.TransformerBody` (shared with the trainable
models); the compiled model adds the fixed unembedding `unembed [D, n_out]` (a buffer, never trained).

`run_with_cache` returns named activations (hook points), one to one with the Haiku output:
`blocks.{i}.hook_resid_mid` == residuals[2i], `blocks.{i}.hook_resid_post` == residuals[2i+1],
`blocks.{i}.attn.hook_logits` == attn_logits[i], plus `hook_pattern`, `hook_attn_out`, `hook_mlp_out`, `hook_embed`
and `blocks.{i}.mlp.hook_pre` (the MLP's hidden pre-activations).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from tracr.compiler import output_checks
from tracr.torch_body import TransformerBody


class CompiledTransformer(TransformerBody):
    """The compiled transformer in PyTorch: same function, named parameters, fixed readout.

    Build it with `to_torch(model)`. `forward(ids)` returns the final residual stream [B, T, D] and checks nothing
    (samplers call it with perturbed weights); `decode` and `check_outputs` check that the categorical S-ops are
    one-hot (see `tracr.compiler.output_checks`).
    """

    def __init__(self, model, dtype: torch.dtype = torch.float64, device: Optional[torch.device] = None):
        _check_convertible(model, dtype)
        cfg = model.model_config
        if cfg.layer_norm:
            raise NotImplementedError("layer norm is not supported: compiled weights assume none")
        p = model.params
        vocab_size, max_len = len(p["token_embed"]["embeddings"]), len(p["pos_embed"]["embeddings"])
        super().__init__(vocab_size, max_len, len(model.residual_labels), cfg.num_layers, cfg.num_heads,
                         cfg.key_size, cfg.mlp_hidden_size, model.input_encoder.pad_encoding, cfg.causal)
        self.residual_labels = list(model.residual_labels)
        self.input_encoder, self.output_encoder = model.input_encoder, model.output_encoder
        self.categorical_output = model.is_categorical_output
        self.components = list(model.components)
        self.one_hot_checks = getattr(model, "one_hot_checks", None)
        self.to(torch.float64)  # copy without rounding
        K = cfg.key_size
        with torch.no_grad():
            self.token_embed.copy_(_t(p["token_embed"]["embeddings"]))
            self.pos_embed.copy_(_t(p["pos_embed"]["embeddings"]))
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
        compiled = getattr(model, "weights_are_compiled", lambda: False)()
        self._compiled_fingerprint = self._fingerprint() if compiled else None

    def _fingerprint(self) -> str:
        return output_checks.fingerprint(p.detach().cpu().numpy() for p in self.parameters())

    def weights_are_compiled(self) -> bool:
        """Whether the parameters still hold exactly the compiler's weights, as converted (same dtype included)."""
        return self._compiled_fingerprint is not None and self._fingerprint() == self._compiled_fingerprint

    # -- tokens ---------------------------------------------------------------------------------------------
    @property
    def bos_id(self) -> int:
        return self.input_encoder.bos_encoding

    def encode(self, batch: Sequence[Sequence]) -> torch.Tensor:
        """A batch of token lists (BOS optional) -> ids [B, T], BOS first, padded with `compiler_pad`.

        Raises:
            TypeError: `batch` is not a list of token lists (`encode(["a", "b"])`, one sequence without the outer
                list, is refused).
            ValueError: an empty batch, an unknown token, BOS or pad inside a sequence, or a sequence longer than
                `max_seq_len`.
        """
        return torch.tensor(self.input_encoder.encode_batch(batch), dtype=torch.long, device=self.unembed.device)

    def check_ids(self, ids: torch.Tensor) -> None:
        """Raises TypeError for anything but an integer tensor, ValueError for ids `encode` would not produce."""
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"ids must be a torch integer tensor [batch, positions] (from encode()), got "
                            f"{type(ids).__name__}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"ids must be an integer tensor (from encode()), got dtype {ids.dtype}")
        self.input_encoder.check_ids(ids.detach().cpu().numpy())

    # -- readout --------------------------------------------------------------------------------------------
    def readout(self, residual: torch.Tensor) -> torch.Tensor:
        """Fixed projection onto the output space: [B, T, D] -> [B, T, n_out]."""
        return residual @ self.unembed

    @torch.no_grad()
    def decode(self, ids: torch.Tensor, check: Optional[bool] = None) -> list[list]:
        """Runs the model and decodes each row like `model.apply(...).decoded` (pads dropped).

        Args:
            ids: [B, T] as made by `encode`.
            check: raise if a categorical S-op is not one-hot (see `check_outputs`). None (default): check while
                the weights are the compiled ones (`weights_are_compiled()`); skip it for edited weights
                (ablations, posterior draws), whose outputs are expected to blur.

        Raises:
            TypeError, ValueError: bad ids (see `check_ids`), or a failed check.
        """
        self.check_ids(ids)
        checks = self.one_hot_checks
        residual = self.forward(ids)
        if output_checks.wanted(check, checks, check is None and self.weights_are_compiled()):
            output_checks.check(checks, residual.cpu().numpy(), (ids != self.pad_id).cpu().numpy())
        out = self.readout(residual).cpu().numpy()
        atol = checks.atol if checks is not None else output_checks.ONE_HOT_ATOL
        rows = []
        for b in range(ids.shape[0]):
            T = int((ids[b] != self.pad_id).sum())
            if self.categorical_output:
                vals = output_checks.decode_categorical(out[b, :T], self.output_encoder, atol)
            else:
                vals = self.output_encoder.decode(out[b, :T, 0].tolist())
            rows.append([self.input_encoder.bos_token] + vals[1:])
        return rows

    @torch.no_grad()
    def check_outputs(self, ids: torch.Tensor) -> None:
        """Raises ValueError naming the first categorical S-op that is not one-hot (or zero) on `ids`.

        At the compiled weights this means the program is outside what the compiler builds exactly (e.g. a
        categorical Aggregate whose selector picks several keys), so decoded answers would be silently wrong.
        """
        self.decode(ids, check=True)

    # -- parameter groups -----------------------------------------------------------------------------------
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


def _check_convertible(model, dtype) -> None:
    """TypeError unless `model` is a compiled model and `dtype` a floating-point torch dtype."""
    needed = ("model_config", "params", "residual_labels", "input_encoder", "output_encoder", "components")
    if not all(hasattr(model, a) for a in needed):
        hint = " (compile the RASP program first)" if type(model).__module__.startswith("tracr.rasp") else ""
        raise TypeError("to_torch needs a compiled model (the AssembledTransformerModel returned by "
                        f"tracr.compiler.compiling.compile_rasp_to_model), got {type(model).__name__}{hint}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating-point torch dtype (e.g. torch.float64), got {dtype!r}")


def to_torch(model, dtype: torch.dtype = torch.float64, device: Optional[torch.device] = None) -> CompiledTransformer:
    """Converts an `AssembledTransformerModel` into an equivalent `CompiledTransformer`.

    Raises:
        TypeError: `model` is not a compiled model (e.g. None, or a RASP program), or `dtype` is not floating-point.
        NotImplementedError: a model config with layer norm.
    """
    return CompiledTransformer(model, dtype=dtype, device=device)
