"""Sort: tokens in ascending order (duplicates allowed, ties broken by position)."""

from tracr.compiler import lib
from tracr.rasp import rasp
from rasp_models.base import ProgramSpec, module_api

VOCAB = frozenset({1, 2, 3, 4})
MAX_SEQ_LEN = 5


def program():
    return lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=MAX_SEQ_LEN, min_key=1)


def reference(tokens: list) -> list:
    return sorted(tokens)


SPEC = ProgramSpec("sort", "tokens sorted ascending (duplicates allowed)", program, VOCAB, MAX_SEQ_LEN, reference)
compile, BOS = module_api(SPEC)  # noqa: A001
