"""Stage 3: one craft block per S-op node (MLP, attention head, or SelectorWidth's head + MLP)."""

from __future__ import annotations

import networkx as nx

from tracr.compiler import nodes
from tracr.craft import bases
from tracr.craft.chamber import categorical_attn, categorical_mlp, numerical_mlp, selector_width
from tracr.rasp import rasp

BD = bases.BasisDirection
Space = bases.VectorSpaceWithBasis


def _space(graph: nx.DiGraph, expr: rasp.RASPExpr) -> Space:
    return Space(graph.nodes[expr.label][nodes.OUTPUT_BASIS])


def _values(graph: nx.DiGraph, expr: rasp.RASPExpr) -> set:
    return graph.nodes[expr.label][nodes.VALUE_SET]


def _map_block(graph, expr: rasp.Map, one: BD, bos: BD, slope: float):
    in_space, out_space, hidden = _space(graph, expr.inner), _space(graph, expr), f"_hidden_{expr.label}"
    if rasp.is_categorical(expr.inner):
        if rasp.is_categorical(expr):
            return categorical_mlp.map_categorical_mlp(in_space, out_space, expr.f, hidden)
        return categorical_mlp.map_categorical_to_numerical_mlp(in_space, out_space, expr.f, hidden)
    return numerical_mlp.discretising_mlp(in_space, out_space, _values(graph, expr.inner), expr.f, hidden, one, bos,
                                          slope, categorical_output=rasp.is_categorical(expr))


def _sequence_map_block(graph, expr: rasp.SequenceMap):
    out_space, hidden = _space(graph, expr), f"_hidden_{expr.label}"
    if isinstance(expr, rasp.LinearSequenceMap):
        return numerical_mlp.linear_sequence_map_numerical_mlp(
            _space(graph, expr.fst), _space(graph, expr.snd), out_space, expr.fst_fac, expr.snd_fac, hidden)
    if expr.fst.label == expr.snd.label:  # f(x, x) is a Map
        f = expr.f
        return categorical_mlp.map_categorical_mlp(_space(graph, expr.fst), out_space, lambda x: f(x, x), hidden)
    return categorical_mlp.sequence_map_categorical_mlp(
        _space(graph, expr.fst), _space(graph, expr.snd), out_space, expr.f, hidden, BD("one"))


def _aggregate_block(graph, expr: rasp.Aggregate, one: BD, bos: BD):
    sel: rasp.Select = expr.selector
    out_name = expr.label
    if rasp.is_numerical(expr):
        to_out = lambda d: {BD(out_name): 1.0}  # noqa: E731
    else:
        out_space = _space(graph, expr)
        to_out = lambda d: {BD(out_name, d.value): 1.0} if BD(out_name, d.value) in out_space else {}  # noqa: E731
    return categorical_attn.categorical_attn(
        _space(graph, sel.queries), _space(graph, sel.keys), _space(graph, expr.sop), _space(graph, expr),
        bos, one, sel.predicate, to_out, label=expr.label)


def add_craft_components_to_rasp_graph(
    graph: nx.DiGraph, bos_dir: BD, one_dir: BD, max_seq_len: int, mlp_exactness: float
) -> None:
    """Attaches MODEL_BLOCK to every node that needs one (tokens and indices need none).

    Raises:
        ValueError: if basis inference has not run, or blocks were already attached.
    """
    for label, data in graph.nodes(data=True):
        expr = data[nodes.EXPR]
        if not isinstance(expr, rasp.SOp) or isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
            continue
        if nodes.OUTPUT_BASIS not in data:
            raise ValueError(f"basis inference must run before craft construction ({label})")
        if nodes.MODEL_BLOCK in data:
            raise ValueError(f"craft block already attached to {label}")
        if isinstance(expr, rasp.Map):
            block = _map_block(graph, expr, one_dir, bos_dir, mlp_exactness)
        elif isinstance(expr, rasp.SequenceMap):
            block = _sequence_map_block(graph, expr)
        elif isinstance(expr, rasp.Aggregate):
            block = _aggregate_block(graph, expr, one_dir, bos_dir)
        elif isinstance(expr, rasp.SelectorWidth):
            sel = expr.selector
            block = selector_width.selector_width(
                _space(graph, sel.queries), _space(graph, sel.keys), _space(graph, expr), sel.predicate,
                max_seq_len, bos_dir, one_dir, expr.label, rasp.is_categorical(expr), mlp_exactness)
        else:
            raise NotImplementedError(f"Unsupported RASP expression {label}: no craft construction")
        if hasattr(block, "labels"):
            block.labels = [label]
        data[nodes.MODEL_BLOCK] = block
