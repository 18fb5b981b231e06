"""The compiled teacher problem: the one place that turns a program into (torch model, data, loss).

A compiled model's LLC is measured under the *teacher loss* (DESIGN.md, research protocol 1): the mean, over the
real (non-BOS, non-pad) positions of `n` generated sequences, of the squared distance between the model's readout
and the compiled model's own readout. At the compiled weights it is exactly zero with zero gradient.

Generated sequences repeat (a vocabulary of 3 and length 6 has only 1092 distinct inputs), so the data set keeps
each distinct sequence once with its multiplicity as a weight. The weighted loss equals the plain mean over all
`n` draws exactly, while a full-batch step costs as much as the distinct sequences. `TeacherData.num_draws` is `n`,
which the estimator uses for its default nbeta = n / log n.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Optional

import torch
from torch.utils.data import Dataset

from datasets import generators
from rasp_models.base import ProgramSpec, Sharpness
from tracr.haiku_to_pytorch import CompiledTransformer, to_torch


class TeacherData(Dataset):
    """Distinct sequences with multiplicities: items are (ids [T], target [T, n_out], mask [T], weight []).

    Attributes:
        tensors: (ids [U, T], target [U, T, n_out], mask [U, T], weight [U]), U distinct sequences.
        num_draws: n, the number of generated sequences the weights count (sum of the weights).
    """

    def __init__(self, ids: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor):
        if not (len(ids) == len(target) == len(mask) == len(weight)):
            raise ValueError("ids, target, mask and weight need the same length")
        self.tensors = (ids, target, mask, weight)
        self.num_draws = int(round(float(weight.sum())))

    def __len__(self) -> int:
        return len(self.tensors[0])

    def __getitem__(self, i):
        return tuple(t[i] for t in self.tensors)


def teacher_loss(model, batch) -> torch.Tensor:
    """Weighted mean over real positions of |readout(model) - teacher readout|^2 (zero at the compiled weights).

    `batch` is (ids, target, mask) or (ids, target, mask, weight); weights count repeated sequences.
    """
    ids, target, mask = batch[:3]
    diff = ((model.readout(model(ids)) - target) ** 2).sum(-1)  # [B, T]
    weight = mask.to(diff.dtype)
    if len(batch) > 3:
        weight = weight * batch[3].to(diff.dtype)[:, None]
    return (diff * weight).sum() / weight.sum()


@dataclasses.dataclass
class TeacherProblem:
    """A compiled program as an LLC problem.

    Attributes:
        spec: the program.
        model: the converted compiled model (its parameters are w*).
        data: the teacher data (distinct sequences with weights, or one item per draw when not deduplicated).
        loss_fn: `teacher_loss`.
        sequences: the distinct token lists, in data order.
        n: number of generated sequences.
        seed: generator seed.
        sharpness: the compiler's sharpness knobs the model was compiled with.
    """

    spec: ProgramSpec
    model: CompiledTransformer
    data: TeacherData
    loss_fn: object
    sequences: list
    n: int
    seed: int
    sharpness: Sharpness

    @property
    def nbeta(self) -> float:
        """n / log n for the n generated sequences."""
        return self.n / math.log(self.n)

    def for_model(self, model: CompiledTransformer) -> "TeacherProblem":
        """The same sequences and weights with `model`'s own readout as the target (e.g. an ablated model)."""
        ids, _, mask, weight = self.data.tensors
        with torch.no_grad():
            target = model.readout(model(ids))
        return dataclasses.replace(self, model=model, data=TeacherData(ids, target, mask, weight))

    @torch.no_grad()
    def accuracy(self, model: Optional[torch.nn.Module] = None) -> float:
        """Share of real positions (weighted by multiplicity) where `model` decodes like the compiled model.

        Categorical outputs compare the argmax where the compiled output is a value, and where it is None (an
        all-zero readout) require the model's largest entry to stay below 1/2 (it still decodes to None);
        numerical ones count a position correct within 1e-2 (half the smallest gap between the numerical values
        of the registered programs is larger).
        """
        model = self.model if model is None else model
        ids, target, mask, weight = self.data.tensors
        out = model.readout(model(ids))
        if self.model.categorical_output:
            defined = target.max(-1).values > 0.5
            ok = torch.where(defined, out.argmax(-1) == target.argmax(-1), out.max(-1).values < 0.5)
        else:
            ok = (out[..., 0] - target[..., 0]).abs() < 1e-2
        w = mask.to(out.dtype) * weight.to(out.dtype)[:, None]
        return float((ok.to(out.dtype) * w).sum() / w.sum())


def teacher_problem(spec: ProgramSpec, n: int, seed: int = 1234, dtype: torch.dtype = torch.float64,
                    sharpness: Sharpness = Sharpness(), dedup: bool = True,
                    device: Optional[torch.device] = None) -> TeacherProblem:
    """Compiles `spec` at `sharpness`, converts it, draws `n` sequences with `seed`, and builds the teacher data.

    Args:
        dedup: keep each distinct sequence once, weighted by its count (same loss, cheaper); False keeps one item
            per draw (weights 1), in draw order.

    Raises:
        ValueError: n < 2 (nbeta = n / log n needs n >= 2).
    """
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    model = to_torch(spec.compile(sharpness), dtype=dtype, device=device)
    seqs = generators.generate(spec, n, seed)
    if dedup:
        counts = collections.Counter(tuple(s) for s in seqs)
        seqs = [list(k) for k in counts]
        weight = torch.tensor([counts[tuple(s)] for s in seqs], dtype=dtype)
    else:
        weight = torch.ones(len(seqs), dtype=dtype)
    ids = model.encode(seqs)
    with torch.no_grad():
        target = model.readout(model(ids))
    pos = torch.arange(ids.shape[1], device=ids.device)[None]
    mask = (ids != model.pad_id) & (pos > 0)
    data = TeacherData(ids, target, mask, weight.to(ids.device))
    return TeacherProblem(spec, model, data, teacher_loss, seqs, n, seed, sharpness)
