"""Ablations are weight edits with the documented effects, on compiled and trained models alike."""

import pytest
import torch

from datasets import generators
from datasets.teacher import teacher_loss, teacher_problem
from llc_estim import SGLDConfig, estimate_llc
from llc_estim.ablation import keep_masks
from llc_training.model import ModelConfig, TrainableTransformer
from rasp_models import registry
from rasp_models.base import ProgramSpec
from studies.ablate import ablate_component as ablate
from studies.ablation_jobs import accuracy
from tracr.compiler import lib
from tracr.haiku_to_pytorch import to_torch
from tracr.rasp import rasp
from tracr.torch_components import components, structural_components


@pytest.fixture(scope="module")
def fractok():
    prob = teacher_problem(registry.get("fractok"), 64, seed=0, dedup=False)
    return prob.spec, prob.model, prob.sequences, prob


def test_ablation_changes_exactly_the_component_weights(fractok):
    spec, tm, seqs, _ = fractok
    before = {n: p.detach().clone() for n, p in tm.named_parameters()}
    for comp in components(tm):
        for mode in ("zero", "mean") if comp.kind != "direction" else ("zero",):
            new, removed = ablate(tm, comp, mode, tm.encode(seqs))
            after = dict(new.named_parameters())
            for name, p in before.items():
                changed = after[name].detach() != p
                owned = comp.masks.get(name, torch.zeros_like(p, dtype=torch.bool))
                bias_fold = mode == "mean" and name.endswith(("b_O", "b_out")) and f"blocks.{comp.layer}." in name
                if not bias_fold:
                    assert not (changed & ~owned).any(), (comp.name, mode, name)
                assert (after[name].detach()[owned] == 0).all()
            assert all(torch.equal(p, before[n]) for n, p in tm.named_parameters())  # original untouched


def test_zero_ablating_the_only_head_of_fractok_breaks_it(fractok):
    spec, tm, seqs, _ = fractok
    (head,) = [c for c in components(tm) if c.kind == "head"]
    assert accuracy(tm, spec, seqs) == 1.0
    assert accuracy(ablate(tm, head, "zero")[0], spec, seqs) < 0.5


def test_zero_ablating_an_unused_component_keeps_accuracy():
    """`a + 0 * b`: the head computing b feeds only a zero-weighted term, so removing it changes nothing."""
    def make():
        fa = lib.make_frac_prevs(rasp.tokens == "a")
        fb = lib.make_frac_prevs(rasp.tokens == "b").named("unused_frac")
        return rasp.numerical(rasp.LinearSequenceMap(fa, fb, 1, 0)).named("out")

    spec = ProgramSpec("a_plus_zero_b", "", make, frozenset("abc"), 6,
                       lambda ts: [ts[:i + 1].count("a") / (i + 1) for i in range(len(ts))], numerical=True)
    tm = to_torch(spec.compile())
    seqs = generators.generate(spec, 64, seed=0)
    heads = [c for c in components(tm) if c.kind == "head"]
    unused = [c for c in heads if any(lbl.startswith("unused_frac") for lbl in c.labels)]
    used = [c for c in heads if c not in unused]
    assert len(unused) == 1 and len(used) == 1
    assert accuracy(ablate(tm, unused[0], "zero")[0], spec, seqs) == 1.0
    assert accuracy(ablate(tm, used[0], "zero")[0], spec, seqs) < 0.5


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablated_model_is_a_minimum_of_its_own_teacher_loss(fractok, mode):
    spec, tm, seqs, prob = fractok
    for comp in components(tm):
        if mode == "mean" and comp.kind == "direction":
            continue
        new, removed = ablate(tm, comp, mode, tm.encode(seqs))
        data = prob.for_model(new).data
        loss = teacher_loss(new, data.tensors)
        grads = torch.autograd.grad(loss, list(new.parameters()), allow_unused=True)
        assert float(loss) == 0.0
        assert all(g is None or float(g.abs().max()) == 0.0 for g in grads)


def test_removed_entries_get_no_noise(fractok):
    spec, tm, seqs, prob = fractok
    (head,) = [c for c in components(tm) if c.kind == "head"]
    new, removed = ablate(tm, head, "zero")
    data = prob.for_model(new).data
    res = estimate_llc(new, data, teacher_loss, SGLDConfig(step_size=1e-6, num_draws=5, num_chains=2,
                                                           param_masks=keep_masks(removed), progress=False))
    assert res.num_sampled_params == sum(p.numel() for p in tm.parameters()) - head.num_params


def test_compiled_and_trained_models_share_the_component_layout(fractok):
    """Heads and MLP layers of a trained model of the same architecture own the same parameter entries."""
    spec, tm, seqs, _ = fractok
    trained = TrainableTransformer(ModelConfig.from_compiled(spec.compile()), seed=0).double()
    compiled_parts = {c.name: c for c in structural_components(tm)}
    trained_parts = {c.name: c for c in structural_components(trained)}
    assert compiled_parts.keys() == trained_parts.keys()
    for name, comp in compiled_parts.items():
        assert {n: m.shape for n, m in comp.masks.items()} == {n: m.shape for n, m in trained_parts[name].masks.items()}
    used = {c.name for c in components(tm) if c.kind in ("head", "mlp")}
    assert used <= compiled_parts.keys()


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_trained_models_are_ablated_by_the_same_code(fractok, mode):
    """Zero- and mean-ablation of a trained model's head: owned entries zero, the output bias absorbs the mean."""
    spec, _, seqs, _ = fractok
    model = TrainableTransformer(ModelConfig.from_compiled(spec.compile()), seed=0).double()
    ids = to_torch(spec.compile()).encode(seqs)
    head = next(c for c in structural_components(model) if c.kind == "head")
    new, removed = ablate(model, head, mode, ids)
    after = dict(new.named_parameters())
    assert all((after[n][m] == 0).all() for n, m in removed.items())
    bias = after[f"blocks.{head.layer}.attn.b_O"]
    before = dict(model.named_parameters())[f"blocks.{head.layer}.attn.b_O"]
    assert torch.equal(bias, before) == (mode == "zero")
    if mode == "mean":  # the mean attention output over real positions is unchanged by the ablation
        real = (ids != model.pad_id).double()[..., None]
        hook = f"blocks.{head.layer}.hook_attn_out"
        mean_old = (model.run_with_cache(ids)[1][hook] * real).sum((0, 1)) / real.sum()
        mean_new = (new.run_with_cache(ids)[1][hook] * real).sum((0, 1)) / real.sum()
        torch.testing.assert_close(mean_new, mean_old)


def test_stratified_permutation_p_is_never_printed_as_zero():
    """Two programs, each a perfect monotone relation: no permutation of 2,000 beats it, so p = 1/2001, which the
    README must print as such (it printed `p = 0.000`)."""
    from studies.ablation_stats import fmt_rho, stratified_spearman

    x = list(range(8)) * 2
    s = stratified_spearman(x, [2 * v for v in x], ["a"] * 8 + ["b"] * 8, reps=2000)
    assert s["rho"] == pytest.approx(1.0) and s["p_perm"] == pytest.approx(1 / 2001)
    assert "p = 0.0005 (stratified permutation)" in fmt_rho(s)


def test_q3_plain_answer_is_read_from_the_statistics():
    """The one-line answer follows the sign test, the 2-sd count and the stratified interval, in both directions."""
    from studies.ablations_report import _plain

    rows = [{}] * 10
    same = _plain({"p": 0.77}, [], rows, {"rho": -0.06, "ci95": [-0.29, 0.21]})
    assert "no more than removing as many atoms at random" in same and "does not track" in same
    differ = _plain({"p": 0.01}, [{}] * 5, rows, {"rho": 0.6, "ci95": [0.3, 0.8]})
    assert "differently from removing" in differ and "tracks the accuracy lost (rho 0.60" in differ
    assert "differently" in _plain({"p": 0.5}, [{}] * 3, rows, {"rho": 0.1, "ci95": [-0.2, 0.3]})  # 3 of 10 beyond 2 sd
