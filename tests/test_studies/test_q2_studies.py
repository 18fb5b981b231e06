"""The question-2 studies (grokking over seeds, the training sweep) at a tiny scale write what they promise."""

import dataclasses
import json
import re

import pytest

from studies import grokking, training


def _check_readme(out):
    text = (out / "README.md").read_text()
    config = json.loads((out / "config.json").read_text())
    assert not re.search(r"\bNone\b|\bnan\b", text), "a bare None or nan in the README"
    assert "took" in text and "minutes" in text
    if config["environment"]["dirty"]:
        assert "Warning" in text and "dirty" in text
    assert {"git_commit", "dirty", "torch"} <= set(config["environment"])
    return text, config


def test_grokking_study_writes_every_seed_and_the_lead_lag(tmp_path):
    smoke = grokking.PRESETS["smoke"]
    cfg = dataclasses.replace(
        smoke, settings=(dataclasses.replace(smoke.settings[0], steps=80, seeds=(0, 1), n_log=4, n_even=4),),
        auto_settings=("reference",), draws_probe=(10,))
    m = grokking.run(cfg, tmp_path)
    assert set(m["per_seed"]) == {"reference/0", "reference/1"}
    for f in ("seeds_reference.png", "lead_lag.png", "curves.json", "metrics.json", "diagnostics.png"):
        assert (tmp_path / f).stat().st_size > 0
    traces = json.loads((tmp_path / "traces.json").read_text())  # first seed: local first/peak/last, published, auto
    kinds = [t["title"].split(": ")[1].split(" (")[0] for t in traces]
    assert kinds[0].startswith("local, first") and kinds[-2:] == ["published, peak", "auto_llc, final"]
    assert "peak" in " ".join(kinds[:-2]) and "last" in " ".join(kinds[:-2])
    assert all(t["trace"]["burnin"] > 0 and len(t["trace"]["loss"]) == cfg.local.num_chains for t in traces[:-2])
    text, config = _check_readme(tmp_path)
    assert "Lead-lag" in text and "Holm" in text and "event timing" in text
    curves = json.loads((tmp_path / "curves.json").read_text())
    for c in curves.values():  # every LLC carries its verdict
        assert len(c["local"]["trustworthy"]) == len(c["steps"]) == len(c["local"]["warnings"])
    assert m["validity"]["auto"] and "valid" in m["validity"]["auto"][0]
    assert config["settings"][0]["seeds"] == [0, 1]


@pytest.fixture(scope="module")
def tiny_training(tmp_path_factory):
    smoke = training.PRESETS["smoke"]
    cfg = dataclasses.replace(smoke, sweep_sizes=(8,), sweep_seeds=(0,), sweep_pool=(8, 4, 16),
                              sweep_train=dataclasses.replace(smoke.sweep_train, steps=30, checkpoints=(30,)),
                              curves=(dataclasses.replace(smoke.curves[0],
                                                          train=dataclasses.replace(smoke.curves[0].train, steps=20,
                                                                                    checkpoints=(10, 20))),),
                              compare=dataclasses.replace(smoke.compare, n=8, max_steps=200, polish_iter=10))
    out = tmp_path_factory.mktemp("training")
    return training.run(cfg, out), out


def test_training_study_writes_the_sweep_curves_and_comparison(tiny_training):
    m, out = tiny_training
    assert len(m["sweep"]["runs"]) == 1
    for f in ("sweep.png", "fractok/training_llc.png", "fractok/curves.json", "fractok/final_model.pt",
              "diagnostics.png"):
        assert (out / f).stat().st_size > 0
    titles = [t["title"] for t in json.loads((out / "traces.json").read_text())]
    assert any("sweep" in t for t in titles) and any("curve fractok: SGLD" in t for t in titles)
    text, _ = _check_readme(out)
    for row in m["sweep"]["runs"]:  # every LLC is valid or says why not
        assert row["llc_valid"] or row["llc_reasons"]
        assert {"test_loss", "train_loss", "weight_norm", "hessian_trace", "grad_norm"} <= set(row)
    assert set(m["sweep"]["statistics"]["all_runs"]) == set(training.PREDICTORS)
    cmp_ = m["compare"]
    assert cmp_ and {"compiled", "trained"} <= set(cmp_) and "labels" in cmp_["loss"]
    assert "Compiled vs trained" in text


def test_final_model_is_loadable_by_the_ablation_study(tiny_training):
    import torch

    from llc_estim import SGLDConfig
    from llc_training.model import ModelConfig, TrainableTransformer

    _, out = tiny_training
    ck = torch.load(out / "fractok" / "final_model.pt", weights_only=False)
    model = TrainableTransformer(ModelConfig(**ck["model_config"])).double()
    model.load_state_dict(ck["state"])
    SGLDConfig(**{**ck["sgld"], "step_size": ck["step_size"]})  # the ablation study rebuilds its sampler so
    assert ck["program"] == "fractok" and isinstance(ck["learned"], bool)
