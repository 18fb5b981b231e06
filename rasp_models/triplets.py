"""Triplets: three equal tokens in a row ending at this position (undefined at the first two positions)."""

from tracr.compiler import lib
from tracr.rasp import rasp
from rasp_models.base import ProgramSpec, module_api

VOCAB = frozenset("abc")
MAX_SEQ_LEN = 6


def program():
    prev1, prev2 = lib.shift_by(1, rasp.tokens), lib.shift_by(2, rasp.tokens)
    same1 = rasp.SequenceMap(lambda x, y: x == y, rasp.tokens, prev1).named("same1")
    same2 = rasp.SequenceMap(lambda x, y: x == y, rasp.tokens, prev2).named("same2")
    return rasp.SequenceMap(lambda a, b: a and b, same1, same2).named("triplets")


def reference(tokens: list) -> list:
    return [None if i < 2 else tokens[i] == tokens[i - 1] == tokens[i - 2] for i in range(len(tokens))]


SPEC = ProgramSpec("triplets", "three equal tokens in a row ending here", program, VOCAB, MAX_SEQ_LEN, reference)
compile, BOS = module_api(SPEC)  # noqa: A001
