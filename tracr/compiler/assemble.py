"""Stage 5: write the craft model into the Haiku transformer's parameters.

Fixed here, against tracr:
  * each head's query/key and value/output widths are the narrower factorisation of W_QK and W_OV, and
    `key_size` covers both (tracr crashed when the value width exceeded key_size: bug A);
  * the query weights are multiplied by sqrt(key_size), cancelling the model's 1/sqrt(key_size) logit scaling
    so that the softmax coldness does not degrade with model size (bug C);
  * the pad token is masked as a key in every head (bug I).
Parameters are float64 numpy arrays; they run in whatever precision JAX is configured for.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Union

import numpy as np

from tracr.compiler import craft_graph_to_model as c2m
from tracr.craft import bases, transformers
from tracr.transformer import encoder, model

BD = bases.BasisDirection


@dataclasses.dataclass
class ComponentInfo:
    """Where a RASP expression lives in the assembled model.

    Attributes:
        layer: the transformer layer.
        kind: "attn" or "mlp".
        head: head index within the layer (attention), else None.
        labels: labels of the RASP expressions the component implements.
        hidden: (start, stop) of the MLP units of this expression within the layer (MLP), else None.
    """

    layer: int
    kind: str
    head: Optional[int]
    labels: list
    hidden: Optional[tuple] = None


@dataclasses.dataclass
class AssembledTransformerModelOutput:
    decoded: list
    unembedded: Any  # [1, T] ids or floats
    layer_outputs: list
    residuals: list
    attn_logits: list
    transformer_output: Any
    input_embeddings: Any


@dataclasses.dataclass
class AssembledTransformerModel:
    """A compiled model: parameters, config, residual labels, encoders, and `apply`."""

    forward: Callable  # (params, ids[B, T]) -> model.TransformerOutput
    params: dict
    model_config: model.TransformerConfig
    residual_labels: list
    input_encoder: encoder.CategoricalEncoder
    output_encoder: Union[encoder.CategoricalEncoder, encoder.NumericalEncoder]
    unembed_matrix: np.ndarray  # [D, n_out]: projection onto the output space
    components: list  # ComponentInfo per head / MLP expression
    craft_model: Optional[c2m.CraftModel] = None

    @property
    def is_categorical_output(self) -> bool:
        return isinstance(self.output_encoder, encoder.CategoricalEncoder)

    def apply(self, tokens: list) -> AssembledTransformerModelOutput:
        """Runs the model on one input, which must start with the BOS token.

        Raises:
            ValueError: first token not BOS, token outside the vocabulary, or too long.
        """
        import jax.numpy as jnp

        ids = self.input_encoder.encode(tokens)
        T = len(ids)
        # Padded to one fixed length so the jitted forward is traced once per model; pads are masked keys and
        # every other operation is position-wise, so real positions are unaffected.
        padded = jnp.asarray([ids + [self.input_encoder.pad_encoding] * (self.input_encoder.max_seq_len - T)])
        full = self.forward(self.params, padded)
        out = model.TransformerOutput(
            layer_outputs=[a[:, :T] for a in full.layer_outputs], residuals=[a[:, :T] for a in full.residuals],
            attn_logits=[a[:, :, :T, :T] for a in full.attn_logits], output=full.output[:, :T],
            input_embeddings=full.input_embeddings[:, :T])
        readout = out.output @ jnp.asarray(self.unembed_matrix, dtype=out.output.dtype)  # [1, T, n_out]
        if self.is_categorical_output:
            unembedded = jnp.argmax(readout, axis=-1)
            decoded = self.output_encoder.decode([int(i) for i in np.asarray(unembedded[0])])
        else:
            unembedded = readout[..., 0]
            decoded = self.output_encoder.decode(np.asarray(unembedded[0]).tolist())
        decoded[0] = self.input_encoder.bos_token
        return AssembledTransformerModelOutput(
            decoded=decoded, unembedded=unembedded, layer_outputs=out.layer_outputs, residuals=out.residuals,
            attn_logits=out.attn_logits, transformer_output=out.output, input_embeddings=out.input_embeddings)


def _head_factors(head: transformers.AttentionHead, residual: bases.VectorSpaceWithBasis):
    """(query [D, w], key [D, w], value [D, v], output [v, D]) with the narrower factorisation of each form."""
    qk, ov = head.w_qk, head.w_ov
    p_left, p_right = residual.projection_to(qk.left_space), residual.projection_to(qk.right_space)
    if qk.right_space.num_dims <= qk.left_space.num_dims:
        q, k = p_left @ qk.matrix, p_right
    else:
        q, k = p_left, p_right @ qk.matrix.T
    p_in, p_out = residual.projection_to(ov.input_space), residual.projection_to(ov.output_space)
    if ov.output_space.num_dims <= ov.input_space.num_dims:
        v, o = p_in @ ov.matrix, p_out.T
    else:
        v, o = p_in, ov.matrix @ p_out.T
    return q, k, v, o


def assemble_craft_model(
    craft_model: c2m.CraftModel,
    tokens_space: bases.VectorSpaceWithBasis,
    indices_space: bases.VectorSpaceWithBasis,
    output_space: bases.VectorSpaceWithBasis,
    categorical_output: bool,
    causal: bool,
    bos_token: Any,
    pad_token: Any,
    max_seq_len: int,
) -> AssembledTransformerModel:
    """Builds parameters, config, encoders and the forward function."""
    one = BD("one")
    residual = bases.join_vector_spaces(craft_model.residual_space, tokens_space, indices_space, output_space,
                                        bases.VectorSpaceWithBasis([one]))
    D = residual.num_dims
    slots = craft_model.half_layers
    num_layers = (max(slots) // 2 + 1) if slots else 0
    attn = {s // 2: b for s, b in slots.items() if s % 2 == 0}
    mlps = {s // 2: b for s, b in slots.items() if s % 2 == 1}
    factors = {layer: [_head_factors(h, residual) for h in mh.heads] for layer, mh in attn.items()}
    num_heads = max([len(f) for f in factors.values()], default=1)
    key_size = max([max(q.shape[1], v.shape[1]) for fs in factors.values() for q, _, v, _ in fs], default=1)
    hidden = max([m.hidden_space.num_dims for m in mlps.values()], default=1)
    config = model.TransformerConfig(num_heads=num_heads, num_layers=num_layers, key_size=key_size,
                                     mlp_hidden_size=hidden, causal=causal, layer_norm=False)

    params: dict[str, dict[str, np.ndarray]] = {}
    components: list[ComponentInfo] = []
    HK = num_heads * key_size
    for layer in range(num_layers):
        pre = f"transformer/layer_{layer}"
        w = {n: np.zeros((D, HK)) for n in ("query", "key", "value")}
        w_o = np.zeros((HK, D))
        for h, (q, k, v, o) in enumerate(factors.get(layer, [])):
            c = h * key_size
            w["query"][:, c:c + q.shape[1]] = q * np.sqrt(key_size)
            w["key"][:, c:c + k.shape[1]] = k
            w["value"][:, c:c + v.shape[1]] = v
            w_o[c:c + o.shape[0], :] = o
            components.append(ComponentInfo(layer, "attn", h, [attn[layer].heads[h].label]))
        for n in ("query", "key", "value"):
            params[f"{pre}/attn/{n}"] = {"w": w[n], "b": np.zeros(HK)}
        params[f"{pre}/attn/linear"] = {"w": w_o, "b": np.zeros(D)}
        w1, w2 = np.zeros((D, hidden)), np.zeros((hidden, D))
        if layer in mlps:
            m = mlps[layer]
            h = m.hidden_space.num_dims
            w1[:, :h] = residual.projection_to(m.fst.input_space) @ m.fst.matrix
            w2[:h, :] = m.snd.matrix @ residual.projection_to(m.snd.output_space).T
            for label in m.labels:
                prefix = f"_hidden_{label}"
                idx = [i for i, d in enumerate(m.hidden_space.basis) if d.name.startswith(prefix)]
                components.append(ComponentInfo(layer, "mlp", None, [label], (min(idx), max(idx) + 1)))
        params[f"{pre}/mlp/linear_1"] = {"w": w1, "b": np.zeros(hidden)}
        params[f"{pre}/mlp/linear_2"] = {"w": w2, "b": np.zeros(D)}

    tok_emb = np.stack([residual.vector(d) + residual.vector(one) for d in tokens_space.basis])
    pos_emb = np.zeros((max_seq_len + 1, D))
    for p in range(max_seq_len):
        pos_emb[p + 1] = residual.vector(BD("indices", p))
    params["token_embed"] = {"embeddings": tok_emb}
    params["pos_embed"] = {"embeddings": pos_emb}

    in_enc = encoder.CategoricalEncoder(tokens_space.basis, enforce_bos=True, bos_token=bos_token,
                                        pad_token=pad_token, max_seq_len=max_seq_len + 1)
    out_enc = (encoder.CategoricalEncoder(output_space.basis) if categorical_output
               else encoder.NumericalEncoder(output_space.basis))
    forward = model.make_forward(config, tokens_space.num_dims, max_seq_len + 1, D, in_enc.pad_encoding)
    return AssembledTransformerModel(
        forward=forward, params=params, model_config=config, residual_labels=[str(d) for d in residual.basis],
        input_encoder=in_enc, output_encoder=out_enc, unembed_matrix=residual.projection_to(output_space),
        components=components, craft_model=craft_model)
