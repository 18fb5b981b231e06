"""Dominant peak: is this element the unique maximum of the whole sequence?"""

from tracr.rasp import rasp
from rasp_models.base import ProgramSpec, module_api

VOCAB = frozenset(range(6))
MAX_SEQ_LEN = 8


def program() -> rasp.SOp:
    """Two SelectorWidths: how many tokens are larger, and how many are equal (itself included)."""
    larger = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.GT)).named("num_larger")
    equal = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)).named("num_equal")
    return rasp.SequenceMap(lambda g, e: g == 0 and e == 1, larger, equal).named("dominant_peak")


def reference(tokens: list) -> list:
    top = max(tokens)
    unique = tokens.count(top) == 1
    return [t == top and unique for t in tokens]


SPEC = ProgramSpec("dominant_peak", "element is the unique maximum of the sequence", program, VOCAB, MAX_SEQ_LEN,
                   reference)
compile, BOS = module_api(SPEC)  # noqa: A001 - the issue's module contract names it compile()
