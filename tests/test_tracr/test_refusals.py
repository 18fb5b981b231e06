"""Bad input to the compiler, the encoders and the torch conversion is refused with an error naming it."""

import numpy as np
import pytest
import torch

from tracr.compiler import compiling, lib
from tracr.craft.chamber.user_functions import UserFunctionError
from tracr.haiku_to_pytorch import to_torch
from tracr.rasp import rasp

BOS = "BOS"


@pytest.fixture(scope="module")
def length():
    model = compiling.compile_rasp_to_model(lib.make_length(), {"a", "b"}, 4, compiler_bos=BOS)
    return model, to_torch(model)


@pytest.fixture(scope="module")
def int_model():
    model = compiling.compile_rasp_to_model(rasp.Map(lambda x: x + 1, rasp.tokens), {1, 2, 3}, 3, compiler_bos=BOS)
    return model, to_torch(model)


# -- compile arguments ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    (dict(vocab="ab"), "vocab must be a set"),
    (dict(vocab={"a": 1}), "vocab must be a set"),
    (dict(vocab=3), "vocab must be a set"),
    (dict(vocab=[["a"]]), r"hashable token value, got \['a'\]"),
    (dict(vocab={None, "a"}), "must not be None"),
    (dict(vocab={1, "1"}), "print as the same label"),
    (dict(max_seq_len=True), "max_seq_len must be a positive int, got True"),
    (dict(max_seq_len=2.0), "max_seq_len must be a positive int, got 2.0"),
    (dict(causal="yes"), "causal must be True or False, got 'yes'"),
    (dict(causal=1), "causal must be True or False, got 1"),
    (dict(compiler_bos=["B"]), "compiler_bos must be a hashable"),
    (dict(compiler_pad=None), "compiler_pad must not be None"),
    (dict(mlp_exactness=float("nan")), "mlp_exactness must be a finite positive number, got nan"),
    (dict(mlp_exactness=float("inf")), "mlp_exactness .* got inf"),
    (dict(mlp_exactness=True), "mlp_exactness .* got True"),
    (dict(softmax_coldness=0), "softmax_coldness .* got 0"),
    (dict(softmax_coldness=-5.0), "softmax_coldness .* got -5.0"),
    (dict(softmax_coldness=float("nan")), "softmax_coldness .* got nan"),
    (dict(softmax_coldness="100"), "softmax_coldness .* got '100'"),
])
def test_bad_compile_arguments_are_named(kwargs, match):
    args = dict(program=rasp.Map(lambda x: x, rasp.tokens), vocab={"a"}, max_seq_len=3) | kwargs
    with pytest.raises(ValueError, match=match):
        compiling.compile_rasp_to_model(**args)


def test_vocab_may_be_any_collection_of_values():
    for vocab in (["a", "b"], ("a", "b"), frozenset("ab")):
        m = compiling.compile_rasp_to_model(rasp.Map(lambda x: x, rasp.tokens), vocab, 2, compiler_bos=BOS)
        assert m.apply([BOS, "b", "a"]).decoded == [BOS, "b", "a"]


# -- programs the value-set inference cannot build ------------------------------------------------------------


@pytest.mark.parametrize("make, match", [
    (lambda: rasp.Map(lambda x: None, rasp.tokens), "returns None .* on every input value"),
    (lambda: rasp.numerical(rasp.Map(lambda x: None, rasp.tokens)), "returns None .* on every input value"),
    (lambda: rasp.Map(lambda x: 1 / 0, rasp.tokens), "returns None .* on every input value"),
    (lambda: rasp.SequenceMap(lambda x, i: None, rasp.tokens, rasp.indices), "returns None"),
    (lambda: rasp.Map(lambda x: [x], rasp.tokens), r"unhashable value \['a'\]"),
    (lambda: rasp.numerical(rasp.Map(lambda x: "q", rasp.tokens)), "returned 'q' \\(not a finite number\\)"),
    (lambda: rasp.numerical(rasp.Map(lambda x: float("inf"), rasp.tokens)), "returned inf"),
])
def test_degenerate_value_sets_name_the_expression(make, match):
    prog = make()
    with pytest.raises(NotImplementedError, match=f"Unsupported RASP expression {prog.label} .*{match}"):
        compiling.compile_rasp_to_model(prog, {"a"}, 3)


# -- user functions that fail unexpectedly --------------------------------------------------------------------


def _raise(exc):
    raise exc


@pytest.mark.parametrize("make, what", [
    (lambda: rasp.Map(lambda x: {}[x], rasp.tokens), "Map"),
    (lambda: rasp.Map(lambda x: x + 1, rasp.tokens), "Map"),  # TypeError for "a" + 1 is not read as undefined here
    (lambda: rasp.SequenceMap(lambda x, i: _raise(RuntimeError("boom")), rasp.tokens, rasp.indices), "SequenceMap"),
])
def test_failing_map_functions_name_the_expression(make, what):
    prog = make()
    with pytest.raises(UserFunctionError, match=f"the function of {what} {prog.label} raised") as err:
        compiling.compile_rasp_to_model(prog, {"a"}, 3)
    assert isinstance(err.value, ValueError) and err.value.__cause__ is not None


def test_failing_select_predicate_names_the_selector_and_its_user():
    sel = rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: _raise(KeyError(k)))
    for prog in (rasp.Aggregate(sel, rasp.tokens), rasp.SelectorWidth(sel)):
        with pytest.raises(UserFunctionError, match=f"Select {sel.label} \\(the selector of {prog.label}\\) raised "
                                                    "KeyError") as err:
            compiling.compile_rasp_to_model(prog, {"a", "b"}, 3)
        assert isinstance(err.value.__cause__, KeyError)


def test_undefined_inputs_keep_tracr_semantics():
    """ArithmeticError in a Map drops that value; a TypeError in a predicate means "not selected"."""
    m = compiling.compile_rasp_to_model(rasp.numerical(rasp.Map(lambda x: 1 / x, rasp.tokens)), {0, 1, 2}, 2,
                                        compiler_bos=BOS)
    np.testing.assert_allclose(m.apply([BOS, 1, 2]).decoded[1:], [1.0, 0.5])
    sel = rasp.Select(rasp.tokens, rasp.tokens, lambda k, q: k < q)  # "a" < 1 raises TypeError: not selected
    m = compiling.compile_rasp_to_model(rasp.SelectorWidth(sel), {"a", 1, 2}, 3, compiler_bos=BOS)
    assert m.apply([BOS, 1, "a", 2]).decoded[1:] == [0, 0, 1]


# -- apply and encode -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tokens, error, match", [
    ([BOS, "a", BOS, "b"], ValueError, "BOS token 'BOS' may only come first, found at position 2"),
    ([BOS, "a", "compiler_pad", "b"], ValueError, "pad token 'compiler_pad' is not an input token"),
    ("BOSab", TypeError, "the input must be a list of tokens, got str"),
    (None, TypeError, "the input must be a list of tokens, got NoneType"),
    ([BOS, ["a"]], TypeError, r"unhashable token \['a'\]"),
    (np.array([[BOS, "a"]]), TypeError, "the input must be a list of tokens, got ndarray"),
])
def test_apply_refuses_bad_inputs(length, tokens, error, match):
    model, _ = length
    with pytest.raises(error, match=match):
        model.apply(tokens)


@pytest.mark.parametrize("batch, error, match", [
    (["a", "b"], TypeError, "element 0 of the batch must be a list of tokens, got str 'a' .*outer list"),
    ("ab", TypeError, "encode expects a batch .* got str"),
    ([], ValueError, "empty batch"),
    ([["a", BOS]], ValueError, "may only come first"),
    ([["a", "compiler_pad", "a"]], ValueError, "pad token"),
    ([["a"] * 5], ValueError, "exceeds"),
])
def test_encode_refuses_bad_batches(length, batch, error, match):
    _, tm = length
    with pytest.raises(error, match=match):
        tm.encode(batch)


def test_encode_refuses_a_flat_list_of_int_tokens(int_model):
    _, tm = int_model
    with pytest.raises(TypeError, match="element 0 of the batch must be a list of tokens, got int 1"):
        tm.encode([1, 2])
    assert tm.decode(tm.encode([[1, 2]])) == [[BOS, 2, 3]]


def test_an_empty_sequence_is_bos_alone(length):
    model, tm = length
    ids = tm.encode([[], ["a"]])
    assert ids.tolist() == [[tm.bos_id, tm.pad_id], [tm.bos_id, model.input_encoder.encoding_map["a"]]]
    assert tm.decode(ids) == [[BOS], [BOS, 1]]
    assert model.apply([BOS]).decoded == [BOS]


def test_decode_refuses_ids_encode_would_not_make(length):
    _, tm = length
    good = tm.encode([["a", "b"], ["a"]])
    bos, pad = tm.bos_id, tm.pad_id
    with pytest.raises(TypeError, match="ids must be a torch integer tensor .* got list"):
        tm.decode(good.tolist())
    with pytest.raises(TypeError, match="integer tensor .* got dtype torch.float64"):
        tm.decode(good.double())
    with pytest.raises(ValueError, match=r"shape \[batch, positions\] .* got \(3,\)"):
        tm.decode(good[0])
    with pytest.raises(ValueError, match="ids must lie in 0..3: row 0, position 1 is 9"):
        tm.decode(torch.tensor([[bos, 9]]))
    with pytest.raises(ValueError, match="must start with the BOS id"):
        tm.decode(good[:, 1:])
    with pytest.raises(ValueError, match="BOS id may only come first: row 0, position 2"):
        tm.decode(torch.tensor([[bos, good[0, 1], bos]]))
    with pytest.raises(ValueError, match="pads .* may only follow the sequence"):
        tm.decode(torch.tensor([[bos, pad, good[0, 1]]]))
    with pytest.raises(ValueError, match="6 positions exceed the maximum 5"):
        tm.decode(torch.tensor([[bos] + [good[0, 1].item()] * 5]))


# -- to_torch -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, match", [(None, "got NoneType$"), (lib.make_length(), "got SelectorWidth \\(compile"),
                                        ({"params": {}}, "got dict")])
def test_to_torch_needs_a_compiled_model(bad, match):
    with pytest.raises(TypeError, match="to_torch needs a compiled model .*compile_rasp_to_model.*" + match):
        to_torch(bad)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, "float64", np.float64])
def test_to_torch_needs_a_floating_dtype(length, dtype):
    model, _ = length
    with pytest.raises(TypeError, match="dtype must be a floating-point torch dtype"):
        to_torch(model, dtype=dtype)
