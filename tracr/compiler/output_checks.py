"""A compiled model checks its own categorical S-ops: one-hot, or zero (None), at every real non-BOS position.

A program outside what the compiler builds exactly shows up at run time: a categorical Aggregate whose selector
picks several keys holding different values averages their one-hots (the RASP evaluator raises there), and the
argmax would silently pick one value; every categorical S-op computed from it inherits the blend. `check` finds
the first such S-op (children first) and raises a ValueError naming it. It reads the final residual stream, where
every S-op keeps the block it was written into. Several selected keys holding the same value give an exact
one-hot of that value (the evaluator's mean, for numbers) and pass.

The tolerance is `ONE_HOT_ATOL` plus the attention leak of the softmax coldness `C` (about
`max_seq_len * exp(-C / 2)` per layer). A model compiled so smooth that the tolerance would reach `MAX_ATOL` cannot
tell a blend from its own leak, and is not checked (`OneHotChecks.enabled` is False).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Iterable, Optional, Sequence

import networkx as nx
import numpy as np

from tracr.compiler import nodes
from tracr.rasp import rasp

ONE_HOT_ATOL = 1e-3
MAX_ATOL = 0.25


@dataclasses.dataclass(frozen=True)
class OneHotChecks:
    """What `check` looks at in one compiled model.

    Attributes:
        sops: (label, residual indices, value names) of every categorical S-op but tokens/indices, children first.
        aggregates: the labels of the categorical Aggregates among them.
        output_label: the program's output S-op.
        atol: allowed distance of a block entry from 0 or 1.
        enabled: False for a model too smooth to check.
    """

    sops: tuple
    aggregates: frozenset
    output_label: str
    atol: float
    enabled: bool


def build(graph: nx.DiGraph, sink_label: str, residual_labels: Sequence[str], num_layers: int, max_seq_len: int,
          softmax_coldness: float) -> OneHotChecks:
    """Collects the categorical S-ops of a compiled program and their places in the assembled model."""
    index = {lbl: i for i, lbl in enumerate(residual_labels)}
    sops, aggregates = [], set()
    for label in nx.topological_sort(graph):
        data = graph.nodes[label]
        expr = data[nodes.EXPR]
        if (not isinstance(expr, rasp.SOp) or isinstance(expr, (rasp.TokensType, rasp.IndicesType))
                or not rasp.is_categorical(expr)):
            continue
        dirs = data[nodes.OUTPUT_BASIS]
        sops.append((label, tuple(index[str(d)] for d in dirs), tuple(str(d.value) for d in dirs)))
        if isinstance(expr, rasp.Aggregate):
            aggregates.add(label)
    leak = num_layers * max_seq_len * math.exp(-softmax_coldness / 2)
    atol = ONE_HOT_ATOL + leak
    return OneHotChecks(tuple(sops), frozenset(aggregates), sink_label, min(atol, MAX_ATOL), atol < MAX_ATOL)


def check(checks: OneHotChecks, residual: np.ndarray, real: np.ndarray) -> None:
    """Raises ValueError for the first categorical S-op that is neither one-hot nor zero at a real position.

    Args:
        residual: the final residual stream [B, T, D].
        real: [B, T] True at non-pad positions (position 0, BOS, is skipped).
    """
    queries = np.array(real, dtype=bool)
    queries[:, 0] = False
    residual = np.asarray(residual)
    tol = checks.atol
    for label, idx, values in checks.sops:
        block = residual[..., list(idx)]  # [B, T, k]
        near1 = np.abs(block - 1) <= tol
        ok = ((np.abs(block) <= tol) | near1).all(-1) & (near1.sum(-1) <= 1)
        bad = np.argwhere(queries & ~ok)
        if len(bad):
            b, t = bad[0]
            row = block[b, t]
            shown = {values[j]: round(float(row[j]), 4) for j in np.argsort(-np.abs(row))[:4]}
            cause = (" (its selector selected several keys holding different values, which a categorical Aggregate "
                     "cannot average)" if label in checks.aggregates else "")
            raise ValueError(
                f"Categorical S-op {label} is not one-hot at position {t} (BOS is 0) of sequence {b}{cause}: largest "
                f"entries {shown}. The program computing {checks.output_label} is outside what the compiler builds "
                "exactly here (or the weights are no longer the compiled ones), so the decoded answer would be wrong.")


def decode_categorical(readout: np.ndarray, decoder, atol: float) -> list:
    """Decodes rows [T, n_out] by argmax; a row with every entry within `atol` of 0 is None (no value)."""
    readout = np.asarray(readout)
    ids = decoder.decode([int(i) for i in readout.argmax(-1)])
    empty = np.abs(readout).max(-1) <= atol
    return [None if e else v for v, e in zip(ids, empty)]


def fingerprint(arrays: Iterable[Any]) -> str:
    """A digest of parameter values (shape, dtype and bytes), to tell whether weights are still the compiled ones."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(repr((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def wanted(check: Optional[bool], checks: Optional[OneHotChecks], compiled_weights: bool) -> bool:
    """Whether to run the check: `check` if given, else only at the compiled weights; never without a spec."""
    if checks is None or not checks.enabled:
        if check:
            raise ValueError("this model has no usable one-hot checks (not built by compile_rasp_to_model, or "
                             f"compiled too smooth: tolerance would reach {MAX_ATOL})")
        return False
    return compiled_weights if check is None else bool(check)
