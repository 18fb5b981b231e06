"""The trainable model and the training loop."""

import dataclasses

import numpy as np
import torch

from datasets import generators
from datasets.dataloaders import labelled_tensors
from llc_estim import SGLDConfig
from llc_training.model import ModAddMLP, ModelConfig, TrainableTransformer
from llc_training.train import TrainConfig, classification_task, llc_curve, sequence_task, train
from rasp_models import registry


def _model(name="palindrome", seed=0):
    spec = registry.get(name)
    compiled = spec.compile()
    return spec, compiled, TrainableTransformer(ModelConfig.from_compiled(compiled), seed=seed).double()


def test_architecture_matches_the_compiled_model():
    spec, compiled, model = _model("peak")
    c = compiled.model_config
    assert len(model.blocks) == c.num_layers and len(model.blocks[0].attn.heads) == c.num_heads
    assert model.blocks[0].attn.key_size == c.key_size and model.blocks[0].mlp.W_in.shape[1] == c.mlp_hidden_size
    assert model.cfg.d_model == len(compiled.residual_labels)
    assert model.cfg.num_outputs == len(compiled.output_encoder.basis)


def test_attention_mixes_positions_never_batch_rows():
    spec, compiled, model = _model()
    seqs = [list("abcab"), list("ccab")]
    ids, _, _ = labelled_tensors(spec, seqs, compiled)
    alone = model(ids)[:1]
    other = ids.clone()
    other[1, 1:3] = ids[1, 1:3].flip(0)  # change only the other row
    torch.testing.assert_close(model(other)[:1], alone, rtol=0, atol=0)
    changed = ids.clone()
    changed[0, 2] = ids[0, 1] if ids[0, 2] != ids[0, 1] else ids[0, 3]
    assert not torch.allclose(model(changed)[0, 1], alone[0, 1])  # another position of the same row matters


def test_padding_does_not_change_real_positions():
    spec, compiled, model = _model()
    ids, _, _ = labelled_tensors(spec, [list("ab"), list("abcab")], compiled)
    short, _, _ = labelled_tensors(spec, [list("ab")], compiled)
    torch.testing.assert_close(model(ids)[:1, :3], model(short), rtol=0, atol=1e-12)


def test_overfits_a_tiny_batch():
    spec, compiled, model = _model()
    data = labelled_tensors(spec, generators.generate(spec, 8, seed=0), compiled)
    task = sequence_task(False)
    hist = train(model, task, data, data, TrainConfig(steps=300, batch_size=8, lr=3e-3, weight_decay=0.0,
                                                      checkpoints=(300,)), progress=False)
    assert hist.train_acc[-1] == 1.0


def test_numerical_task_and_baseline():
    spec, compiled, model = _model("fractok")
    ids, y, m = labelled_tensors(spec, generators.generate(spec, 32, seed=0), compiled)
    task = sequence_task(True)
    assert torch.isfinite(task.loss(model, (ids, y.double(), m)))
    assert 0 <= task.majority_baseline((ids, y, m)) <= 1


def test_checkpoint_round_trip_and_resume_gives_the_same_curve(tmp_path):
    spec, compiled, _ = _model("triplets")
    data = labelled_tensors(spec, generators.generate(spec, 64, seed=0), compiled)
    task = sequence_task(False)
    cfg = TrainConfig(steps=40, batch_size=16, lr=1e-3, weight_decay=0.01, checkpoints=(10, 20, 30, 40))
    full = train(_model("triplets")[2], task, data, data, cfg, progress=False)
    part = train(_model("triplets")[2], task, data, data, dataclasses.replace(cfg, steps=20),
                 checkpoint_dir=tmp_path, progress=False)
    assert part.steps == [10, 20]
    resumed = train(_model("triplets")[2], task, data, data, cfg, checkpoint_dir=tmp_path, resume=True,
                    progress=False)
    assert resumed.steps == full.steps
    np.testing.assert_allclose(resumed.train_loss, full.train_loss, rtol=1e-12)


def test_same_seed_same_curve_and_llc_curve():
    p = 11
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], 1)
    y = (x[:, 0] + x[:, 1]) % p
    data = (x[:80], y[:80])
    task = classification_task()
    cfg = TrainConfig(steps=60, batch_size=32, lr=5e-3, weight_decay=0.0, checkpoints=(20, 40, 60),
                      optimizer="adam")
    runs = [train(ModAddMLP(p, seed=0).double(), task, data, data, cfg, progress=False) for _ in range(2)]
    assert runs[0].train_loss == runs[1].train_loss
    model = ModAddMLP(p, seed=0).double()
    sgld = SGLDConfig(step_size=1e-3, localization=5.0, nbeta=2.0, num_chains=2, num_draws=10, num_burnin=0,
                      batch_size=32, progress=False)
    c1, c2 = (llc_curve(model, task, data, runs[0], sgld, progress=False) for _ in range(2))
    assert c1["llc_mean"] == c2["llc_mean"] and len(c1["llc_mean"]) == 3


def test_llc_curve_records_a_verdict_and_the_gradient_norm_per_checkpoint():
    from llc_training.objectives import WithSquaredNorm, regularised

    p = 7
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], 1)
    data = (x, (x[:, 0] + x[:, 1]) % p)
    task = classification_task()
    hist = train(ModAddMLP(p, 4, 8, seed=0), task, data, data,
                 TrainConfig(steps=40, batch_size=16, lr=5e-3, weight_decay=1e-3, checkpoints=(20, 40),
                             optimizer="adam"), progress=False)
    reg = regularised(task.loss, 1e-3)
    c = llc_curve(WithSquaredNorm(ModAddMLP(p, 4, 8)), task, data, hist,
                  SGLDConfig(step_size=1e-4, localization=100.0, nbeta=50.0, num_chains=2, num_draws=10,
                             num_burnin=5, progress=False),
                  progress=False, loss_fn=reg, dtype=torch.float64, draw_metric_floor=0.05, grad_loss=reg)
    assert len(c["trustworthy"]) == 2 and all(isinstance(w, list) for w in c["warnings"])
    assert all(g > 0 for g in c["grad_norm"]) and all(0 <= a <= 1 for a in c["draw_acc_min"])


def test_mse_onehot_loss_is_zero_at_one_hot_outputs():
    task = sequence_task(False, loss_kind="mse_onehot")
    y = torch.tensor([[0, 1, 2]])
    mask = torch.tensor([[False, True, True]])
    onehot = torch.nn.functional.one_hot(y, 3).double()
    assert float(task.loss(lambda ids: onehot, (y, y, mask))) == 0.0
    assert float(task.loss(lambda ids: onehot * 2, (y, y, mask))) > 0


def test_log_and_even_checkpoints():
    ck = TrainConfig.log_and_even(1000, 5, 4, first=10, extra=(250,))
    assert ck[0] == 10 and ck[-1] == 1000 and 250 in ck and 500 in ck and list(ck) == sorted(set(ck))


def test_sequence_losses_work_under_the_vectorised_sampler():
    from torch.utils.data import TensorDataset

    from llc_estim import estimate_llc

    for name in ("triplets", "fractok"):
        spec, compiled, model = _model(name)
        ids, y, m = labelled_tensors(spec, generators.generate(spec, 32, seed=0), compiled)
        data = TensorDataset(ids, y.double() if spec.numerical else y, m)
        res = estimate_llc(model, data, sequence_task(spec.numerical).loss,
                           SGLDConfig(step_size=1e-6, num_chains=2, num_draws=3, num_burnin=0, progress=False))
        assert np.isfinite(res.llc_mean)
