"""Palindrome detection: is each token equal to its mirror image (position length - i - 1)?"""

import dataclasses

from tracr.compiler import lib
from tracr.rasp import rasp
from rasp_models.base import ProgramSpec, module_api

VOCAB = frozenset("abc")
MAX_SEQ_LEN = 8


def program() -> rasp.SOp:
    """Per position: token == reversed token. A sequence is a palindrome iff every position is True."""
    mirror = lib.make_reverse(rasp.tokens)
    return rasp.SequenceMap(lambda x, y: x == y, rasp.tokens, mirror).named("palindrome")


def reference(tokens: list) -> list:
    n = len(tokens)
    return [tokens[i] == tokens[n - i - 1] for i in range(n)]


SPEC = ProgramSpec("palindrome", "token equals its mirror token (per position)", program, VOCAB, MAX_SEQ_LEN,
                   reference)
compile, BOS = module_api(SPEC)  # noqa: A001 - the module contract names it compile()


def variant(*, max_seq_len: int) -> ProgramSpec:
    """The size-sweep variant `palindrome_l{max_seq_len}` (family "palindrome")."""
    return dataclasses.replace(SPEC, name=f"palindrome_l{max_seq_len}", max_seq_len=max_seq_len, family="palindrome")
