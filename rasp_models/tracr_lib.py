"""Programs taken from `tracr.compiler.lib` (plus a trivial identity map), with independent references."""

from collections import Counter

from tracr.compiler import lib
from tracr.rasp import rasp
from rasp_models.base import ProgramSpec

LETTERS = frozenset("abc")


def _hist(ts):
    c = Counter(ts)
    return [c[t] for t in ts]


def _shuffle_dyck_ok(ts, pairs=("()", "{}")):
    for o, c in pairs:
        bal = 0
        for t in ts:
            bal += (t == o) - (t == c)
            if bal < 0:
                return False
        if bal != 0:
            return False
    return True


IDENTITY = ProgramSpec("identity", "copy the token (one MLP)",
                       lambda: rasp.Map(lambda x: x, rasp.tokens).named("identity"), LETTERS, 6, lambda ts: list(ts))
LENGTH = ProgramSpec("length", "sequence length at every position", lib.make_length, LETTERS, 6,
                     lambda ts: [len(ts)] * len(ts))
COUNT_A = ProgramSpec("count_a", 'number of "a" tokens', lambda: lib.make_count(rasp.tokens, "a"), LETTERS, 6,
                      lambda ts: [ts.count("a")] * len(ts))
DETECT_ABC = ProgramSpec("detect_abc", 'pattern "abc" ends here', lambda: lib.detect_pattern(rasp.tokens, "abc"),
                         LETTERS, 6,
                         lambda ts: [None if i < 2 else "".join(ts[i - 2:i + 1]) == "abc" for i in range(len(ts))])
SORT_FREQ = ProgramSpec("sort_freq", "tokens sorted by decreasing frequency (stable)", lambda: lib.make_sort_freq(5),
                        frozenset({1, 2, 3, 4}), 5, lambda ts: sorted(ts, key=lambda t: -Counter(ts)[t]))
COUNT_LESS_FREQ = ProgramSpec("count_less_freq", "positions whose token occurs at most twice",
                              lambda: lib.make_count_less_freq(2), LETTERS, 6,
                              lambda ts: [sum(c <= 2 for c in _hist(ts))] * len(ts))
PAIR_BALANCE = ProgramSpec("pair_balance", "fraction of '(' minus fraction of ')' so far",
                           lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), frozenset("()a"), 6,
                           lambda ts: [(ts[:i + 1].count("(") - ts[:i + 1].count(")")) / (i + 1)
                                       for i in range(len(ts))], numerical=True)
SHUFFLE_DYCK2 = ProgramSpec("shuffle_dyck2", "balanced shuffle of () and {} (broadcast)", lib.make_shuffle_dyck2,
                            frozenset("(){}"), 6, lambda ts: [_shuffle_dyck_ok(ts)] * len(ts))
