"""Regression tests for tracr's known bugs (reference section 7.2), each fixed here."""

import itertools

import numpy as np
import pytest

from tests.test_tracr.helpers import outputs_match
from tracr.compiler import compiling, lib
from tracr.rasp import rasp

BOS = "BOS"


def _all_inputs(vocab, max_len):
    vocab = sorted(vocab)
    return [list(t) for n in range(1, max_len + 1) for t in itertools.product(vocab, repeat=n)]


def _check_all(program, vocab, max_seq_len, inputs, atol=1e-6, **kw):
    model = compiling.compile_rasp_to_model(program, vocab, max_seq_len, compiler_bos=BOS, **kw)
    for xs in inputs:
        expected = program(xs)
        got = model.apply([BOS] + xs).decoded[1:]
        assert outputs_match(got, expected, atol=atol), (xs, got, expected)
    return model


def test_A_value_width_larger_than_key_size():
    vocab = {f"t{i}" for i in range(12)}
    prog = lib.shift_by(1, rasp.tokens)
    model = _check_all(prog, vocab, 3, [["t0", "t5", "t11"], ["t3", "t3"], ["t7"]])
    assert model.model_config.key_size >= 1


def test_B_two_selector_widths_in_one_layer_keep_bos_clean():
    hist = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ))
    length = rasp.SelectorWidth(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE))
    # Never selects (hist >= 1), so RASP gives the default 0 everywhere; tracr gave 0.667.
    sel = rasp.Select(hist, length, lambda k, q: k == 0)
    prog = rasp.numerical(rasp.Aggregate(sel, rasp.numerical(rasp.Map(lambda x: 1, rasp.tokens)), default=0))
    model = _check_all(prog, {"a", "b"}, 4, _all_inputs({"a", "b"}, 4))
    assert model.model_config.num_layers == 2


def test_C_attention_precision_at_large_key_size():
    vocab = {f"t{i:03d}" for i in range(400)}
    sel = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.TRUE)
    prog = rasp.numerical(rasp.Aggregate(sel, rasp.numerical(rasp.tokens == "t000"), default=0))
    model = compiling.compile_rasp_to_model(prog, vocab, 4, compiler_bos=BOS)
    assert model.model_config.key_size > 400
    out = model.apply([BOS, "t000", "t001"]).decoded[1:]
    np.testing.assert_allclose(out, [0.5, 0.5], atol=1e-9)  # tracr: 0.4899 at key size 402


@pytest.mark.parametrize("make", [
    lambda fp: rasp.Map(lambda v: v > 0.5, fp),
    lambda fp: rasp.numerical(rasp.Map(lambda v: 2 * v, fp)),
])
def test_D_maps_after_numerical_mean_are_exact_on_every_input(make):
    prog = make(lib.make_frac_prevs(rasp.tokens == "a"))
    _check_all(prog, {"a", "b"}, 6, _all_inputs({"a", "b"}, 6))


def test_D_known_failures_of_tracr():
    fp = lambda: lib.make_frac_prevs(rasp.tokens == "a")  # noqa: E731
    m = compiling.compile_rasp_to_model(rasp.numerical(rasp.Map(lambda v: 2 * v, fp())), {"a", "b"}, 5,
                                        compiler_bos=BOS)
    np.testing.assert_allclose(m.apply([BOS, *"aab"]).decoded[1:], [2, 2, 4 / 3], atol=1e-6)
    m = compiling.compile_rasp_to_model(rasp.Map(lambda v: v > 0.5, fp()), {"a", "b"}, 5, compiler_bos=BOS)
    assert m.apply([BOS, *"baaa"]).decoded[1:] == [False, False, True, True]


@pytest.mark.parametrize("vocab, f", [({1, 2, 3}, lambda x: -x), ({0, 1, 2}, lambda x: x - 1),
                                      ({0, 1, 2}, lambda x: 2.5 * x - 3)])
def test_E_negative_outputs_of_categorical_to_numerical_maps(vocab, f):
    _check_all(rasp.numerical(rasp.Map(f, rasp.tokens)), vocab, 3, _all_inputs(vocab, 3))


def test_F_selector_width_exact_up_to_max_seq_len_20():
    for categorical in (True, False):
        length = lib.make_length() if categorical else rasp.numerical(lib.make_length())
        inputs = [["a"] * n for n in range(1, 21)]
        _check_all(length, {"a", "b"}, 20, inputs, atol=1e-6)


def test_F_reverse_exact_at_max_seq_len_20():
    inputs = [[("a", "b", "c")[(i * 7 + n) % 3] for i in range(n)] for n in range(1, 21)]
    _check_all(lib.make_reverse(rasp.tokens), {"a", "b", "c"}, 20, inputs)


def test_K_copies_get_fresh_ids():
    x = rasp.Map(lambda v: v + 1, rasp.tokens)
    first = x.label
    y = rasp.numerical(x)
    z = x.named("z")
    assert len({first, y.label, z.label}) == 3
    assert x.label == first and z.name == "z"


def test_I_padding_does_not_change_real_positions():
    """Index-reading programs (tracr only masked pads by accident for token-keyed selectors)."""
    import jax.numpy as jnp

    for prog in (lib.make_length(), lib.make_reverse(rasp.tokens), lib.make_frac_prevs(rasp.tokens == "a")):
        m = compiling.compile_rasp_to_model(prog, {"a", "b"}, 6, compiler_bos=BOS)
        ids = m.input_encoder.encode([BOS, "a", "b", "a"])
        pad = m.input_encoder.pad_encoding
        short = m.forward(m.params, jnp.asarray([ids])).output[0]
        padded = m.forward(m.params, jnp.asarray([ids + [pad] * 3])).output[0, :4]
        np.testing.assert_allclose(np.asarray(short), np.asarray(padded), atol=1e-12)
