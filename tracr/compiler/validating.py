"""Checks that a program can be compiled exactly, before any weights are built.

`static_validate` raises `NotImplementedError` naming the offending expression and the reason. `validate`
(dynamic, optional) runs the evaluator on inputs and reports operations the compiled model cannot reproduce.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Sequence

import networkx as nx

from tracr.compiler import nodes
from tracr.rasp import rasp


def unsupported(expr: rasp.RASPExpr, reason: str) -> NotImplementedError:
    """The error for an expression the compiler cannot build exactly, naming it and the reason."""
    return NotImplementedError(f"Unsupported RASP expression {expr.label} ({type(expr).__name__}): {reason}")


def _check_selector(sel: rasp.Selector, user: rasp.RASPExpr) -> None:
    if isinstance(sel, (rasp.SelectorAnd, rasp.SelectorOr, rasp.SelectorNot)):
        raise unsupported(
            sel, f"composite selector used by {user.label}; no exact attention construction exists. Rewrite it as "
            "one Select over a SequenceMap of tuples")
    if isinstance(sel, rasp.ConstantSelector):
        raise unsupported(sel, "ConstantSelector is for tests only")
    if not isinstance(sel, rasp.Select):
        raise unsupported(sel, "unknown selector type")
    for side, sop in (("keys", sel.keys), ("queries", sel.queries)):
        if rasp.is_numerical(sop):
            raise unsupported(sel, f"Select {side} {sop.label} must be categorical")


def static_validate(graph: nx.DiGraph) -> None:
    """Raises NotImplementedError for the first expression the compiler cannot build exactly."""
    for _, data in graph.nodes(data=True):
        expr = data[nodes.EXPR]
        if isinstance(expr, (rasp.TokensType, rasp.IndicesType)) and rasp.is_numerical(expr):
            raise unsupported(expr, "tokens and indices must be categorical")
        if isinstance(expr, rasp.LengthType):
            raise unsupported(expr, "the `length` primitive; use tracr.compiler.lib.make_length()")
        if isinstance(expr, (rasp.Full, rasp.ConstantSOp)):
            raise unsupported(expr, "Full/ConstantSOp are only usable inside selector simplification or tests")
        if isinstance(expr, rasp.LinearSequenceMap):
            if not all(rasp.is_numerical(e) for e in (expr, expr.fst, expr.snd)):
                raise unsupported(expr, "LinearSequenceMap needs numerical inputs and output")
        elif isinstance(expr, rasp.SequenceMap):
            if not all(rasp.is_categorical(e) for e in (expr, expr.fst, expr.snd)):
                raise unsupported(expr, "a non-linear SequenceMap needs categorical inputs and output")
        if isinstance(expr, (rasp.Aggregate, rasp.SelectorWidth)):
            _check_selector(expr.selector, expr)
        if isinstance(expr, rasp.Aggregate):
            if rasp.get_encoding(expr) != rasp.get_encoding(expr.sop):
                raise unsupported(expr, f"Aggregate encoding differs from its value {expr.sop.label}; use a Map")
            if rasp.is_categorical(expr) and expr.default is not None:
                raise unsupported(expr, "a categorical Aggregate must have default None")
            if rasp.is_numerical(expr) and expr.default != 0:
                raise unsupported(expr, "a numerical Aggregate must have default 0")


def check_numerical_aggregate_values(expr: rasp.Aggregate, value_set: set) -> None:
    """A numerical mean is compiled only over values in {0, 1} (tracr's check truncated with int())."""
    bad = [v for v in value_set if not (isinstance(v, numbers.Real) and float(v) in (0.0, 1.0))]
    if bad:
        raise unsupported(expr, f"numerical mean of non-binary values {sorted(map(repr, bad))} of {expr.sop.label}")


@dataclasses.dataclass
class DynamicValidationIssue:
    expr: rasp.RASPExpr
    reason: str


def validate(program: rasp.SOp, xs: Sequence) -> list[DynamicValidationIssue]:
    """Evaluates `program` on `xs` and lists Aggregates the compiled model would get wrong on that input."""
    issues = []
    evaluator = rasp.DefaultRASPEvaluator()
    stack, seen = [program], set()
    while stack:
        expr = stack.pop()
        if expr.label in seen:
            continue
        seen.add(expr.label)
        stack.extend(expr.children)
        if isinstance(expr, rasp.Aggregate):
            try:
                out = evaluator.evaluate(expr, xs)
            except ValueError as e:
                issues.append(DynamicValidationIssue(expr, str(e)))
                continue
            vals = evaluator.evaluate(expr.sop, xs)
            if rasp.is_categorical(expr) and not set(map(repr, out)) <= set(map(repr, vals)) | {"None"}:
                issues.append(DynamicValidationIssue(expr, "categorical Aggregate averaged several values"))
            if rasp.is_numerical(expr) and any(v not in (0, 1, None) for v in vals):
                issues.append(DynamicValidationIssue(expr, "numerical Aggregate of non-binary values"))
    return issues
