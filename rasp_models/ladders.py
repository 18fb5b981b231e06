"""Complexity ladders: families of programs that differ in one knob, with vocabulary and length fixed.

  * `lookup_chain(k)`: k chained Select-Aggregate lookups (each shifts the sequence right by one): the token k
    positions back. Depth of attention.
  * `parallel_fracs(k)`: k independent running fractions (one per letter, each an attention head) combined at the
    end into one number sum_j 2^j frac_j. Number of independent sub-computations.
  * `map_chain(k)`: k chained categorical Maps, each a different permutation of the vocabulary. Depth of MLPs.
Each program has an independent Python reference. `LADDERS` maps a ladder name to (builder, rungs).
"""

from __future__ import annotations

import functools
from typing import Callable

from tracr.rasp import rasp
from rasp_models.base import ProgramSpec

LETTERS = ("a", "b", "c", "d")
MAX_SEQ_LEN = 5


def _shifted_program(k: int) -> rasp.SOp:
    x = rasp.tokens
    for j in range(k):
        select = rasp.Select(rasp.indices, rasp.indices, lambda key, query: query == key + 1).named(f"prev_{j}")
        x = rasp.categorical(rasp.Aggregate(select, x, default=None)).named(f"lookup_{j}")
    return x


def _shifted_reference(k: int, ts: list) -> list:
    return [None] * min(k, len(ts)) + list(ts[:max(len(ts) - k, 0)])


def lookup_chain(k: int) -> ProgramSpec:
    """The token k positions back (None for the first k positions), through k chained lookups."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return ProgramSpec(f"lookup_chain_{k}", f"token {k} positions back via {k} chained lookups",
                       functools.partial(_shifted_program, k), frozenset(LETTERS[:3]), MAX_SEQ_LEN,
                       functools.partial(_shifted_reference, k), family="lookup_chain")


def _fracs_program(k: int) -> rasp.SOp:
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prevs")
    total = None
    for j, letter in enumerate(LETTERS[:k]):
        is_letter = rasp.numerical(rasp.Map(lambda t, c=letter: 1 if t == c else 0, rasp.tokens)).named(f"is_{letter}")
        frac = rasp.numerical(rasp.Aggregate(prevs, is_letter, default=0)).named(f"frac_{letter}")
        total = frac if total is None else rasp.numerical(
            rasp.LinearSequenceMap(total, frac, 1.0, float(2 ** j))).named(f"sum_{j}")
    if k == 1:  # still combine once, so every rung ends in the same kind of block
        total = rasp.numerical(rasp.LinearSequenceMap(total, total, 0.5, 0.5)).named("sum_0")
    return total


def _fracs_reference(k: int, ts: list) -> list:
    out = []
    for i in range(len(ts)):
        prefix = ts[:i + 1]
        out.append(sum(2 ** j * prefix.count(c) / len(prefix) for j, c in enumerate(LETTERS[:k])))
    return out


def parallel_fracs(k: int) -> ProgramSpec:
    """sum_j 2^j x (running fraction of letter j), j < k: k independent heads combined at the end."""
    if not 1 <= k <= len(LETTERS):
        raise ValueError(f"k must be in 1..{len(LETTERS)}, got {k}")
    return ProgramSpec(f"parallel_fracs_{k}", f"weighted sum of {k} independent running fractions",
                       functools.partial(_fracs_program, k), frozenset(LETTERS), MAX_SEQ_LEN,
                       functools.partial(_fracs_reference, k), numerical=True, family="parallel_fracs")


PERMUTATIONS = (  # rung j applies PERMUTATIONS[j]; none is the identity
    dict(a="b", b="c", c="d", d="a"),  # rotate by 1
    dict(a="c", b="d", c="a", d="b"),  # rotate by 2
    dict(a="b", b="a", c="d", d="c"),  # swap pairs
    dict(a="d", b="c", c="b", d="a"),  # reverse
    dict(a="c", b="a", c="b", d="d"),  # 3-cycle
)


def _maps_program(k: int) -> rasp.SOp:
    x = rasp.tokens
    for j in range(k):
        x = rasp.categorical(rasp.Map(PERMUTATIONS[j].__getitem__, x, simplify=False)).named(f"perm_{j}")
    return x


def _maps_reference(k: int, ts: list) -> list:
    out = list(ts)
    for j in range(k):
        out = [PERMUTATIONS[j][t] for t in out]
    return out


def map_chain(k: int) -> ProgramSpec:
    """k chained categorical Maps, each a permutation of the vocabulary (one MLP layer each: not fused)."""
    if not 1 <= k <= len(PERMUTATIONS):
        raise ValueError(f"k must be in 1..{len(PERMUTATIONS)}, got {k}")
    return ProgramSpec(f"map_chain_{k}", f"{k} chained permutation Maps", functools.partial(_maps_program, k),
                       frozenset(LETTERS), MAX_SEQ_LEN, functools.partial(_maps_reference, k), family="map_chain")


LADDERS: dict[str, tuple[Callable[[int], ProgramSpec], tuple]] = {
    "lookup_chain": (lookup_chain, (1, 2, 3, 4)),
    "parallel_fracs": (parallel_fracs, (1, 2, 3, 4)),
    "map_chain": (map_chain, (1, 2, 3, 4, 5)),
}
