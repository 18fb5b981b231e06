"""Torch datasets built on a compiled model's encoding, with teacher targets for the LLC."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset


def teacher_dataset(tm, seqs: list[list]) -> TensorDataset:
    """(ids [n, T], teacher readout [n, T, n_out], mask [n, T]) for a converted compiled model `tm`.

    The mask marks real positions (not BOS, not padding). The teacher readout is the compiled model's own output,
    so at the compiled weights the teacher loss is exactly zero.
    """
    ids = tm.encode(seqs)
    with torch.no_grad():
        target = tm.readout(tm(ids))
    pos = torch.arange(ids.shape[1], device=ids.device)[None]
    mask = (ids != tm.pad_id) & (pos > 0)
    return TensorDataset(ids, target, mask)
