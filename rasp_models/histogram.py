"""Histogram: how often each position's token occurs in the sequence."""

from collections import Counter

from tracr.compiler import lib
from rasp_models.base import ProgramSpec, module_api

VOCAB = frozenset("abc")
MAX_SEQ_LEN = 6


def program():
    return lib.make_hist()


def reference(tokens: list) -> list:
    counts = Counter(tokens)
    return [counts[t] for t in tokens]


SPEC = ProgramSpec("histogram", "occurrences of each position's token", program, VOCAB, MAX_SEQ_LEN, reference)
compile, BOS = module_api(SPEC)  # noqa: A001
