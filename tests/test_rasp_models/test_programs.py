"""Every registered program: reference == evaluator, compiled Haiku and torch models 100% accurate."""

import pytest

from datasets import generators
from datasets.teacher import teacher_problem
from rasp_models import registry
from rasp_models.base import BOS, Sharpness, descriptors
from tests.test_tracr.helpers import outputs_match
from tests.test_tracr.test_haiku_to_pytorch import assert_equivalent
from tests.test_tracr.test_relu_margin import assert_same_function_with_margin
from tracr.compiler import compiling
from tracr.haiku_to_pytorch import to_torch
from tracr.relu_margins import relu_margins

NAMES = registry.names()


def test_ladder_has_at_least_12_programs_spanning_sizes():
    assert len(NAMES) >= 12
    sizes = [descriptors(registry.get(n))["num_nonzero"] for n in NAMES]
    assert max(sizes) > 50 * min(sizes)


@pytest.mark.parametrize("name", NAMES)
def test_reference_evaluator_and_compiled_models_agree(name):
    spec = registry.get(name)
    program, model = spec.make_program(), spec.compile()
    seqs = generators.generate(spec, 500, seed=1)
    tm = to_torch(model)
    decoded = tm.decode(tm.encode(seqs))
    for xs, row in zip(seqs, decoded):
        ref = spec.reference(xs)
        assert outputs_match(program(xs), ref, atol=1e-9), (xs, program(xs), ref)
        assert outputs_match(row[1:], ref), (xs, row[1:], ref)
    # the Haiku model itself, on all 500 at once (one padded batch through its jitted forward)
    import jax.numpy as jnp
    import numpy as np

    ids = tm.encode(seqs).numpy()
    readout = np.asarray(model.forward(model.params, jnp.asarray(ids)).output) @ model.unembed_matrix
    for xs, row in zip(seqs, readout):
        vals = row[1: len(xs) + 1]
        got = (model.output_encoder.decode(vals.argmax(-1).tolist()) if model.is_categorical_output
               else model.output_encoder.decode(vals[:, 0].tolist()))
        assert outputs_match(got, spec.reference(xs)), (xs, got)
    for xs in seqs[:5]:  # and through apply()
        assert outputs_match(model.apply([BOS] + xs).decoded[1:], spec.reference(xs))


@pytest.mark.parametrize("name", NAMES)
def test_relu_margin_keeps_the_function_and_clears_every_kink(name):
    spec = registry.get(name)
    seqs = generators.generate(spec, 100, seed=4)
    program = spec.make_program()  # one program for both, so the residual layouts agree

    def compile_at(margin):
        return compiling.compile_rasp_to_model(program, set(spec.vocab), spec.max_seq_len, causal=spec.causal,
                                               compiler_bos=BOS, relu_margin=margin)

    assert_same_function_with_margin(compile_at(0.0), compile_at(0.5), seqs, 0.5)
    model = spec.compile(Sharpness(relu_margin=0.5))  # and through the sharpness knob
    assert relu_margins(model, seqs).smallest >= 0.5 - 1e-9
    tm = to_torch(model)
    for xs, row in zip(seqs, tm.decode(tm.encode(seqs))):
        assert outputs_match(row[1:], spec.reference(xs)), (xs, row[1:])


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf"), True, "1"])
def test_sharpness_rejects_bad_relu_margins(bad):
    with pytest.raises(ValueError, match="relu_margin"):
        Sharpness(relu_margin=bad)


@pytest.mark.parametrize("name", NAMES)
def test_torch_conversion_exact_on_studied_programs(name):
    spec = registry.get(name)
    assert_equivalent(spec.compile(), generators.generate(spec, 16, seed=2))


@pytest.mark.parametrize("name", NAMES)
def test_teacher_loss_and_gradient_zero_at_compiled_weights(name):
    prob = teacher_problem(registry.get(name), 64, seed=3)
    tm = prob.model
    loss = prob.loss_fn(tm, prob.data.tensors)
    loss.backward()
    assert float(loss) == 0.0
    assert max(float(p.grad.abs().max()) for p in tm.parameters()) == 0.0


def test_peak_uses_several_heads_in_one_layer():
    assert registry.get("peak").compile().model_config.num_heads >= 2


def test_palindrome_data_is_balanced():
    spec = registry.get("palindrome")
    share = generators.balance(spec, generators.generate(spec, 2000, seed=0))["all_true_share_sequences"]
    assert 0.45 < share < 0.55


def test_fractok_data_exercises_the_target():
    spec = registry.get("fractok")
    seqs = generators.generate(spec, 500, seed=0)
    fracs = {round(v, 6) for xs in seqs for v in spec.reference(xs)}
    assert 0.0 in fracs and 1.0 in fracs and len(fracs) > 20


def test_splits_are_disjoint_and_deterministic():
    spec = registry.get("peak")
    a = generators.splits(spec, (200, 50, 50), seed=0)
    assert a == generators.splits(spec, (200, 50, 50), seed=0)
    keys = [{tuple(x) for x in s} for s in a]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    with pytest.raises(ValueError):
        generators.splits(spec, (10, 0, 5), seed=0)


def test_bad_tokens_raise():
    spec = registry.get("palindrome")
    with pytest.raises(ValueError, match="vocabulary"):
        spec.check_tokens(["z"])
    with pytest.raises(ValueError, match="length"):
        spec.check_tokens(["a"] * 50)
    with pytest.raises(KeyError, match="registered"):
        registry.get("nope")
    tm = to_torch(spec.compile())
    with pytest.raises(ValueError):
        tm.encode([["a"] * 50])


@pytest.mark.parametrize("name, low, high", [("peak", 0.3, 0.5), ("palindrome", 0.3, 0.8), ("detect_abc", 0.2, 0.4), ("triplets", 0.3, 0.5),
                                             ("dominant_peak", 0.1, 0.5), ("shuffle_dyck2", 0.3, 0.7)])
def test_boolean_tasks_have_both_classes_in_controlled_shares(name, low, high):
    spec = registry.get(name)
    bal = generators.balance(spec, generators.generate(spec, 2000, seed=0))
    key = "all_true_share_sequences" if name in ("shuffle_dyck2",) else "true_share_positions"
    assert low < bal[key] < high, bal


def test_module_contract():
    from rasp_models import dominant_peak, fractok, palindrome, peak

    for mod in (palindrome, peak, fractok, dominant_peak):
        assert mod.BOS == "BOS" and mod.VOCAB and mod.MAX_SEQ_LEN >= 1
        assert mod.compile() is mod.compile()  # cached
        xs = sorted(mod.VOCAB, key=str)[:3]
        assert outputs_match(mod.program()(xs), mod.reference(xs), atol=1e-9)


def test_labelled_sequences_and_padding_collate():
    from datasets.dataloaders import IGNORE, LabelledSequences, loader

    spec = registry.get("triplets")
    ds = LabelledSequences(spec, [list("aaab"), list("ab")])
    ids, labels, mask = next(iter(loader(ds, batch_size=2, shuffle=False)))
    assert ids.shape == (2, 5) and ids[1, 3] == ds.pad_id
    assert mask.tolist() == [[False, False, False, True, True], [False, False, False, False, False]]
    assert labels[1].tolist() == [IGNORE] * 5
    enc = spec.compile().output_encoder.encoding_map
    assert labels[0, 3] == enc[True] and labels[0, 4] == enc[False]
    with pytest.raises(ValueError):
        LabelledSequences(spec, [])
    with pytest.raises(ValueError):
        LabelledSequences(spec, [["z"]])


def test_sweep_variants_use_their_family_generator():
    variant = registry.variant("fractok", letters=13, max_seq_len=10)
    assert variant.name == "fractok_v13_l10" and len(variant.vocab) == 14 and variant.max_seq_len == 10
    assert generators.sampler_for(variant) is generators.sampler_for(registry.get("fractok"))


@pytest.mark.parametrize("family, size, name", [("palindrome", {"max_seq_len": 4}, "palindrome_l4"),
                                                ("sort", {"max_seq_len": 3}, "sort_l3")])
def test_size_variants_are_the_same_algorithm_at_another_size(family, size, name):
    variant = registry.variant(family, **size)
    assert variant.name == name and variant.family == family and variant.max_seq_len == size["max_seq_len"]
    tm = to_torch(variant.compile())
    seqs = generators.generate(variant, 50, seed=0)
    assert all(outputs_match(row[1:], variant.reference(xs)) for xs, row in zip(seqs, tm.decode(tm.encode(seqs))))


def test_unknown_variants_are_rejected():
    with pytest.raises(KeyError, match="families"):
        registry.variant("peak", max_seq_len=4)
    with pytest.raises(TypeError):
        registry.variant("palindrome", letters=3)


@pytest.mark.parametrize("ladder", sorted(__import__("rasp_models.ladders", fromlist=["LADDERS"]).LADDERS))
def test_ladder_programs_are_exact_at_every_rung(ladder):
    """Each rung of a complexity ladder, compiled with a ReLU margin, decodes like its independent reference."""
    from rasp_models.base import Sharpness
    from rasp_models.ladders import LADDERS

    build, rungs = LADDERS[ladder]
    for k in rungs:
        spec = build(k)
        tm = to_torch(spec.compile(Sharpness(relu_margin=0.5)))
        seqs = generators.generate(spec, 60, seed=k)
        for xs, row in zip(seqs, tm.decode(tm.encode(seqs))):
            for got, want in zip(row[1:], spec.reference(list(xs))):
                if want is not None:
                    assert (abs(got - want) < 1e-6) if spec.numerical else got == want, (spec.name, xs, row)
