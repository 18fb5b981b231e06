"""Stage 3: one craft block per S-op node (MLP, attention head, or SelectorWidth's head + MLP).

Every user function (Map/SequenceMap functions, Select predicates) is wrapped so that an unexpected exception
names the expression it belongs to (see `craft.chamber.user_functions`).
"""

from __future__ import annotations

import networkx as nx

from tracr.compiler import nodes
from tracr.craft import bases
from tracr.craft.chamber import categorical_attn, categorical_mlp, numerical_mlp, selector_width, user_functions
from tracr.rasp import rasp

BD = bases.BasisDirection
Space = bases.VectorSpaceWithBasis


def _space(graph: nx.DiGraph, expr: rasp.RASPExpr) -> Space:
    return Space(graph.nodes[expr.label][nodes.OUTPUT_BASIS])


def _values(graph: nx.DiGraph, expr: rasp.RASPExpr) -> set:
    return graph.nodes[expr.label][nodes.VALUE_SET]


def _what(expr: rasp.RASPExpr) -> str:
    return f"{type(expr).__name__} {expr.label}"


def _predicate(sel: rasp.Select, user: rasp.RASPExpr):
    return user_functions.guarded(sel.predicate, f"{_what(sel)} (the selector of {user.label})")


def _map_block(graph, expr: rasp.Map, one: BD, bos: BD, slope: float, margin: float):
    in_space, out_space, hidden = _space(graph, expr.inner), _space(graph, expr), f"_hidden_{expr.label}"
    f = user_functions.guarded(expr.f, _what(expr))
    if rasp.is_categorical(expr.inner):
        if rasp.is_categorical(expr):
            return categorical_mlp.map_categorical_mlp(in_space, out_space, f, hidden, one, margin)
        return categorical_mlp.map_categorical_to_numerical_mlp(in_space, out_space, f, hidden, one, margin)
    return numerical_mlp.discretising_mlp(in_space, out_space, _values(graph, expr.inner), f, hidden, one, bos,
                                          slope, categorical_output=rasp.is_categorical(expr), relu_margin=margin)


def _sequence_map_block(graph, expr: rasp.SequenceMap, one: BD, bos: BD, margin: float):
    out_space, hidden = _space(graph, expr), f"_hidden_{expr.label}"
    if isinstance(expr, rasp.LinearSequenceMap):
        return numerical_mlp.linear_sequence_map_numerical_mlp(
            _space(graph, expr.fst), _space(graph, expr.snd), out_space, expr.fst_fac, expr.snd_fac, hidden, one,
            bos, _values(graph, expr.fst), _values(graph, expr.snd), margin)
    f = user_functions.guarded(expr.f, _what(expr))
    if expr.fst.label == expr.snd.label:  # f(x, x) is a Map
        return categorical_mlp.map_categorical_mlp(_space(graph, expr.fst), out_space, lambda x: f(x, x), hidden,
                                                   one, margin)
    return categorical_mlp.sequence_map_categorical_mlp(
        _space(graph, expr.fst), _space(graph, expr.snd), out_space, f, hidden, one, margin)


def _aggregate_block(graph, expr: rasp.Aggregate, one: BD, bos: BD, coldness: float):
    sel: rasp.Select = expr.selector
    out_name = expr.label
    if rasp.is_numerical(expr):
        to_out = lambda d: {BD(out_name): 1.0}  # noqa: E731
    else:
        out_space = _space(graph, expr)
        to_out = lambda d: {BD(out_name, d.value): 1.0} if BD(out_name, d.value) in out_space else {}  # noqa: E731
    return categorical_attn.categorical_attn(
        _space(graph, sel.queries), _space(graph, sel.keys), _space(graph, expr.sop), _space(graph, expr),
        bos, one, _predicate(sel, expr), to_out, softmax_coldness=coldness, label=expr.label)


def _selector_width_block(graph, expr: rasp.SelectorWidth, one: BD, bos: BD, max_seq_len: int, slope: float,
                          coldness: float, margin: float):
    sel = expr.selector
    return selector_width.selector_width(
        _space(graph, sel.queries), _space(graph, sel.keys), _space(graph, expr), _predicate(sel, expr),
        max_seq_len, bos, one, expr.label, rasp.is_categorical(expr), slope, coldness, margin)


def add_craft_components_to_rasp_graph(
    graph: nx.DiGraph, bos_dir: BD, one_dir: BD, max_seq_len: int, mlp_exactness: float,
    softmax_coldness: float = categorical_attn.SOFTMAX_COLDNESS, relu_margin: float = 0.0,
) -> None:
    """Attaches MODEL_BLOCK to every node that needs one (tokens and indices need none).

    `mlp_exactness` is the discretising MLPs' minimum ramp slope, `softmax_coldness` the attention score of a
    selected key in every Aggregate and SelectorWidth head, `relu_margin` the distance every MLP unit keeps from
    its kink on the values it can see (0: tracr's constructions, with units exactly at their kink).

    Raises:
        ValueError: if basis inference has not run, or blocks were already attached.
        user_functions.UserFunctionError: a user function raised an unexpected exception (names the expression).
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
            block = _map_block(graph, expr, one_dir, bos_dir, mlp_exactness, relu_margin)
        elif isinstance(expr, rasp.SequenceMap):
            block = _sequence_map_block(graph, expr, one_dir, bos_dir, relu_margin)
        elif isinstance(expr, rasp.Aggregate):
            block = _aggregate_block(graph, expr, one_dir, bos_dir, softmax_coldness)
        elif isinstance(expr, rasp.SelectorWidth):
            block = _selector_width_block(graph, expr, one_dir, bos_dir, max_seq_len, mlp_exactness,
                                          softmax_coldness, relu_margin)
        else:
            raise NotImplementedError(f"Unsupported RASP expression {label}: no craft construction")
        if hasattr(block, "labels"):
            block.labels = [label]
        data[nodes.MODEL_BLOCK] = block
