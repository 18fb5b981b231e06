"""`relu_margin`: the same function, with every ReLU off its kink (checked with `tracr.relu_margins`)."""

import math

import numpy as np
import pytest
import torch

from tests.test_tracr.cases import CASES, CAUSAL_CASES
from tests.test_tracr.helpers import random_inputs
from tracr.compiler import compiling, lib
from tracr.haiku_to_pytorch import to_torch
from tracr.rasp import rasp
from tracr.relu_margins import preactivations, relu_margins

ALL_CASES = {c.name: c for c in CASES + CAUSAL_CASES}
# One program per MLP construction: categorical Map, categorical -> numerical Map, discretising Map,
# LinearSequenceMap, categorical SequenceMap, SelectorWidth (numerical and categorical), attention-only layers.
COVERING = ["reverse_letters", "frac_prevs_l", "pair_balance", "sort", "nary_add", "count_less_freq",
            "count_less_freq_numerical", "shuffle_dyck2", "shift_by_1", "causal_width"]


def _compile(case, program, **kw):
    return compiling.compile_rasp_to_model(program, case.vocab, case.max_seq_len, causal=case.causal, **kw)


def _param_bytes(model) -> dict:
    return {(m, k): np.asarray(v).tobytes() for m, d in model.params.items() for k, v in d.items()}


def assert_same_function_with_margin(model0, model_m, seqs, margin):
    """`model_m` keeps every ReLU >= margin from its kink and computes `model0`'s residual stream (1e-9)."""
    assert model_m.residual_labels == model0.residual_labels
    r0, rm = relu_margins(model0, seqs), relu_margins(model_m, seqs)
    assert r0.at_kink > 0 and r0.smallest == 0  # what the margin is for: compiled units sit at their kink
    assert rm.smallest >= margin - 1e-9, rm
    assert rm.at_kink == 0
    t0, tm = to_torch(model0), to_torch(model_m)
    ids = t0.encode(seqs)
    real = ids != t0.pad_id
    with torch.no_grad():
        _, c0 = t0.run_with_cache(ids)
        _, cm = tm.run_with_cache(ids)
    for name in c0:
        if name.endswith(("hook_resid_mid", "hook_resid_post")):
            np.testing.assert_allclose(cm[name][real].numpy(), c0[name][real].numpy(), atol=1e-9, err_msg=name)
    last = f"blocks.{t0.num_layers - 1}.hook_resid_post"
    np.testing.assert_allclose(tm.readout(cm[last])[real].numpy(), t0.readout(c0[last])[real].numpy(), atol=1e-9)
    if t0.categorical_output:
        assert tm.decode(ids) == t0.decode(ids)


@pytest.mark.parametrize("name", COVERING + ["hist", "detect_abc", "sort_freq"])
def test_zero_margin_is_bit_identical_to_default(name):
    case = ALL_CASES[name]
    program = case.program()
    default = _compile(case, program)
    for zero in (0.0, 0):
        model = _compile(case, program, relu_margin=zero)
        assert _param_bytes(model) == _param_bytes(default)
        assert model.residual_labels == default.residual_labels


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf, True, "0.5", None])
def test_relu_margin_validated(bad):
    with pytest.raises(ValueError, match="relu_margin"):
        compiling.compile_rasp_to_model(lib.make_length(), {"a"}, 3, relu_margin=bad)


@pytest.mark.parametrize("name", sorted(ALL_CASES))
def test_margin_moves_every_relu_off_its_kink_and_keeps_the_function(name):
    case = ALL_CASES[name]
    program = case.program()
    seqs = random_inputs(case.vocab, case.max_seq_len, 100, seed=0)
    assert_same_function_with_margin(_compile(case, program), _compile(case, program, relu_margin=0.5), seqs, 0.5)


@pytest.mark.parametrize("margin", [0.01, 3.0])
@pytest.mark.parametrize("name", COVERING)
def test_small_and_large_margins(name, margin):
    """Margins above 1 rescale the "on" level, above 3/2 the ramp slopes and BOS kill terms."""
    case = ALL_CASES[name]
    program = case.program()
    seqs = random_inputs(case.vocab, case.max_seq_len, 50, seed=1)
    assert_same_function_with_margin(_compile(case, program), _compile(case, program, relu_margin=margin), seqs,
                                     margin)


def test_padding_units_get_the_negative_margin_as_bias():
    case = ALL_CASES["shift_by_1"]  # attention only: every layer's MLP is padding
    program = case.program()
    model = _compile(case, program, relu_margin=0.25)
    for i in range(model.model_config.num_layers):
        b = model.params[f"transformer/layer_{i}/mlp/linear_1"]["b"]
        assert np.array_equal(b, np.full_like(b, -0.25))
    r = relu_margins(_compile(case, program), [["a", "b"]])
    assert r.at_kink_by_component and all(k.endswith(".MLP:padding") for k in r.at_kink_by_component)


def test_undefined_values_inside_a_discretised_range_stay_off_the_ramps():
    """A numerical Map returning None between two defined input values: its threshold moves into the widest gap."""
    x = rasp.numerical(rasp.Map(lambda t: t - 2, rasp.tokens))
    y = rasp.numerical(rasp.Map(lambda v: None if v == 0 else 1 / v, x, simplify=False))
    seqs = [[1, 2, 3], [2, 2], [3, 1, 2, 2], [1]]
    model = compiling.compile_rasp_to_model(y, {1, 2, 3}, 4, relu_margin=1.0)
    assert relu_margins(model, seqs).smallest >= 1.0 - 1e-9
    tm = to_torch(model)
    for xs, row in zip(seqs, tm.decode(tm.encode(seqs))):
        assert all(a == pytest.approx(e) for a, e in zip(row[1:], rasp.evaluate(y, xs)) if e is not None)


def test_torch_hook_pre_matches_the_haiku_model():
    import jax.numpy as jnp

    case = ALL_CASES["count_less_freq"]
    model = _compile(case, case.program(), relu_margin=0.5)
    seqs = random_inputs(case.vocab, case.max_seq_len, 8, seed=2)
    pre, real = preactivations(model, seqs)
    ids = to_torch(model).encode(seqs).numpy()
    out = model.forward(model.params, jnp.asarray(ids))
    for i, p in enumerate(pre):
        lin = model.params[f"transformer/layer_{i}/mlp/linear_1"]
        np.testing.assert_allclose(p.numpy(), np.asarray(out.residuals[2 * i]) @ lin["w"] + lin["b"], atol=1e-9)
    assert real.sum() == sum(len(s) + 1 for s in seqs)
