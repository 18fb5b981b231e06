"""Sequence-level palindrome: every position carries the flag "the whole input is a palindrome".

Built on the per-position comparison of `palindrome`: the mean over all positions of "mismatch here" is 0
exactly for palindromes, and a discretising MLP turns that mean into the flag.
"""

from tracr.rasp import rasp
from rasp_models import palindrome
from rasp_models.base import ProgramSpec, module_api

VOCAB = palindrome.VOCAB
MAX_SEQ_LEN = palindrome.MAX_SEQ_LEN


def program() -> rasp.SOp:
    mismatch = rasp.numerical(rasp.Map(lambda same: 0 if same else 1, palindrome.program())).named("mismatch")
    everywhere = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.TRUE).named("all_positions")
    frac = rasp.numerical(rasp.Aggregate(everywhere, mismatch, default=0)).named("mismatch_frac")
    return rasp.Map(lambda f: f == 0, frac).named("is_palindrome")


def reference(tokens: list) -> list:
    return [tokens == tokens[::-1]] * len(tokens)


SPEC = ProgramSpec("palindrome_seq", "whole input is a palindrome (broadcast)", program, VOCAB, MAX_SEQ_LEN,
                   reference)
compile, BOS = module_api(SPEC)  # noqa: A001
