"""Compile a RASP program into a transformer: the orchestrator of the compiler stages."""

from __future__ import annotations

from typing import Any

from tracr.compiler import (
    assemble,
    basis_inference,
    craft_graph_to_model,
    expr_to_craft_graph,
    nodes,
    rasp_to_graph,
    validating,
)
from tracr.craft import bases
from tracr.rasp import rasp

COMPILER_BOS = "compiler_bos"
COMPILER_PAD = "compiler_pad"


def compile_rasp_to_model(
    program: rasp.SOp,
    vocab: set,
    max_seq_len: int,
    causal: bool = False,
    compiler_bos: Any = COMPILER_BOS,
    compiler_pad: Any = COMPILER_PAD,
    mlp_exactness: float = 100,
) -> assemble.AssembledTransformerModel:
    """Compiles `program` into an `AssembledTransformerModel`.

    Args:
        program: the output S-op.
        vocab: the token values.
        max_seq_len: the longest input, BOS excluded.
        causal: apply a causal attention mask (the program should then be read with `causal_eval`).
        compiler_bos, compiler_pad: the BOS and padding tokens; neither may be in `vocab`.
        mlp_exactness: the minimum slope of discretising MLPs (each threshold gets at least 4 / its value gap).

    Raises:
        ValueError: bad arguments.
        NotImplementedError: the program uses an expression that cannot be compiled exactly; the message names it.
    """
    vocab = set(vocab)
    if not vocab:
        raise ValueError("vocab must not be empty")
    if not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise ValueError(f"max_seq_len must be a positive int, got {max_seq_len!r}")
    if compiler_bos in vocab or compiler_pad in vocab:
        raise ValueError(f"compiler_bos {compiler_bos!r} and compiler_pad {compiler_pad!r} must not be in vocab")
    if compiler_bos == compiler_pad:
        raise ValueError("compiler_bos and compiler_pad must differ")
    if mlp_exactness <= 0:
        raise ValueError("mlp_exactness must be positive")
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
    expr_to_craft_graph.add_craft_components_to_rasp_graph(graph, bos_dir, one_dir, max_seq_len, mlp_exactness)

    # 4. Layer allocation and merging.
    craft_model = craft_graph_to_model.craft_graph_to_model(graph, extracted.sources)

    # 5. Weights, embeddings and encoders.
    tokens_space = bases.VectorSpaceWithBasis.from_values(rasp.tokens.label, vocab | {compiler_bos, compiler_pad})
    indices_space = bases.VectorSpaceWithBasis.from_values(rasp.indices.label, range(max_seq_len))
    output_space = bases.VectorSpaceWithBasis(sink[nodes.OUTPUT_BASIS])
    return assemble.assemble_craft_model(
        craft_model, tokens_space, indices_space, output_space,
        categorical_output=rasp.is_categorical(sink[nodes.EXPR]), causal=causal,
        bos_token=compiler_bos, pad_token=compiler_pad, max_seq_len=max_seq_len)
