"""Example RASP programs (the same programs and signatures as tracr's `compiler.lib`)."""

from __future__ import annotations

from typing import Callable, Sequence

from tracr.rasp import rasp

Comparison = rasp.Comparison


def make_length() -> rasp.SOp:
    """The sequence length at every position: width of an all-true selector."""
    all_true = rasp.Select(rasp.tokens, rasp.tokens, Comparison.TRUE).named("all_true_selector")
    return rasp.SelectorWidth(all_true).named("length")


length = make_length()


def make_reverse(sop: rasp.SOp) -> rasp.SOp:
    """`sop` read backwards: position i reads position length - i - 1."""
    opp_idx = (length - rasp.indices).named("opp_idx")
    opp_idx = (opp_idx - 1).named("opp_idx-1")
    flip = rasp.Select(rasp.indices, opp_idx, Comparison.EQ).named("reverse_selector")
    return rasp.Aggregate(flip, sop).named("reverse")


def make_hist() -> rasp.SOp:
    """How often each position's token occurs in the whole sequence."""
    same = rasp.Select(rasp.tokens, rasp.tokens, Comparison.EQ).named("hist_selector")
    return rasp.SelectorWidth(same).named("hist")


def make_sort_unique(vals: rasp.SOp, keys: rasp.SOp) -> rasp.SOp:
    """`vals` sorted by `keys`, which must be unique."""
    smaller = rasp.Select(keys, keys, Comparison.LT).named("smaller")
    target_pos = rasp.SelectorWidth(smaller).named("target_pos")
    sel_new = rasp.Select(target_pos, rasp.indices, Comparison.EQ)
    return rasp.Aggregate(sel_new, vals).named("sort")


def make_sort(vals: rasp.SOp, keys: rasp.SOp, *, max_seq_len: int, min_key: float) -> rasp.SOp:
    """`vals` sorted by `keys` (numeric, possibly repeated); ties keep input order.

    Keys become `key + min_key * i / max_seq_len`, unique as long as `min_key` is at most the smallest gap between
    distinct keys.
    """
    keys = rasp.SequenceMap(lambda x, i: x + min_key * i / max_seq_len, keys, rasp.indices).named("keys")
    return make_sort_unique(vals, keys)


def make_sort_freq(max_seq_len: int) -> rasp.SOp:
    """Tokens sorted by decreasing frequency (stable)."""
    hist = -1 * make_hist()
    return make_sort(rasp.tokens, hist, max_seq_len=max_seq_len, min_key=1).named("sort_freq")


def make_frac_prevs(bools: rasp.SOp) -> rasp.SOp:
    """Running fraction of positions <= i where `bools` is True (numerical)."""
    bools = rasp.numerical(bools)
    prevs = rasp.Select(rasp.indices, rasp.indices, Comparison.LEQ)
    return rasp.numerical(rasp.Aggregate(prevs, bools, default=0)).named("frac_prevs")


def make_pair_balance(sop: rasp.SOp, open_token, close_token) -> rasp.SOp:
    """Fraction of opening minus fraction of closing tokens so far."""
    bools_open = rasp.numerical(sop == open_token).named("bools_open")
    opens = rasp.numerical(make_frac_prevs(bools_open)).named("opens")
    bools_close = rasp.numerical(sop == close_token).named("bools_close")
    closes = rasp.numerical(make_frac_prevs(bools_close)).named("closes")
    pair_balance = rasp.numerical(rasp.LinearSequenceMap(opens, closes, 1, -1))
    return pair_balance.named("pair_balance")


def make_shuffle_dyck(pairs: Sequence[str]) -> rasp.SOp:
    """True at every position iff the whole input is a shuffle of balanced bracket sequences of the given pairs."""
    assert len(pairs) >= 1
    balances = []
    for pair in pairs:
        assert len(pair) == 2
        open_token, close_token = pair
        balance = make_pair_balance(rasp.tokens, open_token=open_token, close_token=close_token)
        balances.append(balance.named(f"balance_{pair}"))

    any_negative = balances[0] < 0
    for balance in balances[1:]:
        any_negative = any_negative | (balance < 0)
    any_negative = rasp.numerical(rasp.Map(lambda x: x, any_negative)).named("any_negative")
    select_all = rasp.Select(rasp.indices, rasp.indices, Comparison.TRUE).named("select_all")
    has_neg = rasp.numerical(rasp.Aggregate(select_all, any_negative, default=0)).named("has_neg")

    all_zero = balances[0] == 0
    for balance in balances[1:]:
        all_zero = all_zero & (balance == 0)
    all_zero = all_zero.named("all_zero")
    last_idx = (length - 1).named("last_idx")
    last_zero = rasp.Aggregate(rasp.Select(rasp.indices, last_idx, Comparison.EQ), all_zero).named("last_zero")
    not_has_neg = (~has_neg).named("not_has_neg")
    return (last_zero & not_has_neg).named("shuffle_dyck")


def make_shuffle_dyck2() -> rasp.SOp:
    return make_shuffle_dyck(pairs=["()", "{}"]).named("shuffle_dyck2")


def shift_by(offset: int, sop: rasp.SOp) -> rasp.SOp:
    """`sop` shifted right by `offset`; the first `offset` positions are None."""
    select_off_by_offset = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + offset)
    out = rasp.Aggregate(select_off_by_offset, sop, default=None)
    return out.named(f"shift_by({offset})")


def detect_pattern(sop: rasp.SOp, pattern: Sequence) -> rasp.SOp:
    """True at the last position of each occurrence of `pattern`; the first len-1 positions are None."""
    if len(pattern) < 1:
        raise ValueError(f"Length of `pattern` must be at least 1. Got {pattern}")
    detectors = []
    for i, element in enumerate(pattern):
        detector = sop == element
        if i != len(pattern) - 1:
            detector = shift_by(len(pattern) - i - 1, detector)
        detectors.append(detector)
    pattern_detected = detectors.pop()
    while detectors:
        pattern_detected = pattern_detected & detectors.pop()
    return pattern_detected.named(f"detect_pattern({pattern})")


def make_count_less_freq(n: int) -> rasp.SOp:
    """Number of positions whose token occurs at most `n` times, at every position."""
    hist = make_hist()
    select_less = rasp.Select(hist, hist, lambda k, q: k <= n).named("select_less")
    return rasp.SelectorWidth(select_less).named("count_less_freq")


def make_count(sop: rasp.SOp, token) -> rasp.SOp:
    """Number of occurrences of `token` in `sop`, at every position."""
    return rasp.SelectorWidth(rasp.Select(sop, sop, lambda k, q: k == token)).named(f"count_{token}")


def make_nary_sequencemap(f: Callable, *sops: rasp.SOp) -> rasp.SOp:
    """`f(*values)` elementwise over several S-ops, via tuple-building SequenceMaps."""
    values = rasp.Map(lambda x: (x,), sops[0])
    for sop in sops[1:]:
        values = rasp.SequenceMap(lambda x, y: (*x, y), values, sop)
    return rasp.Map(lambda args: f(*args), values)
