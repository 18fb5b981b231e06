"""Stage 2: the finite value set of every S-op, and its residual basis.

Categorical S-ops get one direction per value (`label:value`), numerical ones a single direction (`label`).
Improvement over tracr (its bug D): a numerical mean of 0/1 values can be any k/n with 0 <= k <= n <= max_seq_len,
so that set, not just {v/n}, is what later discretising MLPs are built for.
"""

from __future__ import annotations

import itertools
import logging
import math
import numbers

import networkx as nx

from tracr.compiler import nodes, validating
from tracr.craft import bases
from tracr.craft.chamber import user_functions
from tracr.rasp import rasp


def _apply_all(expr: rasp.SOp, f, args_list) -> set:
    """The value set of `f` over `args_list`: None results and ArithmeticErrors are dropped (tracr's rule).

    Raises:
        UserFunctionError: `f` raised any other exception (the message names `expr` and the input).
        NotImplementedError: `f` returned an unhashable value, a non-number for a numerical S-op, or no value at all.
    """
    what = f"{type(expr).__name__} {expr.label}"
    out = set()
    for args in args_list:
        try:
            y = f(*args)
        except ArithmeticError as e:
            logging.warning("Arithmetic error %s for input %r while inferring the value set of %s; dropped",
                            e, args, what)
            continue
        except Exception as e:  # noqa: BLE001 - a failing user function is reported with its expression
            raise user_functions.UserFunctionError(user_functions.failure_message(what, e, args)) from e
        if y is None:
            continue
        try:
            out.add(y)
        except TypeError:
            raise validating.unsupported(expr, f"its function returned the unhashable value {y!r} on input {args!r}; "
                                               "values must be hashable") from None
        if rasp.is_numerical(expr) and not (isinstance(y, numbers.Real) and math.isfinite(y)):
            raise validating.unsupported(expr, f"a numerical S-op's function returned {y!r} (not a finite number) "
                                               f"on input {args!r}")
    if not out:
        raise validating.unsupported(expr, "its function returns None (or fails) on every input value, so its value "
                                           "set is empty")
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
            values = _apply_all(expr, expr.f, [(x,) for x in vs(expr.inner)])
        elif isinstance(expr, rasp.SequenceMap):
            values = _apply_all(expr, expr.f, itertools.product(vs(expr.fst), vs(expr.snd)))
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
