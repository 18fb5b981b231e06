"""The torch conversion computes exactly the compiled Haiku model's function."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch

from tests.test_tracr.cases import CASES, CAUSAL_CASES
from tests.test_tracr.helpers import random_inputs
from tracr.compiler import compiling, lib
from tracr.haiku_to_pytorch import to_torch
from tracr.rasp import rasp

BOS = "BOS"


def assert_equivalent(model, batch, atol=1e-9):
    """Every half-layer residual and every attention-logit tensor agree; decode equals apply().decoded.

    Returns the largest absolute residual difference.
    """
    tm = to_torch(model, dtype=torch.float64)
    ids = tm.encode(batch)
    _, cache = tm.run_with_cache(ids)
    hk_out = model.forward(model.params, jnp.asarray(ids.numpy()))
    worst = 0.0
    for i in range(model.model_config.num_layers):
        for j, name in ((2 * i, "hook_resid_mid"), (2 * i + 1, "hook_resid_post")):
            diff = np.abs(cache[f"blocks.{i}.{name}"].detach().numpy() - np.asarray(hk_out.residuals[j])).max()
            worst = max(worst, float(diff))
        np.testing.assert_allclose(cache[f"blocks.{i}.attn.hook_logits"].detach().numpy(),
                                   np.asarray(hk_out.attn_logits[i]), rtol=1e-9, atol=1e-6)
    assert worst <= atol, worst
    decoded = tm.decode(ids)
    for xs, row in zip(batch, decoded):
        expected = model.apply([BOS, *xs]).decoded
        if tm.categorical_output:
            assert row == expected
        else:
            np.testing.assert_allclose(row[1:], expected[1:], atol=1e-9)
    return worst


@pytest.mark.parametrize("case", CASES + CAUSAL_CASES, ids=lambda c: c.name)
def test_lib_programs_convert_exactly(case):
    model = compiling.compile_rasp_to_model(case.program(), case.vocab, case.max_seq_len, causal=case.causal,
                                            compiler_bos=BOS)
    batch = case.inputs + random_inputs(case.vocab, case.max_seq_len, 12, seed=1)  # mixed lengths -> padding
    assert_equivalent(model, batch)


def test_arange_weights_catch_transposes_and_head_splits():
    """Overwrite a 2-head model's weights with distinct values: any wrong transpose or head split shows."""
    model = compiling.compile_rasp_to_model(lib.make_pair_balance(rasp.tokens, "(", ")"), set("()ab"), 5,
                                            compiler_bos=BOS)
    assert model.model_config.num_heads == 2
    counter = [0]

    def fill(a):
        n = a.size
        vals = np.sin(np.arange(counter[0], counter[0] + n, dtype=np.float64)) * 0.3
        counter[0] += n
        return vals.reshape(a.shape)

    model.params = {mod: {k: fill(v) for k, v in d.items()} for mod, d in model.params.items()}
    tm = to_torch(model)
    ids = tm.encode([list("(()a"), list("))"), list("a(b)(")])
    _, cache = tm.run_with_cache(ids)
    hk_out = model.forward(model.params, jnp.asarray(ids.numpy()))
    for i in range(model.model_config.num_layers):
        np.testing.assert_allclose(cache[f"blocks.{i}.hook_resid_post"].detach().numpy(),
                                   np.asarray(hk_out.residuals[2 * i + 1]), rtol=1e-10, atol=1e-10)
    # Merging the two heads into one (the earlier attempt's bug) gives a different function.
    head0, head1 = tm.blocks[1].attn.heads
    with torch.no_grad():
        merged = to_torch(model)
        m0 = merged.blocks[1].attn.heads[0]
        for n in ("W_Q", "W_K", "W_V"):
            getattr(m0, n).add_(getattr(head1, n))
        merged.blocks[1].attn.heads[1].W_O.zero_()
    assert not torch.allclose(merged(ids), tm(ids))


def test_gradients_reach_every_parameter():
    model = compiling.compile_rasp_to_model(lib.make_frac_prevs(rasp.tokens == "a"), {"a", "b"}, 5)
    tm = to_torch(model)
    with torch.no_grad():  # move off the exact construction so every ReLU and softmax has slope
        for p in tm.parameters():
            p.add_(0.05 * torch.randn_like(p, generator=torch.Generator().manual_seed(0)))
    ids = tm.encode([list("abab"), list("ba")])
    loss = tm.readout(tm(ids)).pow(2).sum()
    loss.backward()
    names = [n for n, p in tm.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not names, names
    assert "unembed" not in dict(tm.named_parameters()) and "unembed" in dict(tm.named_buffers())


def test_encode_pads_and_rejects_bad_input():
    model = compiling.compile_rasp_to_model(lib.make_length(), {"a", "b"}, 4, compiler_bos=BOS)
    tm = to_torch(model)
    ids = tm.encode([["a"], ["a", "b", "b"]])
    assert ids.tolist()[0] == [tm.bos_id, model.input_encoder.encoding_map["a"], tm.pad_id, tm.pad_id]
    with pytest.raises(ValueError, match="vocabulary"):
        tm.encode([["z"]])
    with pytest.raises(ValueError, match="exceeds"):
        tm.encode([["a"] * 5])


def test_padding_does_not_change_real_positions():
    model = compiling.compile_rasp_to_model(lib.make_reverse(rasp.tokens), {"a", "b"}, 6, compiler_bos=BOS)
    tm = to_torch(model)
    alone = tm(tm.encode([list("ab")]))
    padded = tm(tm.encode([list("ab"), list("abbab")]))[:1, :3]
    torch.testing.assert_close(alone, padded, rtol=0, atol=1e-12)


def test_layer_norm_config_rejected():
    model = compiling.compile_rasp_to_model(lib.make_length(), {"a"}, 2)
    model.model_config.layer_norm = True
    with pytest.raises(NotImplementedError):
        to_torch(model)


def test_component_groups_and_labels():
    model = compiling.compile_rasp_to_model(lib.make_shuffle_dyck2(), set("(){}"), 4)
    tm = to_torch(model)
    groups = tm.component_params()
    names = dict(tm.named_parameters())
    assert all(n in names for g in groups.values() for n in g)
    assert sorted(n for g in groups.values() for n in g) == sorted(names)
    assert len([g for g in groups if ".H" in g]) == model.model_config.num_layers * model.model_config.num_heads
    labels = tm.component_labels()
    assert any(lbl.startswith("opens_") for v in labels.values() for lbl in v)


def test_float32_dtype():
    model = compiling.compile_rasp_to_model(lib.make_hist(), {"a", "b"}, 4, compiler_bos=BOS)
    tm = to_torch(model, dtype=torch.float32)
    assert tm.token_embed.dtype == torch.float32
    assert tm.decode(tm.encode([list("aab")])) == [model.apply([BOS, *"aab"]).decoded]
