"""Zero-ablations of the trained models of the training study, by the same code as the compiled models'.

Every head and MLP layer (`tracr.torch_components.structural_components`: trained models have no RASP labels) of
each final model that learned its task; the LLC under the training loss on training data, at the step size the
training study calibrated on that model.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from typing import TYPE_CHECKING

import torch

from datasets import generators
from datasets.dataloaders import labelled_tensors
from llc_estim import SGLDConfig, SGLDDivergenceError, estimate_llc
from llc_estim.ablation import keep_masks
from llc_training.model import ModelConfig, TrainableTransformer
from llc_training.train import sequence_task
from rasp_models import registry
from studies.ablate import ablate_component
from studies.common import results_root
from tracr.torch_components import structural_components

if TYPE_CHECKING:
    from pathlib import Path

    from studies.ablations import AblationConfig


def trained_ablations(cfg: "AblationConfig", out: "Path") -> dict:
    """Zero-ablate every head and MLP of each trained model that learned its task (from the training study)."""
    found = {}
    for path in sorted((results_root() / "training").glob("*/final_model.pt")):
        ck = torch.load(path, weights_only=False)
        if not ck["learned"]:
            found[ck["run"]] = {"skipped": "did not learn its task"}
            continue
        model = TrainableTransformer(ModelConfig(**ck["model_config"])).double()
        model.load_state_dict(ck["state"])
        size = sum(p.numel() for p in model.parameters())
        if cfg.trained_max_params and size > cfg.trained_max_params:
            found[ck["run"]] = {"skipped": f"{size} parameters, above {cfg.trained_max_params} at this scale"}
            continue
        rows = _ablate_trained(ck, model, cfg)
        found[ck["run"]] = {"rows": rows, "step_size": ck["step_size"], "loss": "training loss on training data"}
        with open(out / f"trained_{ck['run']}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        print(f"  trained {ck['run']}: {len(rows)} components ablated", flush=True)
    return found


def _ablate_trained(ck: dict, model: TrainableTransformer, cfg: "AblationConfig") -> list[dict]:
    spec = registry.get(ck["program"])
    tr, va, _ = generators.splits(spec, tuple(ck["sizes"]), seed=ck["seed"])
    train_data = labelled_tensors(spec, tr[: cfg.n], spec.compile())
    val_data = labelled_tensors(spec, va, spec.compile())
    if spec.numerical:
        train_data, val_data = ((i, y.double(), m) for i, y, m in (train_data, val_data))
    task = sequence_task(spec.numerical)
    data = torch.utils.data.TensorDataset(*train_data)
    sg = SGLDConfig(**{**{k: v for k, v in ck["sgld"].items() if k not in ("param_filter", "param_masks")},
                       "step_size": ck["step_size"], "num_chains": cfg.base.num_chains,
                       "num_draws": cfg.base.num_draws, "num_burnin": cfg.base.num_burnin, "progress": False})

    def llc(m, **kw):
        try:
            r = estimate_llc(m, data, task.loss, dataclasses.replace(sg, **kw))
            return r.llc_mean, r.llc_std
        except SGLDDivergenceError:
            return math.nan, math.nan

    base_llc = llc(model)
    acc_intact = task.accuracy(model, val_data)
    rows = []
    for comp in structural_components(model):
        ablated, removed = ablate_component(model, comp, "zero")
        rows.append({"run": ck["run"], "component": comp.name, "acc_intact": acc_intact,
                     "acc_ablated": task.accuracy(ablated, val_data), "llc_intact": base_llc[0],
                     "llc_refined": llc(model, param_filter=list(comp.masks))[0],
                     "llc_ablated": llc(ablated, param_masks=keep_masks(removed))[0]})
    return rows
