"""The rest of the complexity ladder: trivial maps up to tracr's larger library programs.

Each entry pairs a RASP program with an independent plain-Python reference.
"""

from collections import Counter

from tracr.compiler import lib
from tracr.rasp import rasp
from rasp_models.base import ProgramSpec

LETTERS = frozenset("abc")
DIGITS = frozenset({1, 2, 3, 4})


def _hist(ts):
    c = Counter(ts)
    return [c[t] for t in ts]


def _triplets_program():
    prev1, prev2 = lib.shift_by(1, rasp.tokens), lib.shift_by(2, rasp.tokens)
    same1 = rasp.SequenceMap(lambda x, y: x == y, rasp.tokens, prev1).named("same1")
    same2 = rasp.SequenceMap(lambda x, y: x == y, rasp.tokens, prev2).named("same2")
    return rasp.SequenceMap(lambda a, b: a and b, same1, same2).named("triplets")


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


SPECS = [
    ProgramSpec("identity", "copy the token (one MLP)", lambda: rasp.Map(lambda x: x, rasp.tokens).named("identity"),
                LETTERS, 6, lambda ts: list(ts)),
    ProgramSpec("length", "sequence length at every position", lib.make_length, LETTERS, 6,
                lambda ts: [len(ts)] * len(ts)),
    ProgramSpec("count_a", 'number of "a" tokens', lambda: lib.make_count(rasp.tokens, "a"), LETTERS, 6,
                lambda ts: [ts.count("a")] * len(ts)),
    ProgramSpec("histogram", "occurrences of each position's token", lib.make_hist, LETTERS, 6, _hist),
    ProgramSpec("reverse", "the sequence backwards", lambda: lib.make_reverse(rasp.tokens), LETTERS, 6,
                lambda ts: list(ts)[::-1]),
    ProgramSpec("triplets", "three equal tokens in a row ending here", _triplets_program, LETTERS, 6,
                lambda ts: [None if i < 2 else ts[i] == ts[i - 1] == ts[i - 2] for i in range(len(ts))]),
    ProgramSpec("detect_abc", 'pattern "abc" ends here', lambda: lib.detect_pattern(rasp.tokens, "abc"), LETTERS, 6,
                lambda ts: [None if i < 2 else "".join(ts[i - 2:i + 1]) == "abc" for i in range(len(ts))]),
    ProgramSpec("sort", "tokens sorted ascending (duplicates allowed)",
                lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1), DIGITS, 5, sorted),
    ProgramSpec("sort_freq", "tokens sorted by decreasing frequency (stable)", lambda: lib.make_sort_freq(5), DIGITS,
                5, lambda ts: sorted(ts, key=lambda t: -Counter(ts)[t])),
    ProgramSpec("count_less_freq", "positions whose token occurs at most twice", lambda: lib.make_count_less_freq(2),
                LETTERS, 6, lambda ts: [sum(c <= 2 for c in _hist(ts))] * len(ts)),
    ProgramSpec("pair_balance", "fraction of '(' minus fraction of ')' so far",
                lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), frozenset("()a"), 6,
                lambda ts: [(ts[:i + 1].count("(") - ts[:i + 1].count(")")) / (i + 1) for i in range(len(ts))],
                numerical=True),
    ProgramSpec("shuffle_dyck2", "balanced shuffle of () and {} (broadcast)", lib.make_shuffle_dyck2,
                frozenset("(){}"), 6, lambda ts: [_shuffle_dyck_ok(ts)] * len(ts)),
]
