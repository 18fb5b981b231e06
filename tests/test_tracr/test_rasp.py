"""The RASP language and its evaluators."""

import pytest

from tracr.rasp import causal_eval, rasp


def test_labels_and_default_names():
    m = rasp.Map(lambda x: x, rasp.tokens)
    assert m.name == "map" and m.label == f"map_{m.unique_id}"
    assert rasp.tokens.label == "tokens" and rasp.indices.label == "indices" and rasp.length.label == "length"
    assert rasp.SequenceMap(lambda x, y: x, rasp.tokens, rasp.indices).name == "sequence_map"
    assert rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).name == "select"


def test_primitives_evaluate():
    assert rasp.tokens([3, 1]) == [3, 1]
    assert rasp.indices("abc") == [0, 1, 2]
    assert rasp.length("abc") == [3, 3, 3]


def test_map_fusion_and_simplify_off():
    inner = rasp.Map(lambda x: x + 1, rasp.tokens)
    fused = rasp.Map(lambda x: x * 2, inner)
    assert fused.inner is rasp.tokens and fused([1, 2]) == [4, 6]
    kept = rasp.Map(lambda x: x * 2, inner, simplify=False)
    assert kept.inner is inner and kept([1, 2]) == [4, 6]


def test_none_passes_through_maps():
    shifted = rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + 1), rasp.tokens)
    assert rasp.Map(lambda x: x + "!", shifted)(["a", "b"]) == [None, "a!"]
    assert rasp.SequenceMap(lambda x, y: x + y, shifted, rasp.tokens)(["a", "b"]) == [None, "ab"]


def test_operator_sugar():
    t = rasp.tokens
    assert (t + 1)([1, 2]) == [2, 3] and (1 - t)([1, 2]) == [0, -1] and (t * t)([2, 3]) == [4, 9]
    assert (t < 2)([1, 2]) == [True, False] and (t == 2)([1, 2]) == [False, True]
    assert (~(t == 2))([1, 2]) == [True, False] and (10 / t)([2, 5]) == [5, 2]
    assert ((t == 1) | (t == 2))([1, 2, 3]) == [True, True, False]
    assert isinstance(t + rasp.indices, rasp.SequenceMap) and isinstance(t + 1, rasp.Map)


@pytest.mark.parametrize("cmp, expected", [
    ("EQ", [True, False]), ("LT", [False, True]), ("LEQ", [True, True]), ("GT", [False, False]),
    ("GEQ", [True, False]), ("NEQ", [False, True]), ("TRUE", [True, True]), ("FALSE", [False, False]),
])
def test_comparisons_key_first(cmp, expected):
    c = rasp.Comparison[cmp]
    assert [c(1, 1), c(1, 2)] == expected
    with pytest.raises(ValueError):
        c(None, 1)


def test_select_rows_are_queries():
    sel = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    assert sel([0, 0, 0]) == [[False, False, False], [True, False, False], [True, True, False]]


def test_aggregate_semantics():
    sel = rasp.ConstantSelector([[True, True], [False, False]])
    assert rasp.Aggregate(sel, rasp.ConstantSOp([1, 2]), default=0)([0, 0]) == [1.5, 0]
    one = rasp.ConstantSelector([[True, False], [False, True]])
    assert rasp.Aggregate(one, rasp.tokens)(["x", "y"]) == ["x", "y"]
    with pytest.raises(ValueError):
        rasp.Aggregate(sel, rasp.tokens)(["x", "y"])
    assert rasp.Aggregate(one, rasp.tokens == "x")(["x", "y"]) == [True, False]  # a mean of one bool is the bool


def test_selector_width():
    assert rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ))("abac") == [2, 1, 2, 1]


def test_selector_simplification():
    a = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    b = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.LEQ)
    assert isinstance(a & b, rasp.Select) and isinstance(a | b, rasp.Select) and isinstance(~a, rasp.Select)
    assert (a & b)("ab") == a("ab")
    c = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    assert isinstance(a & c, rasp.SelectorAnd)
    full = rasp.Select(rasp.Full(1), rasp.tokens, lambda k, q: k == 1)
    assert isinstance(full & a, rasp.Select)


def test_has_prev_with_selector_and():
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LT)
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ)
    has_prev = rasp.numerical(rasp.Aggregate(prevs & same, rasp.numerical(rasp.Map(lambda x: 1, rasp.tokens)),
                                             default=0))
    assert has_prev("hello") == [0, 0, 0, 1, 0]


def test_encodings_and_copies():
    m = rasp.Map(lambda x: x, rasp.tokens)
    assert rasp.is_categorical(m)
    n = rasp.numerical(m)
    assert rasp.is_numerical(n) and rasp.is_categorical(m) and n.label != m.label
    assert rasp.get_encoding(rasp.categorical(n)) == rasp.Encoding.CATEGORICAL


def test_causal_evaluation_masks_future_keys():
    sel = rasp.ConstantSelector([[True] * 3] * 3)
    assert causal_eval.evaluate(sel, "abc") == [[True, False, False], [True, True, False], [True, True, True]]
    assert causal_eval.evaluate(rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens,
                                                                rasp.Comparison.TRUE)), "abcd") == [1, 2, 3, 4]


def test_constant_length_checked():
    with pytest.raises(ValueError):
        rasp.ConstantSOp([1, 2])([0, 0, 0])
