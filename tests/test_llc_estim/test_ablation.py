"""Weight-edit ablations work on any module, given boolean masks."""

import pytest
import torch
from torch import nn

from llc_estim.ablation import ablate, keep_masks


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()


def test_zero_ablation_edits_a_copy_and_only_the_masked_entries():
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mask = torch.zeros(4, 3, dtype=torch.bool)
    mask[1] = True
    new, removed = ablate(model, {"0.weight": mask})
    after = dict(new.named_parameters())
    assert (after["0.weight"][1] == 0).all() and torch.equal(after["0.weight"][~mask], before["0.weight"][~mask])
    assert all(torch.equal(after[n], p) for n, p in before.items() if n != "0.weight")
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert torch.equal(keep_masks(removed)["0.weight"], ~mask)


def test_mean_ablation_folds_the_mean_change_into_the_bias():
    model = _model()
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    weight = torch.ones(5, 7)
    weight[:, -2:] = 0  # e.g. padding
    mask = {"2.weight": torch.zeros(2, 4, dtype=torch.bool)}
    mask["2.weight"][:, 0] = True  # hidden unit 0's output
    new, _ = ablate(model, mask, "mean", activation=lambda m: m(x), weight=weight, bias="2.bias")
    w = weight[..., None].double()
    torch.testing.assert_close(((new(x) - model(x)) * w).sum((0, 1)), torch.zeros(2, dtype=torch.float64))


def test_mean_ablation_needs_its_arguments_and_modes_are_checked():
    with pytest.raises(ValueError, match="mean-ablation"):
        ablate(_model(), {}, "mean")
    with pytest.raises(ValueError, match="mode"):
        ablate(_model(), {}, "resample")
