"""Compile a RASP program into a transformer: the orchestrator of the compiler stages."""

from __future__ import annotations

import collections.abc
import math
import numbers
from typing import Any

from tracr.compiler import (
    assemble,
    basis_inference,
    craft_graph_to_model,
    expr_to_craft_graph,
    nodes,
    output_checks,
    rasp_to_graph,
    validating,
)
from tracr.craft import bases
from tracr.craft.chamber import categorical_attn
from tracr.rasp import rasp

COMPILER_BOS = "compiler_bos"
COMPILER_PAD = "compiler_pad"


def _positive_finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


def _non_negative_finite(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_token(name: str, value: Any) -> None:
    try:
        hash(value)
    except TypeError:
        raise ValueError(f"{name} must be a hashable token value, got {value!r}") from None
    if value is None:
        raise ValueError(f"{name} must not be None (None means 'no value' in RASP)")


def _vocab_set(vocab: Any) -> set:
    """`vocab` as a set of token values; ValueError for a string, mapping, non-iterable or a bad value."""
    if isinstance(vocab, (str, bytes, collections.abc.Mapping)) or not isinstance(vocab, collections.abc.Iterable):
        raise ValueError(f"vocab must be a set of token values (e.g. {{'a', 'b'}}), got {type(vocab).__name__} "
                         f"{vocab!r}")
    vocab = list(vocab)
    for v in vocab:
        _check_token("every vocab value", v)
    if not vocab:
        raise ValueError("vocab must not be empty")
    return set(vocab)


def compile_rasp_to_model(
    program: rasp.SOp,
    vocab: set,
    max_seq_len: int,
    causal: bool = False,
    compiler_bos: Any = COMPILER_BOS,
    compiler_pad: Any = COMPILER_PAD,
    mlp_exactness: float = 100,
    softmax_coldness: float = categorical_attn.SOFTMAX_COLDNESS,
    relu_margin: float = 0.0,
) -> assemble.AssembledTransformerModel:
    """Compiles `program` into an `AssembledTransformerModel`.

    Args:
        program: the output S-op.
        vocab: the token values (a set; hashable, not None).
        max_seq_len: the longest input, BOS excluded (a positive int).
        causal: apply a causal attention mask (the program should then be read with `causal_eval`).
        compiler_bos, compiler_pad: the BOS and padding tokens; neither may be in `vocab`.
        mlp_exactness: the minimum slope of discretising MLPs (each threshold gets at least 4 / its value gap);
            finite and positive.
        softmax_coldness: the attention score of a selected key in every Aggregate and SelectorWidth head (BOS
            gets half of it); finite and positive. The default 100 is exact to float precision. A lower coldness
            gives a smoother but less exact model: a head leaks about `exp(-coldness / 2)` of its weight to BOS.
        relu_margin: finite and >= 0. With the default 0 the MLPs are tracr's lookup tables, whose ReLUs often sit
            exactly at their kink (pre-activation 0: a unit that is off for one input value but would switch on
            under the slightest weight change). A positive margin keeps the function identical (up to float
            round-off, on every valid input) but moves every ReLU off its kink: at every real position and at BOS
            each hidden pre-activation is `>= relu_margin` or `<= -relu_margin`, unused hidden units included
            (their bias is `-relu_margin`). Useful for sampling the weights near the compiled ones, where a unit
            at its kink makes the loss one-sided. Pad positions get the margin only where their inputs are clean.

    Raises:
        ValueError: bad arguments, naming the value; or a function inside the program raised an unexpected
            exception (`UserFunctionError`, naming the expression).
        NotImplementedError: the program uses an expression that cannot be compiled exactly; the message names it.
    """
    vocab = _vocab_set(vocab)
    if isinstance(max_seq_len, bool) or not isinstance(max_seq_len, numbers.Integral) or max_seq_len < 1:
        raise ValueError(f"max_seq_len must be a positive int, got {max_seq_len!r}")
    max_seq_len = int(max_seq_len)
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be True or False, got {causal!r}")
    _check_token("compiler_bos", compiler_bos)
    _check_token("compiler_pad", compiler_pad)
    if compiler_bos in vocab or compiler_pad in vocab:
        raise ValueError(f"compiler_bos {compiler_bos!r} and compiler_pad {compiler_pad!r} must not be in vocab")
    if compiler_bos == compiler_pad:
        raise ValueError("compiler_bos and compiler_pad must differ")
    mlp_exactness = _positive_finite("mlp_exactness", mlp_exactness)
    softmax_coldness = _positive_finite("softmax_coldness", softmax_coldness)
    relu_margin = _non_negative_finite("relu_margin", relu_margin)
    if not isinstance(program, rasp.SOp):
        raise ValueError(f"program must be an SOp, got {type(program).__name__}")

    # 1. The expression DAG, checked before anything is built.
    extracted = rasp_to_graph.extract_rasp_graph(program)
    graph, sink = extracted.graph, extracted.sink
    validating.static_validate(graph)

    # 2. Value sets and residual bases of every S-op.
    basis_inference.infer_bases(graph, sink, vocab, max_seq_len)

    # 3. A craft block per node.
    bos_dir = bases.BasisDirection(rasp.tokens.label, compiler_bos)
    one_dir = bases.BasisDirection("one")
    expr_to_craft_graph.add_craft_components_to_rasp_graph(graph, bos_dir, one_dir, max_seq_len, mlp_exactness,
                                                           softmax_coldness, relu_margin)

    # 4. Layer allocation and merging.
    craft_model = craft_graph_to_model.craft_graph_to_model(graph, extracted.sources)

    # 5. Weights, embeddings and encoders.
    tokens_space = bases.VectorSpaceWithBasis.from_values(rasp.tokens.label, vocab | {compiler_bos, compiler_pad})
    indices_space = bases.VectorSpaceWithBasis.from_values(rasp.indices.label, range(max_seq_len))
    output_space = bases.VectorSpaceWithBasis(sink[nodes.OUTPUT_BASIS])
    model = assemble.assemble_craft_model(
        craft_model, tokens_space, indices_space, output_space,
        categorical_output=rasp.is_categorical(sink[nodes.EXPR]), causal=causal,
        bos_token=compiler_bos, pad_token=compiler_pad, max_seq_len=max_seq_len, relu_margin=relu_margin)

    # 6. What the model checks about its own categorical S-ops at run time.
    model.one_hot_checks = output_checks.build(graph, sink[nodes.ID], model.residual_labels,
                                               model.model_config.num_layers, max_seq_len, softmax_coldness)
    return model
