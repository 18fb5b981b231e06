"""Causal evaluation: every selector is ANDed with a lower-triangular mask before use."""

from typing import Sequence

from tracr.rasp import rasp


def evaluate(expr: rasp.RASPExpr, xs: Sequence[rasp.Value]):
    """Evaluates `expr` on `xs` where each query only sees keys at positions <= its own."""
    return rasp.DefaultRASPEvaluator(causal=True).evaluate(expr, xs)
