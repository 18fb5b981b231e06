"""Stage 2: the finite value set of every S-op, and its residual basis.

Categorical S-ops get one direction per value (`label:value`), numerical ones a single direction (`label`).
Improvement over tracr (its bug D): a numerical mean of 0/1 values can be any k/n with 0 <= k <= n <= max_seq_len,
so that set, not just {v/n}, is what later discretising MLPs are built for.
"""

from __future__ import annotations

import itertools
import logging

import networkx as nx

from tracr.compiler import nodes, validating
from tracr.craft import bases
from tracr.rasp import rasp


def _apply_all(f, args_list) -> set:
    out = set()
    for args in args_list:
        try:
            y = f(*args)
        except ArithmeticError as e:
            logging.warning("Arithmetic error %s for input %r while inferring a value set; dropped", e, args)
            continue
        if y is not None:
            out.add(y)
    return out


def _fractions(max_seq_len: int) -> set:
    return {k / n for n in range(1, max_seq_len + 1) for k in range(n + 1)}


def infer_bases(graph: nx.DiGraph, sink: dict, vocab: set, max_seq_len: int) -> None:
    """Writes VALUE_SET and OUTPUT_BASIS on every S-op node, children first."""
    order = nx.topological_sort(graph)
    for label in order:
        data = graph.nodes[label]
        expr = data[nodes.EXPR]
        if not isinstance(expr, rasp.SOp):
            continue
        vs = lambda e: graph.nodes[e.label][nodes.VALUE_SET]  # noqa: E731
        if isinstance(expr, rasp.TokensType):
            values = set(vocab)
        elif isinstance(expr, rasp.IndicesType):
            values = set(range(max_seq_len))
        elif isinstance(expr, rasp.SelectorWidth):
            values = set(range(max_seq_len + 1))
        elif isinstance(expr, rasp.Map):
            values = _apply_all(expr.f, [(x,) for x in vs(expr.inner)])
        elif isinstance(expr, rasp.SequenceMap):
            values = _apply_all(expr.f, itertools.product(vs(expr.fst), vs(expr.snd)))
        elif isinstance(expr, rasp.Aggregate):
            inner = vs(expr.sop)
            if rasp.is_numerical(expr):
                validating.check_numerical_aggregate_values(expr, inner)
                ones = any(float(v) == 1.0 for v in inner)
                zeros = any(float(v) == 0.0 for v in inner)
                values = _fractions(max_seq_len) if (ones and zeros) else ({0.0, 1.0} if ones else {0.0})
            else:
                values = set(inner)
        else:
            raise NotImplementedError(f"Unsupported RASP expression {expr.label}: no value-set rule")
        data[nodes.VALUE_SET] = values
        if rasp.is_numerical(expr):
            data[nodes.OUTPUT_BASIS] = [bases.BasisDirection(expr.label)]
        else:
            data[nodes.OUTPUT_BASIS] = [bases.BasisDirection(expr.label, v) for v in values]
