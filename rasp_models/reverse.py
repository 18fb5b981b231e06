"""Reverse: the sequence read backwards."""

from tracr.compiler import lib
from tracr.rasp import rasp
from rasp_models.base import ProgramSpec, module_api

VOCAB = frozenset("abc")
MAX_SEQ_LEN = 6


def program():
    return lib.make_reverse(rasp.tokens)


def reference(tokens: list) -> list:
    return list(tokens)[::-1]


SPEC = ProgramSpec("reverse", "the sequence backwards", program, VOCAB, MAX_SEQ_LEN, reference)
compile, BOS = module_api(SPEC)  # noqa: A001
