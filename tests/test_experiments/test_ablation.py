"""Ablations are weight edits with the documented effects."""

import pytest
import torch

from datasets import generators
from datasets.dataloaders import teacher_dataset
from llc_estim import SGLDConfig, estimate_llc
from llc_estim.ablation import ablate, components, keep_masks
from llc_estim.experiments.ablations import accuracy
from llc_estim.experiments.teacher import teacher_loss
from rasp_models import registry
from rasp_models.base import ProgramSpec
from tracr.compiler import lib
from tracr.haiku_to_pytorch import to_torch
from tracr.rasp import rasp


@pytest.fixture(scope="module")
def fractok():
    spec = registry.get("fractok")
    return spec, to_torch(spec.compile()), generators.generate(spec, 64, seed=0)


def test_ablation_changes_exactly_the_component_weights(fractok):
    spec, tm, seqs = fractok
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
    spec, tm, seqs = fractok
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
    spec, tm, seqs = fractok
    for comp in components(tm):
        if mode == "mean" and comp.kind == "direction":
            continue
        new, removed = ablate(tm, comp, mode, tm.encode(seqs))
        data = teacher_dataset(new, seqs)
        loss = teacher_loss(new, data.tensors)
        grads = torch.autograd.grad(loss, list(new.parameters()), allow_unused=True)
        assert float(loss) == 0.0
        assert all(g is None or float(g.abs().max()) == 0.0 for g in grads)


def test_removed_entries_get_no_noise(fractok):
    spec, tm, seqs = fractok
    (head,) = [c for c in components(tm) if c.kind == "head"]
    new, removed = ablate(tm, head, "zero")
    data = teacher_dataset(new, seqs)
    res = estimate_llc(new, data, teacher_loss, SGLDConfig(step_size=1e-6, num_draws=5, num_chains=2,
                                                           param_masks=keep_masks(new, removed), progress=False))
    assert res.num_sampled_params == sum(p.numel() for p in tm.parameters()) - head.num_params
