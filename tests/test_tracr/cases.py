"""Compiler test cases as data: (name, program factory, vocab, max_seq_len, inputs, expected outputs).

Expected outputs are the reference vectors of tracr's documented behaviour; the RASP evaluator must reproduce
them, and the compiled model must match the evaluator (None positions skipped, numbers within tolerance).
Programs are built by factories so every test gets fresh expressions.
"""

import dataclasses
from typing import Callable

from tracr.compiler import lib
from tracr.rasp import rasp

T, F = True, False


@dataclasses.dataclass
class Case:
    name: str
    program: Callable[[], rasp.SOp]
    vocab: set
    max_seq_len: int
    inputs: list
    expected: list
    causal: bool = False


def _l(s):
    return list(s)


CASES = [
    Case("length", lib.make_length, set("abc"), 6, [_l("abc"), _l("a"), _l("abcabc")], [[3] * 3, [1], [6] * 6]),
    Case("reverse_letters", lambda: lib.make_reverse(rasp.tokens), set("abcd"), 5,
         [_l("abcd"), _l("abc"), _l("ad"), _l("c"), _l("aabbc")],
         [_l("dcba"), _l("cba"), _l("da"), _l("c"), _l("cbbaa")]),
    Case("reverse_ints", lambda: lib.make_reverse(rasp.tokens), {1, 2, 3}, 5,
         [[1, 2, 3], [3, 1], [1, 2, 3, 3, 2]], [[3, 2, 1], [1, 3], [2, 3, 3, 2, 1]]),
    Case("hist", lib.make_hist, set("abcd"), 5, [_l("abac"), _l("aaaa"), _l("abcd"), _l("bbacb")],
         [[2, 1, 2, 1], [4] * 4, [1] * 4, [3, 3, 1, 1, 3]]),
    Case("sort_unique", lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), {1, 2, 3, 4, 5}, 5,
         [[2, 4, 3, 1], [5, 1, 3], [3, 1, 2, 5, 4]], [[1, 2, 3, 4], [1, 3, 5], [1, 2, 3, 4, 5]]),
    Case("sort_unique_by_neg_index", lambda: lib.make_sort_unique(rasp.tokens, 1 - rasp.indices), set("abcd"), 5,
         [_l("abcd")], [_l("dcba")]),
    Case("sort", lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1), {1, 2, 3, 4}, 5,
         [[2, 4, 1, 2], [3, 3, 1], [4, 4, 4, 1, 1], [2, 4, 3, 1]],
         [[1, 2, 2, 4], [1, 3, 3], [1, 1, 4, 4, 4], [1, 2, 3, 4]]),
    Case("sort_by_neg_index", lambda: lib.make_sort(rasp.tokens, 1 - rasp.indices, max_seq_len=5, min_key=1),
         set("abcd"), 5, [_l("abcd")], [_l("dcba")]),
    Case("sort_freq", lambda: lib.make_sort_freq(max_seq_len=5), {1, 2, 3, 4}, 5,
         [[2, 4, 2, 1], [1, 2, 3, 3], [4, 1, 4, 1, 4], [3, 3, 3, 3]],
         [[2, 2, 4, 1], [3, 3, 1, 2], [4, 4, 4, 1, 1], [3, 3, 3, 3]]),
    Case("frac_prevs_l", lambda: lib.make_frac_prevs(rasp.tokens == "l"), set("helo"), 5,
         [_l("hello"), _l("llll"), _l("hel")], [[0, 0, 1 / 3, 1 / 2, 2 / 5], [1, 1, 1, 1], [0, 0, 1 / 3]]),
    Case("frac_prevs_open", lambda: lib.make_frac_prevs(rasp.tokens == "("), set("abc()"), 10,
         [_l("a()b(c))")], [[0, 1 / 2, 1 / 3, 1 / 4, 2 / 5, 2 / 6, 2 / 7, 2 / 8]]),
    Case("frac_prevs_close", lambda: lib.make_frac_prevs(rasp.tokens == ")"), set("abc()"), 10,
         [_l("a()b(c))")], [[0, 0, 1 / 3, 1 / 4, 1 / 5, 1 / 6, 2 / 7, 3 / 8]]),
    Case("pair_balance", lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), set("abc()"), 10,
         [_l("a()b(c))"), _l("(())"), _l(")(")],
         [[0, 1 / 2, 0, 0, 1 / 5, 1 / 6, 0, -1 / 8], [1, 1, 1 / 3, 0], [-1, 0]]),
    Case("shuffle_dyck1", lambda: lib.make_shuffle_dyck(["()"]), set("()"), 6,
         [_l("()"), _l("(()())"), _l(")("), _l("(()")], [[T] * 2, [T] * 6, [F] * 2, [F] * 3]),
    Case("shuffle_dyck2", lib.make_shuffle_dyck2, set("(){}"), 5,
         [_l("({)}"), _l("(){)}"), _l("{}("), _l("{()}")], [[T] * 4, [F] * 5, [F] * 3, [T] * 4]),
    Case("shuffle_dyck3", lambda: lib.make_shuffle_dyck(["()", "{}", "[]"]), set("(){}[]"), 6,
         [_l("({)[}]"), _l("(){)}"), _l("{}[(]")], [[T] * 6, [F] * 5, [F] * 5]),
    Case("shift_by_1", lambda: lib.shift_by(1, rasp.tokens), set("abcd"), 5, [_l("abcd"), _l("dcb")],
         [[None, "a", "b", "c"], [None, "d", "c"]]),
    Case("shift_by_2", lambda: lib.shift_by(2, rasp.tokens), set("abcd"), 5, [_l("abcd"), _l("ba")],
         [[None, None, "a", "b"], [None, None]]),
    Case("detect_a", lambda: lib.detect_pattern(rasp.tokens, "a"), set("abcd"), 5, [_l("bacd")], [[F, T, F, F]]),
    Case("detect_ab", lambda: lib.detect_pattern(rasp.tokens, "ab"), set("ab"), 5,
         [_l("aaba"), _l("abaa"), _l("aaaa")], [[None, F, T, F], [None, T, F, F], [None, F, F, F]]),
    Case("detect_abc", lambda: lib.detect_pattern(rasp.tokens, "abc"), set("abc"), 6,
         [_l("abcabc"), _l("aabcbc"), _l("cba")],
         [[None, None, T, F, F, T], [None, None, F, T, F, F], [None, None, F]]),
    Case("count_less_freq", lambda: lib.make_count_less_freq(2), set("abcd"), 6,
         [_l("aaabbc"), _l("aacbbc"), _l("abcd")], [[3] * 6, [6] * 6, [4] * 4]),
    Case("count_less_freq_numerical", lambda: rasp.numerical(lib.make_count_less_freq(2)), set("abcd"), 6,
         [_l("aaabbc"), _l("aacbbc"), _l("abcd")], [[3] * 6, [6] * 6, [4] * 4]),
    Case("count_a", lambda: lib.make_count(rasp.tokens, "a"), set("abc"), 8,
         [_l("aaabbc"), _l("cabc"), _l("bbc")], [[3] * 6, [1] * 4, [0] * 3]),
    Case("nary_add", lambda: lib.make_nary_sequencemap(lambda x, y, z: x + y - z, rasp.tokens, rasp.tokens,
                                                        rasp.indices), {1, 2, 3}, 5,
         [[1, 2, 3], [3, 3, 3, 3, 3]], [[2, 3, 4], [6, 5, 4, 3, 2]]),
    Case("nary_div", lambda: lib.make_nary_sequencemap(lambda x, y, z: x * y / z, rasp.indices, rasp.indices,
                                                        rasp.tokens), {1, 2, 3}, 3,
         [[1, 2, 3], [3, 3, 3]], [[0, 1 / 2, 4 / 3], [0, 1 / 3, 4 / 3]]),
]

CAUSAL_CASES = [
    Case("causal_width", lambda: rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)),
         set("abcd"), 5, [_l("abcd")], [[1, 2, 3, 4]], causal=True),
    Case("causal_frac_prevs", lambda: lib.make_frac_prevs(rasp.tokens == "a"), set("ab"), 5, [_l("abab")],
         [[1, 1 / 2, 2 / 3, 1 / 2]], causal=True),
    Case("causal_shift_by_1", lambda: lib.shift_by(1, rasp.tokens), set("abcd"), 5, [_l("abcd")],
         [[None, "a", "b", "c"]], causal=True),
    Case("causal_detect_ab", lambda: lib.detect_pattern(rasp.tokens, "ab"), set("ab"), 5, [_l("aaba")],
         [[None, F, T, F]], causal=True),
    Case("causal_reverse", lambda: lib.make_reverse(rasp.tokens), set("abc"), 5, [_l("abc")], [_l("aaa")],
         causal=True),
]


def _num_agg_of(sop_factory, default=0):
    return lambda: rasp.numerical(rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ),
                                                 sop_factory(), default=default))


UNSUPPORTED_CASES = {
    "numerical_value_into_categorical_aggregate": lambda: rasp.Aggregate(
        rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), rasp.numerical(rasp.tokens == "a")),
    "categorical_value_into_numerical_aggregate": lambda: rasp.numerical(rasp.Aggregate(
        rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), rasp.tokens == "a", default=0)),
    "numerical_mean_of_non_binary": _num_agg_of(lambda: rasp.numerical(rasp.Map(lambda x: 0.5 * (x == "a") + 0.5,
                                                                               rasp.tokens))),
    "numerical_aggregate_default_1": _num_agg_of(lambda: rasp.numerical(rasp.tokens == "a"), default=1),
    "categorical_aggregate_non_none_default": lambda: rasp.Aggregate(
        rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), rasp.tokens, default="a"),
    "numerical_select_keys": lambda: rasp.Aggregate(
        rasp.Select(rasp.numerical(rasp.tokens == "a"), rasp.tokens, rasp.Comparison.EQ), rasp.tokens),
    "numerical_nonlinear_sequence_map": lambda: rasp.numerical(rasp.SequenceMap(
        lambda x, y: x * y, rasp.numerical(rasp.tokens == "a"), rasp.numerical(rasp.tokens == "b"))),
    "categorical_linear_sequence_map": lambda: rasp.LinearSequenceMap(rasp.tokens == "a", rasp.tokens == "b", 1, 1),
    "numerical_tokens": lambda: rasp.Map(lambda x: x, rasp.numerical(rasp.tokens)),
    "numerical_indices": lambda: rasp.Map(lambda x: x, rasp.numerical(rasp.indices)),
    "length_primitive": lambda: rasp.Map(lambda x: x + 1, rasp.length),
    "selector_and": lambda: rasp.Aggregate(
        rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
        & rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ), rasp.tokens),
    "selector_or_width": lambda: rasp.SelectorWidth(
        rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
        | rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ)),
    "full_node": lambda: rasp.SequenceMap(lambda x, y: x, rasp.tokens, rasp.Full(1)),
}
