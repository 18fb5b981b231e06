"""The compiled Haiku model equals the RASP evaluator on every lib program (tracr's test style)."""

import pytest

from tests.test_tracr.cases import CASES, CAUSAL_CASES, UNSUPPORTED_CASES
from tests.test_tracr.helpers import oracle, outputs_match, random_inputs
from tracr.compiler import compiling
from tracr.rasp import causal_eval, rasp

BOS = "BOS"


@pytest.mark.parametrize("case", CASES + CAUSAL_CASES, ids=lambda c: c.name)
def test_evaluator_reproduces_reference_vectors(case):
    program = case.program()
    ev = causal_eval.evaluate if case.causal else rasp.evaluate
    for xs, expected in zip(case.inputs, case.expected):
        assert outputs_match(ev(program, xs), expected, atol=1e-9), (xs, ev(program, xs), expected)


@pytest.mark.parametrize("case", CASES + CAUSAL_CASES, ids=lambda c: c.name)
def test_compiled_model_matches_evaluator(case):
    program = case.program()
    model = compiling.compile_rasp_to_model(program, case.vocab, case.max_seq_len, causal=case.causal,
                                            compiler_bos=BOS)
    inputs = case.inputs + random_inputs(case.vocab, case.max_seq_len, 30, seed=len(case.name))
    checked = 0
    for xs in inputs:
        expected = oracle(program, xs, case.causal)
        if expected is None:
            continue
        decoded = model.apply([BOS] + xs).decoded
        assert decoded[0] == BOS
        assert outputs_match(decoded[1:], expected), (xs, decoded[1:], expected)
        checked += 1
    assert checked >= len(case.inputs) + 20


@pytest.mark.parametrize("name", sorted(UNSUPPORTED_CASES))
def test_unsupported_programs_raise_naming_the_expression(name):
    program = UNSUPPORTED_CASES[name]()
    with pytest.raises(NotImplementedError, match="Unsupported RASP expression"):
        compiling.compile_rasp_to_model(program, {"a", "b"}, 4)


def test_composite_selector_error_names_the_selector():
    sel = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ) & rasp.Select(
        rasp.indices, rasp.indices, rasp.Comparison.LEQ)
    agg = rasp.Aggregate(sel, rasp.tokens)
    with pytest.raises(NotImplementedError, match=sel.label):
        compiling.compile_rasp_to_model(agg, {"a", "b"}, 4)


@pytest.mark.parametrize("kwargs", [
    dict(vocab={"a", "compiler_bos"}), dict(vocab={"a", "compiler_pad"}), dict(vocab=set()), dict(max_seq_len=0),
    dict(mlp_exactness=0), dict(compiler_bos="x", compiler_pad="x"),
])
def test_bad_compile_arguments_raise_value_error(kwargs):
    args = dict(program=rasp.Map(lambda x: x, rasp.tokens), vocab={"a"}, max_seq_len=3) | kwargs
    with pytest.raises(ValueError):
        compiling.compile_rasp_to_model(**args)


@pytest.fixture(scope="module")
def small_model():
    return compiling.compile_rasp_to_model(rasp.Map(lambda x: x, rasp.tokens), {"a", "b"}, 3, compiler_bos=BOS)


@pytest.mark.parametrize("tokens, match", [
    (["a", "b"], "BOS"), ([BOS, "a", "z"], "vocabulary"), ([BOS, "a", "a", "a", "a"], "exceeds"),
])
def test_bad_apply_inputs_raise_value_error(small_model, tokens, match):
    with pytest.raises(ValueError, match=match):
        small_model.apply(tokens)


@pytest.mark.parametrize("token", ["a", "b", "c"])
def test_single_token_programs(token):
    vocab = {"a", "b", "c"}
    progs = [rasp.Map(lambda x: x + "!", rasp.tokens),
             rasp.SequenceMap(lambda x, i: f"{x}{i}", rasp.tokens, rasp.indices),
             rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), rasp.tokens)]
    for p in progs:
        m = compiling.compile_rasp_to_model(p, vocab, 2, compiler_bos=BOS)
        assert m.apply([BOS, token]).decoded[1:] == p([token])
