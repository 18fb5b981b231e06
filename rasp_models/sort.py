"""Sort: tokens in ascending order (duplicates allowed, ties broken by position)."""

import dataclasses
import functools

from tracr.compiler import lib
from tracr.rasp import rasp
from rasp_models.base import ProgramSpec, module_api

VOCAB = frozenset({1, 2, 3, 4})
MAX_SEQ_LEN = 5


def make_program(max_seq_len: int) -> rasp.SOp:
    """Sort for inputs up to `max_seq_len` (the program's position keys depend on it)."""
    return lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=max_seq_len, min_key=1)


def program():
    return make_program(MAX_SEQ_LEN)


def reference(tokens: list) -> list:
    return sorted(tokens)


SPEC = ProgramSpec("sort", "tokens sorted ascending (duplicates allowed)", program, VOCAB, MAX_SEQ_LEN, reference)
compile, BOS = module_api(SPEC)  # noqa: A001


def variant(*, max_seq_len: int) -> ProgramSpec:
    """The size-sweep variant `sort_l{max_seq_len}` (family "sort")."""
    return dataclasses.replace(SPEC, name=f"sort_l{max_seq_len}", max_seq_len=max_seq_len, family="sort",
                               make_program=functools.partial(make_program, max_seq_len))
