"""A compiled model checks its own categorical S-ops (no silent wrong answers), decodes zero rows as None, and
has a softmax coldness knob."""

import numpy as np
import pytest
import torch

from tracr.compiler import compiling, lib
from tracr.haiku_to_pytorch import to_torch
from tracr.rasp import rasp

BOS = "BOS"


def _mean_of_all_tokens():
    """A categorical Aggregate that selects every key: outside the compilable subset when values differ."""
    return rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE), rasp.tokens).named("blend")


@pytest.fixture(scope="module")
def blend():
    agg = _mean_of_all_tokens()
    model = compiling.compile_rasp_to_model(agg, {"a", "b"}, 3, compiler_bos=BOS)
    return agg, model, to_torch(model)


def test_apply_refuses_a_blended_categorical_output(blend):
    agg, model, _ = blend
    with pytest.raises(ValueError, match=f"Categorical S-op {agg.label} is not one-hot at position 1") as err:
        model.apply([BOS, "a", "b"])
    assert "several keys holding different values" in str(err.value)
    with pytest.raises(ValueError):
        rasp.evaluate(agg, ["a", "b"])  # the evaluator refuses too


def test_torch_decode_and_check_outputs_refuse_a_blended_output(blend):
    agg, _, tm = blend
    ids = tm.encode([["a", "a"], ["a", "b"]])
    with pytest.raises(ValueError, match=f"{agg.label} is not one-hot at position 1 .* of sequence 1"):
        tm.decode(ids)
    with pytest.raises(ValueError, match=agg.label):
        tm.check_outputs(ids)
    assert tm.decode(ids, check=False)[1][0] == BOS  # the check can be switched off explicitly
    tm(ids)  # forward itself never checks (samplers run it with perturbed weights)


def test_identical_selected_values_are_exact_and_pass(blend):
    _, model, tm = blend
    assert model.apply([BOS, "a", "a"]).decoded == [BOS, "a", "a"]
    assert tm.decode(tm.encode([["b", "b", "b"]])) == [[BOS, "b", "b", "b"]]


@pytest.mark.parametrize("make_output", [
    lambda agg: rasp.Map(lambda x: x + "!", agg),
    lambda agg: rasp.numerical(rasp.Map(lambda x: 1 if x == "a" else 0, agg)),
])
def test_a_blend_in_an_intermediate_s_op_is_named(make_output):
    agg = _mean_of_all_tokens()
    out = make_output(agg)
    model = compiling.compile_rasp_to_model(out, {"a", "b"}, 3, compiler_bos=BOS)
    with pytest.raises(ValueError, match=f"Categorical S-op {agg.label} .* computing {out.label}"):
        model.apply([BOS, "b", "a"])
    tm = to_torch(model)
    with pytest.raises(ValueError, match=agg.label):
        tm.decode(tm.encode([["b", "a"]]))


def test_edited_weights_skip_the_default_check(blend):
    _, model, tm = blend
    ids = tm.encode([["a", "b"]])
    edited = to_torch(model)
    assert edited.weights_are_compiled()
    with torch.no_grad():
        edited.blocks[0].mlp.b_out.add_(1e-3)
    assert not edited.weights_are_compiled()
    assert edited.decode(ids)[0][0] == BOS  # an ablated or sampled model is measured, not policed
    with pytest.raises(ValueError, match="not one-hot"):
        edited.decode(ids, check=True)
    assert model.weights_are_compiled()


def test_edited_haiku_params_skip_the_default_check():
    model = compiling.compile_rasp_to_model(_mean_of_all_tokens(), {"a", "b"}, 3, compiler_bos=BOS)
    model.params = {m: {k: v * 1.0 + 0.0 for k, v in d.items()} for m, d in model.params.items()}
    assert model.weights_are_compiled()  # equal values are still the compiled weights
    model.params["token_embed"]["embeddings"][0, 0] += 1e-3
    assert not model.weights_are_compiled()
    model.apply([BOS, "a", "b"])
    with pytest.raises(ValueError, match="not one-hot"):
        model.apply([BOS, "a", "b"], check=True)


def test_nothing_selected_decodes_to_none_like_the_evaluator():
    prog = lib.shift_by(1, rasp.tokens)
    model = compiling.compile_rasp_to_model(prog, {"a", "b"}, 4, compiler_bos=BOS)
    assert prog(["b", "a"]) == [None, "b"]
    assert model.apply([BOS, "b", "a"]).decoded == [BOS, None, "b"]  # the argmax used to give "a"
    tm = to_torch(model)
    assert tm.decode(tm.encode([["b", "a"], ["a"]])) == [[BOS, None, "b"], [BOS, None]]


def test_check_outputs_refuses_a_model_too_smooth_to_check():
    model = compiling.compile_rasp_to_model(_mean_of_all_tokens(), {"a", "b"}, 3, softmax_coldness=1.0)
    assert not model.one_hot_checks.enabled
    tm = to_torch(model)
    with pytest.raises(ValueError, match="no usable one-hot checks"):
        tm.check_outputs(tm.encode([["a"]]))


# -- softmax coldness -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [lib.make_length, lambda: lib.make_frac_prevs(rasp.tokens == "a"),
                                     lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens)])
def test_default_coldness_is_bit_identical_to_explicit_100(factory):
    a = compiling.compile_rasp_to_model(factory(), {"a", "b", "c"}, 5)
    b = compiling.compile_rasp_to_model(factory(), {"a", "b", "c"}, 5, softmax_coldness=100, mlp_exactness=100)
    assert a.params.keys() == b.params.keys()
    for m in a.params:
        for k in a.params[m]:
            assert np.array_equal(a.params[m][k], b.params[m][k]), (m, k)


def test_lower_coldness_still_compiles_length_and_frac_prevs():
    inputs = [list("a"), list("abba"), list("bbbab"), list("aaaaaa")]
    for make in (lib.make_length, lambda: lib.make_frac_prevs(rasp.tokens == "a")):
        cold = compiling.compile_rasp_to_model(make(), {"a", "b"}, 6, compiler_bos=BOS)
        warm = compiling.compile_rasp_to_model(make(), {"a", "b"}, 6, compiler_bos=BOS, softmax_coldness=20)
        queries = [m for m in cold.params if m.endswith("attn/query")]
        assert any(not np.array_equal(cold.params[m]["w"], warm.params[m]["w"]) for m in queries)
        program = make()
        for xs in inputs:
            out_cold, out_warm = cold.apply([BOS, *xs]), warm.apply([BOS, *xs])
            np.testing.assert_allclose(np.asarray(out_warm.decoded[1:], dtype=float), program(xs), atol=1e-3)
            assert any(not np.allclose(_softmax(c), _softmax(w), atol=1e-12, rtol=0)
                       for c, w in zip(out_cold.attn_logits, out_warm.attn_logits))


def _softmax(logits):
    x = np.asarray(logits)
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
