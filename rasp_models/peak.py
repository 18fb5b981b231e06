"""Peak detection: is each element strictly greater than its existing neighbours?

Edges compare with their single neighbour; a length-1 input has no peak. The left and right neighbours are read
by two attention heads in the same layer.
"""

from tracr.compiler import lib
from tracr.rasp import rasp
from rasp_models.base import ProgramSpec, module_api

VOCAB = frozenset(range(10))
MAX_SEQ_LEN = 10
EQ = rasp.Comparison.EQ


def program() -> rasp.SOp:
    length = lib.make_length()
    left_pos = rasp.SequenceMap(lambda i, n: max(i - 1, 0), rasp.indices, length).named("left_pos")
    right_pos = rasp.SequenceMap(lambda i, n: min(i + 1, n - 1), rasp.indices, length).named("right_pos")
    left = rasp.Aggregate(rasp.Select(rasp.indices, left_pos, EQ), rasp.tokens).named("left")
    right = rasp.Aggregate(rasp.Select(rasp.indices, right_pos, EQ), rasp.tokens).named("right")
    above_left = rasp.SequenceMap(lambda x, y: x > y, rasp.tokens, left).named("above_left")
    above_right = rasp.SequenceMap(lambda x, y: x > y, rasp.tokens, right).named("above_right")
    first = rasp.Map(lambda i: i == 0, rasp.indices).named("is_first")
    last = rasp.SequenceMap(lambda i, n: i == n - 1, rasp.indices, length).named("is_last")
    left_ok = rasp.SequenceMap(lambda a, f: a or f, above_left, first).named("left_ok")
    right_ok = rasp.SequenceMap(lambda a, f: a or f, above_right, last).named("right_ok")
    both = rasp.SequenceMap(lambda a, b: a and b, left_ok, right_ok).named("both_ok")
    long_enough = rasp.Map(lambda n: n > 1, length).named("long_enough")
    return rasp.SequenceMap(lambda a, b: a and b, both, long_enough).named("peak")


def reference(tokens: list) -> list:
    n = len(tokens)
    if n == 1:
        return [False]
    out = []
    for i, x in enumerate(tokens):
        nbrs = [tokens[j] for j in (i - 1, i + 1) if 0 <= j < n]
        out.append(all(x > y for y in nbrs))
    return out


SPEC = ProgramSpec("peak", "element strictly greater than its neighbours", program, VOCAB, MAX_SEQ_LEN, reference)
compile, BOS = module_api(SPEC)  # noqa: A001 - the module contract names it compile()
