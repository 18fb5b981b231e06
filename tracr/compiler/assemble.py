"""Stage 5: write the craft model into the Haiku transformer's parameters.

Fixed here, against tracr:
  * each head's query/key and value/output widths are the narrower factorisation of W_QK and W_OV, and
    `key_size` covers both (tracr crashed when the value width exceeded key_size: bug A);
  * the query weights are multiplied by sqrt(key_size), cancelling the model's 1/sqrt(key_size) logit scaling
    so that the softmax coldness does not degrade with model size (bug C);
  * the pad token is masked as a key in every head (bug I).
Every layer's MLP is padded to the widest hidden size (attention-only layers get an all-padding MLP); padding units
have zero weights and the bias `-relu_margin`, so with a margin they are off by it instead of at their kink.
Parameters are float64 numpy arrays; they run in whatever precision JAX is configured for.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from tracr.compiler import craft_graph_to_model as c2m, output_checks
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
    """A compiled model: parameters, config, residual labels, encoders, and `apply`.

    `one_hot_checks` describes the categorical S-ops that `apply` checks (see `output_checks`); the check runs by
    default only while `params` are still the compiled weights.
    """

    forward: Callable  # (params, ids[B, T]) -> model.TransformerOutput
    params: dict
    model_config: model.TransformerConfig
    residual_labels: list
    input_encoder: encoder.CategoricalEncoder
    output_encoder: Union[encoder.CategoricalEncoder, encoder.NumericalEncoder]
    unembed_matrix: np.ndarray  # [D, n_out]: projection onto the output space
    components: list  # ComponentInfo per head / MLP expression
    craft_model: Optional[c2m.CraftModel] = None
    one_hot_checks: Optional[output_checks.OneHotChecks] = None

    def __post_init__(self):
        self._compiled_fingerprint = self.fingerprint()

    def fingerprint(self) -> str:
        """A digest of `params` (shapes, dtypes and values, in name order): equal exactly for equal weights."""
        return output_checks.fingerprint(np.asarray(self.params[m][k]) for m in sorted(self.params)
                                         for k in sorted(self.params[m]))

    @property
    def is_categorical_output(self) -> bool:
        return isinstance(self.output_encoder, encoder.CategoricalEncoder)

    def weights_are_compiled(self) -> bool:
        """Whether `params` still hold exactly the weights the compiler wrote."""
        return self.fingerprint() == self._compiled_fingerprint

    def apply(self, tokens: Sequence, check: Optional[bool] = None) -> AssembledTransformerModelOutput:
        """Runs the model on one input, which must start with the BOS token.

        Categorical outputs decode by argmax; a position whose readout is zero (the S-op is None there, e.g. an
        Aggregate that selects nothing) decodes to None.

        Args:
            tokens: BOS followed by at most `max_seq_len` tokens of the vocabulary.
            check: raise if a categorical S-op is not one-hot (`output_checks.check`). None (default): check
                while the parameters are the compiled ones, skip it for edited weights.

        Raises:
            TypeError: `tokens` is not a list (or tuple) of tokens.
            ValueError: first token not BOS, BOS or pad later on, token outside the vocabulary, or too long; or
                (with the check) a categorical S-op that is not one-hot, naming it: the program is outside what the
                compiler builds exactly.
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
        checks = self.one_hot_checks
        if output_checks.wanted(check, checks, check is None and self.weights_are_compiled()):
            output_checks.check(checks, np.asarray(out.output), np.ones((1, T), dtype=bool))
        readout = out.output @ jnp.asarray(self.unembed_matrix, dtype=out.output.dtype)  # [1, T, n_out]
        if self.is_categorical_output:
            unembedded = jnp.argmax(readout, axis=-1)
            atol = checks.atol if checks is not None else output_checks.ONE_HOT_ATOL
            decoded = output_checks.decode_categorical(readout[0], self.output_encoder, atol)
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


def _residual_labels(residual: bases.VectorSpaceWithBasis) -> list[str]:
    """`name:value` per direction; raises ValueError if two directions print alike (the torch model finds its
    output directions by label)."""
    labels = [str(d) for d in residual.basis]
    counts = collections.Counter(labels)
    clashes = [d for d, lbl in zip(residual.basis, labels) if counts[lbl] > 1]
    if clashes:
        raise ValueError(f"residual directions {[(d.name, d.value) for d in clashes]} print as the same label: use "
                         "token and S-op values whose str() differ (e.g. not both 1 and '1')")
    return labels


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
    relu_margin: float = 0.0,
) -> AssembledTransformerModel:
    """Builds parameters, config, encoders and the forward function (`relu_margin`: the padding units' -bias)."""
    one = BD("one")
    residual = bases.join_vector_spaces(craft_model.residual_space, tokens_space, indices_space, output_space,
                                        bases.VectorSpaceWithBasis([one]))
    labels = _residual_labels(residual)
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
        w1, w2, b1 = np.zeros((D, hidden)), np.zeros((hidden, D)), np.zeros(hidden)
        h = 0
        if layer in mlps:
            m = mlps[layer]
            h = m.hidden_space.num_dims
            w1[:, :h] = residual.projection_to(m.fst.input_space) @ m.fst.matrix
            w2[:h, :] = m.snd.matrix @ residual.projection_to(m.snd.output_space).T
            for label in m.labels:
                prefix = f"_hidden_{label}"
                idx = [i for i, d in enumerate(m.hidden_space.basis) if d.name.startswith(prefix)]
                components.append(ComponentInfo(layer, "mlp", None, [label], (min(idx), max(idx) + 1)))
        b1[h:] -= relu_margin
        params[f"{pre}/mlp/linear_1"] = {"w": w1, "b": b1}
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
        forward=forward, params=params, model_config=config, residual_labels=labels,
        input_encoder=in_enc, output_encoder=out_enc, unembed_matrix=residual.projection_to(output_space),
        components=components, craft_model=craft_model)
