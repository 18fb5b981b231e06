"""Vectorised SGLD and the LLC estimator.

All chains run at once: the sampled parameters are stacked along a leading chain axis, and the loss and its
gradient are evaluated with `torch.func` (`functional_call` + `grad_and_value` + `vmap`). One step, per chain:

    w <- w - (eps/2) (nbeta * grad L_batch(w) + gamma (w - w*)) + sqrt(eps) N(0, I)

The estimate is `lambda_hat = nbeta * (mean of post-burn-in minibatch losses - L_n(w*))`, per chain, with
`L_n(w*)` measured on the full data set (in chunks, weighted by chunk size: exact when `loss_fn` is a mean over
examples). The caller's model is never modified.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from tqdm.auto import tqdm

from llc_estim.config import LLCResult, SGLDConfig, SGLDDivergenceError
from llc_estim.diagnostics import summarize

LossFn = Callable[[Any, Any], torch.Tensor]


class FunctionalModel:
    """Calls `module` with substituted parameters; other attributes (e.g. a fixed `readout`) pass through."""

    def __init__(self, module: torch.nn.Module, params: dict):
        self._module, self._params = module, params

    def __call__(self, *args, **kwargs):
        return torch.func.functional_call(self._module, self._params, args, kwargs)

    def __getattr__(self, name: str):
        return getattr(self._module, name)


def select_params(model: torch.nn.Module, param_filter) -> list[str]:
    """Names of the sampled parameters: all, those a predicate accepts, or an explicit list.

    Raises:
        ValueError: unknown names, or nothing selected.
    """
    names = [n for n, _ in model.named_parameters()]
    if param_filter is None:
        chosen = names
    elif callable(param_filter):
        chosen = [n for n in names if param_filter(n)]
    else:
        unknown = sorted(set(param_filter) - set(names))
        if unknown:
            raise ValueError(f"param_filter names unknown parameters {unknown}")
        chosen = [n for n in names if n in set(param_filter)]
    if not chosen:
        raise ValueError("param_filter selects no parameters")
    return chosen


def materialise(data: Dataset, collate_fn: Optional[Callable] = None):
    """The whole data set as one collated batch (a pytree of tensors with leading dimension n)."""
    n = len(data)
    if n == 0:
        raise ValueError("the data set is empty")
    return (collate_fn or default_collate)([data[i] for i in range(n)])


def _take(batch, idx: torch.Tensor):
    return torch.utils._pytree.tree_map(lambda t: t[idx] if isinstance(t, torch.Tensor) else t, batch)


def full_data_loss(model, params: dict, full_batch, n: int, loss_fn: LossFn, chunk: Optional[int]) -> float:
    """L_n at `params` over all n examples, in chunks weighted by their size."""
    chunk = chunk or n
    total = 0.0
    with torch.no_grad():
        for start in range(0, n, chunk):
            idx = torch.arange(start, min(start + chunk, n))
            total += float(loss_fn(FunctionalModel(model, params), _take(full_batch, idx))) * len(idx)
    return total / n


@contextlib.contextmanager
def _threads(num: Optional[int]):
    prev = torch.get_num_threads()
    if num is not None:
        torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


class _BatchStream:
    """Per-chain minibatch indices: each chain walks its own sequence of random permutations."""

    def __init__(self, n: int, batch_size: int, rngs: list[np.random.Generator]):
        self.n, self.b, self.rngs = n, batch_size, rngs
        self.perms = [rng.permutation(n) for rng in rngs]
        self.pos = [0] * len(rngs)

    def next(self) -> torch.Tensor:
        rows = []
        for c, rng in enumerate(self.rngs):
            if self.pos[c] + self.b > self.n:
                self.perms[c], self.pos[c] = rng.permutation(self.n), 0
            rows.append(self.perms[c][self.pos[c]:self.pos[c] + self.b])
            self.pos[c] += self.b
        return torch.as_tensor(np.stack(rows))  # [C, B]


def estimate_llc(model: torch.nn.Module, data: Dataset, loss_fn: LossFn, cfg: SGLDConfig,
                 collate_fn: Optional[Callable] = None) -> LLCResult:
    """Estimates the local learning coefficient of `model` at its current parameters w*.

    Args:
        model: the network; its parameters are w* and are left unchanged.
        data: a torch Dataset of n examples.
        loss_fn: `loss_fn(model, batch) -> scalar mean loss`. It may call the model and its parameter-free methods.
        cfg: the sampler settings.
        collate_fn: how to batch examples (default: torch's default_collate).

    Raises:
        SGLDDivergenceError: a NaN or infinite loss, naming the chain and step.
    """
    with _threads(cfg.num_threads):
        return _run(model, data, loss_fn, cfg, collate_fn)


def _run(model, data, loss_fn, cfg: SGLDConfig, collate_fn) -> LLCResult:
    full = materialise(data, collate_fn)
    n = len(data)
    nbeta = cfg.resolved_nbeta(n)
    names = select_params(model, cfg.param_filter)
    all_params = {k: v.detach() for k, v in model.named_parameters()}
    w_star = {k: all_params[k].clone() for k in names}
    frozen = {k: v for k, v in all_params.items() if k not in w_star}
    init_loss = full_data_loss(model, all_params, full, n, loss_fn, cfg.batch_size)

    def loss_of(params, batch):
        return loss_fn(FunctionalModel(model, {**frozen, **params}), batch)

    C, eps, gamma = cfg.num_chains, cfg.step_size, cfg.localization
    full_batch = cfg.batch_size is None or cfg.batch_size >= n
    step = torch.func.vmap(torch.func.grad_and_value(loss_of), in_dims=(0, None if full_batch else 0))
    children = np.random.SeedSequence(cfg.seed).spawn(C)
    noise_gens = [torch.Generator().manual_seed(int(s.generate_state(1, np.uint64)[0] >> np.uint64(1)))
                  for s in children]
    stream = None if full_batch else _BatchStream(n, cfg.batch_size, [np.random.default_rng(s) for s in children])
    w = {k: v.unsqueeze(0).repeat(C, *([1] * v.dim())).clone() for k, v in w_star.items()}
    shapes = [(k, v.shape, v.numel()) for k, v in w_star.items()]
    num_params = sum(s[2] for s in shapes)
    dtype = next(iter(w_star.values())).dtype

    total = cfg.num_burnin + cfg.num_draws
    losses = np.zeros((C, total))
    acceptance = []
    bar = tqdm(range(total), disable=not (cfg.progress and sys.stderr.isatty()), desc="SGLD", leave=False)
    for t in bar:
        batch = full if full_batch else _take(full, stream.next())
        grads, loss = step(w, batch)
        _check_finite(loss, t, cfg)
        losses[:, t] = loss.detach().double().numpy()
        drift = {k: nbeta * grads[k] + gamma * (w[k] - w_star[k]) for k in w}
        flat = torch.stack([torch.randn(num_params, generator=g, dtype=dtype) for g in noise_gens])  # [C, P]
        noise = dict(zip(w, torch.split(flat, [s[2] for s in shapes], dim=1)))
        new = {k: w[k] - 0.5 * eps * drift[k] + eps ** 0.5 * noise[k].view_as(w[k]) for k in w}
        if cfg.mala_every and t % cfg.mala_every == 0:
            grads_new, loss_new = step(new, batch)
            acceptance.append(_mala_acceptance(w, new, drift, grads_new, loss, loss_new, w_star, nbeta, gamma, eps))
        w = new
    bar.close()

    trace, burn = losses[:, cfg.num_burnin:], losses[:, :cfg.num_burnin]
    llc = nbeta * (trace.mean(axis=1) - init_loss)
    acc = np.array(acceptance).T if acceptance else np.zeros((C, 0))
    diag = summarize(trace, init_loss, acc)
    return LLCResult(llc_per_chain=llc, loss_trace=trace, burnin_trace=burn, init_loss=init_loss, nbeta=nbeta,
                     n=n, num_sampled_params=num_params, config=cfg, diagnostics=diag, param_names=names)


def _check_finite(loss: torch.Tensor, t: int, cfg: SGLDConfig) -> None:
    bad = (~torch.isfinite(loss)).nonzero().flatten().tolist()
    if bad:
        raise SGLDDivergenceError(
            f"SGLD diverged: loss is {float(loss[bad[0]])} in chain {bad[0]} at step {t} "
            f"(step_size={cfg.step_size}, localization={cfg.localization}, nbeta={cfg.nbeta}). "
            "Try a smaller step_size or a larger localization.")


def _mala_acceptance(w, new, drift, grads_new, loss, loss_new, w_star, nbeta, gamma, eps) -> np.ndarray:
    """Metropolis-adjusted acceptance probability of each chain's step, both points on the same minibatch."""
    def chain_sum(d):
        return sum(v.flatten(1).sum(1) for v in d.values())

    drift_new = {k: nbeta * grads_new[k] + gamma * (new[k] - w_star[k]) for k in w}
    u_old = nbeta * loss + 0.5 * gamma * chain_sum({k: (w[k] - w_star[k]) ** 2 for k in w})
    u_new = nbeta * loss_new + 0.5 * gamma * chain_sum({k: (new[k] - w_star[k]) ** 2 for k in w})
    log_q_fwd = -chain_sum({k: (new[k] - w[k] + 0.5 * eps * drift[k]) ** 2 for k in w}) / (2 * eps)
    log_q_bwd = -chain_sum({k: (w[k] - new[k] + 0.5 * eps * drift_new[k]) ** 2 for k in w}) / (2 * eps)
    log_alpha = (u_old - u_new + log_q_bwd - log_q_fwd).detach().double()
    return torch.clamp(torch.exp(torch.clamp(log_alpha, max=0.0)), max=1.0).numpy()
