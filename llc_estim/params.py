"""A flat view of the sampled parameters, and the full-data loss as a function of it.

The sampler, the curvature code and the preconditioners all work on one flat vector of the sampled parameter
entries (P of them; a chain axis in front for many chains). `FlatParams` maps between that vector and the model's
named parameters, keeps everything else frozen at w*, and evaluates `loss_fn` at substituted parameters with
`torch.func.functional_call`, so the caller's model is never modified.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

LossFn = Callable[[Any, Any], torch.Tensor]


class FunctionalModel:
    """Calls `module` with substituted parameters; other attributes (e.g. a fixed `readout`) pass through.

    Only calls see the substituted parameters: reading a parameter as an attribute would give w*, so that is
    refused (use a real copy of the module for code that reads weights, as the draw metric does).
    """

    def __init__(self, module: torch.nn.Module, params: dict):
        self._module, self._params = module, params

    def __call__(self, *args, **kwargs):
        return torch.func.functional_call(self._module, self._params, args, kwargs)

    def __getattr__(self, name: str):
        if any(k == name or k.startswith(name + ".") for k in self._params):
            raise AttributeError(f"{name!r} holds sampled parameters; a FunctionalModel only substitutes them in calls")
        return getattr(self._module, name)


def select_params(model: torch.nn.Module, param_filter) -> list[str]:
    """Names of the sampled parameters: all, those a predicate accepts, or an explicit list of names.

    Raises:
        TypeError: `param_filter` is a string (a list of names was probably meant) or of another wrong type.
        ValueError: unknown names, or nothing selected.
    """
    names = [n for n, _ in model.named_parameters()]
    if param_filter is None:
        chosen = names
    elif isinstance(param_filter, (str, bytes)):
        raise TypeError(f"param_filter must be a predicate or a list of parameter names, not the string "
                        f"{param_filter!r}; did you mean [{param_filter!r}]?")
    elif callable(param_filter):
        chosen = [n for n in names if param_filter(n)]
    else:
        try:
            wanted = set(param_filter)
        except TypeError as err:
            raise TypeError(f"param_filter must be a predicate or a list of names, got {param_filter!r}") from err
        unknown = sorted(wanted - set(names))
        if unknown:
            raise ValueError(f"param_filter names unknown parameters {unknown}; the model has {names}")
        chosen = [n for n in names if n in wanted]
    if not chosen:
        raise ValueError("param_filter selects no parameters")
    return chosen


def materialise(data: Dataset, collate_fn: Optional[Callable] = None):
    """The whole data set as one collated batch (a pytree of tensors with leading dimension len(data)).

    A data set whose items are the rows of its `tensors` (a `TensorDataset`, or any data set with a `tensors`
    tuple whose items are `tuple(t[i] for t in tensors)`) is returned as those tensors, exactly what
    `default_collate` would build, without collating item by item.
    """
    if len(data) == 0:
        raise ValueError("the data set is empty")
    if collate_fn is None and _rows_of_tensors(data):
        return [t.clone() for t in data.tensors]
    return (collate_fn or default_collate)([data[i] for i in range(len(data))])


def _rows_of_tensors(data) -> bool:
    """Whether `data[i] == tuple(t[i] for t in data.tensors)` (checked on the first and last items)."""
    tensors = getattr(data, "tensors", None)
    if not isinstance(tensors, (tuple, list)) or not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        return False
    if any(len(t) != len(data) for t in tensors):
        return False
    for i in {0, len(data) - 1}:
        item = data[i]
        if not isinstance(item, tuple) or len(item) != len(tensors):
            return False
        if not all(isinstance(a, torch.Tensor) and a.dtype == t.dtype and a.shape == t.shape[1:] and torch.equal(a, t[i])
                   for a, t in zip(item, tensors)):
            return False
    return True


def num_examples(data: Dataset) -> int:
    """n for nbeta = n / log n: `data.num_draws` when the data set weights repeated examples, else len(data)."""
    n = getattr(data, "num_draws", None)
    return int(n) if n is not None else len(data)


def take(batch, idx: torch.Tensor):
    """Rows `idx` of every tensor in a collated batch."""
    return torch.utils._pytree.tree_map(lambda t: t[idx] if isinstance(t, torch.Tensor) else t, batch)


def to_device(batch, device):
    return torch.utils._pytree.tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, batch)


class FlatParams:
    """The sampled entries of a model's parameters as one flat vector.

    Attributes:
        names: sampled parameter names, in model order.
        w_star: [P] their values at w*.
        mask: [P] 0/1 float mask of entries that move (None: all), from `param_masks`.
        num_sampled: number of entries that move.
    """

    def __init__(self, model: torch.nn.Module, param_filter=None, param_masks=None):
        self.model = model
        self.names = select_params(model, param_filter)
        params = {k: v.detach() for k, v in model.named_parameters()}
        self.frozen = {k: v for k, v in params.items() if k not in self.names}
        self.shapes = [(k, params[k].shape) for k in self.names]
        sizes = [params[k].numel() for k in self.names]
        self.sizes = sizes
        self.offsets = np.cumsum([0] + sizes).tolist()
        self.w_star = torch.cat([params[k].reshape(-1) for k in self.names])
        self.dtype, self.device = self.w_star.dtype, self.w_star.device
        self.mask = _flat_mask(param_masks, self.names, params, self.device, self.dtype)
        self.num_sampled = int(self.mask.sum()) if self.mask is not None else self.w_star.numel()
        if self.num_sampled == 0:
            raise ValueError("param_masks leave no parameter to sample")

    @property
    def size(self) -> int:
        return self.w_star.numel()

    def unflatten(self, flat: torch.Tensor) -> dict:
        """[..., P] -> {name: [..., *shape]} views."""
        lead = flat.shape[:-1]
        # one split (its backward is a single concatenation) rather than a slice per parameter (whose backward
        # zero-fills and adds a [..., P] tensor per parameter)
        parts = torch.split(flat, self.sizes, dim=-1)
        return {k: part.reshape(*lead, *shape) for part, (k, shape) in zip(parts, self.shapes)}

    def model_at(self, flat: torch.Tensor) -> FunctionalModel:
        """The model with the sampled parameters replaced by `flat` [P]."""
        return FunctionalModel(self.model, {**self.frozen, **self.unflatten(flat)})

    def loss(self, loss_fn: LossFn, flat: torch.Tensor, batch) -> torch.Tensor:
        """`loss_fn` at `flat` [P] on `batch`, checked to be a scalar."""
        value = loss_fn(self.model_at(flat), batch)
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(f"loss_fn must return a scalar tensor (the mean loss), got {shape}")
        return value.reshape(())

    def full_loss(self, loss_fn: LossFn, flat: torch.Tensor, full_batch, n: int, chunk: Optional[int]) -> torch.Tensor:
        """L_n at `flat` over all examples of `full_batch`, in chunks weighted by their size (differentiable)."""
        chunk = chunk or n
        if chunk >= n:
            return self.loss(loss_fn, flat, full_batch)
        total = 0.0
        for start in range(0, n, chunk):
            idx = torch.arange(start, min(start + chunk, n), device=self.device)
            total = total + self.loss(loss_fn, flat, take(full_batch, idx)) * len(idx)
        return total / n


def _flat_mask(masks, names, params, device, dtype):
    """The flat [P] 0/1 mask of sampled entries, or None when every entry is sampled."""
    if not masks:
        return None
    unknown = sorted(set(masks) - set(names))
    if unknown:
        raise ValueError(f"param_masks name parameters that are not sampled: {unknown}")
    parts = []
    for k in names:
        m = masks.get(k)
        if m is None:
            parts.append(torch.ones(params[k].numel(), dtype=dtype, device=device))
        else:
            m = torch.as_tensor(m)
            if tuple(m.shape) != tuple(params[k].shape):
                raise ValueError(f"param_masks[{k!r}] has shape {tuple(m.shape)}, expected {tuple(params[k].shape)}")
            parts.append(m.reshape(-1).to(device=device, dtype=dtype))
    return torch.cat(parts)
