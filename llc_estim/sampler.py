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


def batch_indices(n: int, batch_size: int, steps: int, rng: np.random.Generator) -> np.ndarray:
    """[steps, batch_size] indices: consecutive minibatches of fresh random permutations (remainders dropped)."""
    per_epoch = max(n // batch_size, 1)
    epochs = -(-steps // per_epoch)
    perms = np.stack([rng.permutation(n)[: per_epoch * batch_size] for _ in range(epochs)])
    return perms.reshape(epochs * per_epoch, batch_size)[:steps]


def chain_seeds(seed: int, num_chains: int) -> list[np.random.SeedSequence]:
    """One child SeedSequence per chain (its batch order and its noise both derive from it)."""
    return np.random.SeedSequence(seed).spawn(num_chains)


def noise_generator(child: np.random.SeedSequence, device="cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(child.generate_state(1, np.uint64)[0] >> np.uint64(1)))


NOISE_BLOCK = 64  # steps of noise drawn at once per chain


def noise_block(gens: list[torch.Generator], steps: int, num_params: int, dtype) -> torch.Tensor:
    """[steps, C, P] standard normal noise, each chain from its own generator."""
    return torch.stack([torch.randn(steps, num_params, generator=g, dtype=dtype, device=g.device) for g in gens],
                       dim=1)


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
    frozen = {k: v for k, v in all_params.items() if k not in names}
    device = all_params[names[0]].device
    full = torch.utils._pytree.tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, full)
    init_loss = full_data_loss(model, all_params, full, n, loss_fn, cfg.batch_size)
    shapes = [(k, all_params[k].shape, all_params[k].numel()) for k in names]
    offsets = np.cumsum([0] + [s[2] for s in shapes])
    P, C, eps, gamma = int(offsets[-1]), cfg.num_chains, cfg.step_size, cfg.localization
    dtype = all_params[names[0]].dtype
    # All chains' sampled parameters live in one flat [C, P] tensor; the model sees [C, *shape] views of it.
    w_star = torch.cat([all_params[k].reshape(-1) for k in names])  # [P]
    W = w_star.unsqueeze(0).repeat(C, 1).clone()
    mask = _flat_mask(cfg.param_masks, names, all_params, device, dtype)  # [P] or None
    if mask is not None:
        P_sampled = int(mask.sum())
        if P_sampled == 0:
            raise ValueError("param_masks leave no parameter to sample")
    else:
        P_sampled = P

    def unflatten(flat):
        return {k: flat[:, offsets[i]:offsets[i + 1]].view(C, *shape) for i, (k, shape, _) in enumerate(shapes)}

    def loss_of(params, batch):
        return loss_fn(FunctionalModel(model, {**frozen, **params}), batch)

    full_batch = cfg.batch_size is None or cfg.batch_size >= n
    forward = torch.func.vmap(loss_of, in_dims=(0, None if full_batch else 0))

    def loss_and_grad(flat, batch):
        flat = flat.detach().requires_grad_(True)
        loss = forward(unflatten(flat), batch)  # [C]
        (grad,) = torch.autograd.grad(loss.sum(), flat)
        return loss.detach(), grad

    children = chain_seeds(cfg.seed, C)
    gens = [noise_generator(c, device) for c in children]
    total = cfg.num_burnin + cfg.num_draws
    if not full_batch:
        idx = torch.as_tensor(np.stack([batch_indices(n, cfg.batch_size, total, np.random.default_rng(c))
                                        for c in children], axis=1), device=device)  # [steps, C, B]
    losses = torch.zeros(total, C, dtype=torch.float64, device=device)
    acceptance = []
    sqrt_eps = eps ** 0.5
    bar = tqdm(range(total), disable=not (cfg.progress and sys.stderr.isatty()), desc="SGLD", leave=False)
    for t in bar:
        if t % NOISE_BLOCK == 0:
            noise = noise_block(gens, min(NOISE_BLOCK, total - t), P, dtype)
        batch = full if full_batch else _take(full, idx[t])
        loss, grad = loss_and_grad(W, batch)
        _check_finite(loss, t, cfg)
        losses[t] = loss
        drift = nbeta * grad + gamma * (W - w_star)
        step_noise = noise[t % NOISE_BLOCK]
        if mask is not None:
            drift, step_noise = drift * mask, step_noise * mask
        new = W - (0.5 * eps) * drift + sqrt_eps * step_noise
        if cfg.mala_every and t % cfg.mala_every == 0:
            loss_new, grad_new = loss_and_grad(new, batch)
            if mask is not None:
                grad_new = grad_new * mask
            acceptance.append(_mala_acceptance(W, new, drift, grad_new, loss, loss_new, w_star, nbeta, gamma, eps))
        W = new
    bar.close()

    losses = losses.T.cpu().numpy()
    trace, burn = losses[:, cfg.num_burnin:], losses[:, :cfg.num_burnin]
    llc = nbeta * (trace.mean(axis=1) - init_loss)
    acc = np.array(acceptance).T if acceptance else np.zeros((C, 0))
    diag = summarize(trace, init_loss, acc)
    return LLCResult(llc_per_chain=llc, loss_trace=trace, burnin_trace=burn, init_loss=init_loss, nbeta=nbeta,
                     n=n, num_sampled_params=P_sampled, config=cfg, diagnostics=diag, param_names=names)


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
            if tuple(m.shape) != tuple(params[k].shape):
                raise ValueError(f"param_masks[{k!r}] has shape {tuple(m.shape)}, expected {tuple(params[k].shape)}")
            parts.append(m.reshape(-1).to(device=device, dtype=dtype))
    return torch.cat(parts)


def _check_finite(loss: torch.Tensor, t: int, cfg: SGLDConfig) -> None:
    bad = (~torch.isfinite(loss)).nonzero().flatten().tolist()
    if bad:
        raise SGLDDivergenceError(
            f"SGLD diverged: loss is {float(loss[bad[0]])} in chain {bad[0]} at step {t} "
            f"(step_size={cfg.step_size}, localization={cfg.localization}, nbeta={cfg.nbeta}). "
            "Try a smaller step_size or a larger localization.")


def _mala_acceptance(w, new, drift, grad_new, loss, loss_new, w_star, nbeta, gamma, eps) -> np.ndarray:
    """Metropolis-adjusted acceptance probability of each chain's step, both points on the same minibatch.

    All tensors are flat [C, P] (w_star [P]); U(w) = nbeta L(w) + gamma/2 |w - w*|^2.
    """
    drift_new = nbeta * grad_new + gamma * (new - w_star)
    u_old = nbeta * loss + 0.5 * gamma * ((w - w_star) ** 2).sum(1)
    u_new = nbeta * loss_new + 0.5 * gamma * ((new - w_star) ** 2).sum(1)
    log_q_fwd = -((new - w + 0.5 * eps * drift) ** 2).sum(1) / (2 * eps)
    log_q_bwd = -((w - new + 0.5 * eps * drift_new) ** 2).sum(1) / (2 * eps)
    log_alpha = (u_old - u_new + log_q_bwd - log_q_fwd).double()
    return torch.exp(torch.clamp(log_alpha, max=0.0)).cpu().numpy()
