"""The teacher loss of a compiled model (research protocol 1)."""

import torch


def teacher_loss(model, batch) -> torch.Tensor:
    """Mean over real positions of the squared distance between the model's readout and the compiled readout.

    Zero, with zero gradient, at the compiled weights.
    """
    ids, target, mask = batch
    diff = ((model.readout(model(ids)) - target) ** 2).sum(-1)  # [B, T]
    mask = mask.to(diff.dtype)
    return (diff * mask).sum() / mask.sum()
