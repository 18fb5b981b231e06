"""Vectorised SGLD / MALA / HMC and the LLC estimator.

All chains run at once: the sampled entries are one flat [chains, P] tensor, and the loss and its gradient are
evaluated with `torch.func` (`functional_call` + `vmap`, autograd backward; with `compile=True` through
`torch.compile`, see `llc_estim.compiled`). The chains move in whitened
coordinates z, w = w* + S z (S = A^(1/2) for a fixed preconditioner A; the identity by default), under

    U(z) = nbeta L_batch(w) + gamma/2 |w - w*|^2.

SGLD (leapfrog_steps = 1, no Metropolis): z <- z - (eps/2) grad U + sqrt(eps) xi, the devinterp step when A = I.
Metropolis-adjusted: a leapfrog trajectory of `leapfrog_steps` steps of size sqrt(eps) from a fresh momentum,
accepted with probability min(1, exp(H_old - H_new)) on the same batch (MALA for one step).

The estimate is lambda_hat = nbeta * (mean of the post-burn-in losses - L_n(w*)), per chain: SGLD records the
minibatch loss at the pre-step parameters, Metropolis runs the loss at the chain's state after each
accept/reject. `L_n(w*)` is measured on the full data set. The caller's model is never modified.
"""

from __future__ import annotations

import copy
import math
import sys
import warnings
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from llc_estim.compiled import compile_once_guarded, loss_and_grad_fn
from llc_estim.config import LLCResult, SGLDConfig, SGLDDivergenceError
from llc_estim.diagnostics import assess, summarize
from llc_estim.params import FlatParams, LossFn, materialise, num_examples, take, to_device
from llc_estim.streams import batch_indices, chain_seeds, noise_generator, torch_threads


NOISE_BLOCK = 64  # iterations of noise drawn at once per chain
NOISE_BLOCK_BYTES = 2 ** 31  # fewer iterations per block when a block of all chains would exceed this


class LLCWarning(UserWarning):
    """Emitted when an LLC estimate is flagged untrustworthy (the reasons are in the message)."""


def langevin_update(z: torch.Tensor, drift: torch.Tensor, noise: torch.Tensor, eps, sqrt_eps) -> torch.Tensor:
    """The SGLD step z - (eps/2) grad_z U + sqrt(eps) xi (also the MALA proposal whose acceptance is checked)."""
    return z - 0.5 * eps * drift + sqrt_eps * noise


def estimate_llc(model: torch.nn.Module, data: Dataset, loss_fn: LossFn, cfg: SGLDConfig,
                 collate_fn: Optional[Callable] = None) -> LLCResult:
    """Estimates the local learning coefficient of `model` at its current parameters w*.

    Args:
        model: the network; its parameters are w* and are left unchanged.
        data: a torch Dataset (optionally with a `num_draws` attribute: the n its items stand for).
        loss_fn: `loss_fn(model, batch) -> scalar mean loss`. It may call the model and its parameter-free methods.
        cfg: the sampler settings.
        collate_fn: how to batch examples (default: torch's default_collate).

    Returns:
        The estimate; `diagnostics["trustworthy"]` and `["warnings"]` say whether to believe it (an untrustworthy
        result also emits an `LLCWarning`).

    Raises:
        SGLDDivergenceError: a NaN or infinite loss, naming the chain and step.
        ValueError: a bad configuration for this model (e.g. a preconditioner of the wrong size).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: loss_fn(model, batch) -> scalar tensor")
    with torch_threads(cfg.num_threads):
        return ChainRun(model, data, loss_fn, cfg, collate_fn).run()


class ChainRun:
    """One call of `estimate_llc`: set-up, the loop, and the result. `llc_estim.adaptation` tunes its step size
    first when `auto_llc` drives it."""

    def __init__(self, model, data, loss_fn, cfg: SGLDConfig, collate_fn):
        self.cfg, self.loss_fn = cfg, loss_fn
        self.flat = FlatParams(model, cfg.param_filter, cfg.param_masks)
        self.n_items = len(data)
        self.full = to_device(materialise(data, collate_fn), self.flat.device)
        self.n = num_examples(data)
        self.nbeta = cfg.resolved_nbeta(self.n)
        self.full_batch = cfg.batch_size is None or cfg.batch_size >= self.n_items
        self.precond = cfg.preconditioner
        if self.precond is not None:
            self.precond.check_size(self.flat.size)
        loss = self.flat.loss(loss_fn, self.flat.w_star, self.full) if self.full_batch else None
        with torch.no_grad():
            self.init_loss = float(loss) if loss is not None else float(
                self.flat.full_loss(loss_fn, self.flat.w_star, self.full, self.n_items, cfg.batch_size))
        self._loss_and_grad = loss_and_grad_fn(self.flat, loss_fn, None if self.full_batch else 0, cfg.compile)
        if cfg.compile:
            swapped = lambda: (self.precond,)  # noqa: E731  (auto_llc replaces it; the rest is fixed per run)
            self._potential_c = compile_once_guarded(self._potential, swapped)
            self._sgld_step_c = compile_once_guarded(self._sgld_step, swapped)
        self._scalar_cache = (None, None)
        self._metric_model = None
        self.bounds = None  # Hessian bounds (from llc_bounds), checked by the verdict when set

    def to_w(self, z: torch.Tensor) -> torch.Tensor:
        """[C, P] whitened coordinates -> parameters."""
        offset = z if self.precond is None else self.precond.sqrt_apply(z)
        if self.flat.mask is not None:
            offset = offset * self.flat.mask
        return self.flat.w_star + offset

    def scalars(self) -> tuple:
        """(nbeta, gamma, eps, sqrt(eps)) of the current `self.cfg`: Python floats eagerly; 0-d tensors when compiled,
        so that a new nbeta or step size (`auto_llc` tunes it after building the run) is a new input, not a new
        specialisation to compile."""
        key = (self.nbeta, self.cfg.localization, self.cfg.step_size)
        if key != self._scalar_cache[0]:
            values = (*key, math.sqrt(self.cfg.step_size))
            if self.cfg.compile:
                values = tuple(torch.tensor(v, dtype=torch.float64, device=self.flat.device) for v in values)
            self._scalar_cache = (key, values)
        return self._scalar_cache[1]

    def potential(self, z: torch.Tensor, batch, need_u: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(U [C], grad_z U [C, P], loss [C]) at z; U is None when `need_u` is False (plain SGLD steps)."""
        fn = self._potential_c if self.cfg.compile else self._potential
        return fn(z, batch, need_u, *self.scalars()[:2])

    def _potential(self, z, batch, need_u: bool, nbeta, gamma):
        w = self.to_w(z).detach()
        grad, loss = self._loss_and_grad(w, batch)
        offset = w - self.flat.w_star
        drift = nbeta * grad + gamma * offset
        if self.flat.mask is not None:
            drift = drift * self.flat.mask
        if self.precond is not None:
            drift = self.precond.sqrt_apply(drift)  # S is symmetric: grad_z U = S grad_w U
        u = nbeta * loss + 0.5 * gamma * (offset ** 2).sum(1) if need_u else None
        return u, drift, loss

    def batch(self, rows: Optional[torch.Tensor]):
        """The full data set (rows None), or rows [C, B] of it: one minibatch per chain."""
        return self.full if rows is None else take(self.full, rows)

    def sgld_step(self, z: torch.Tensor, rows: Optional[torch.Tensor], noise: torch.Tensor):
        """One plain SGLD step from z on `self.batch(rows)` with standard normal `noise` [C, P]: (new z, loss at z)."""
        fn = self._sgld_step_c if self.cfg.compile else self._sgld_step
        return fn(z, rows, noise, *self.scalars())

    def _sgld_step(self, z, rows, noise, nbeta, gamma, eps, sqrt_eps):
        _, drift, loss = self._potential(z, self.batch(rows), False, nbeta, gamma)
        return langevin_update(z, drift, noise, eps, sqrt_eps), loss

    def noise(self, gens, t: int) -> torch.Tensor:
        """[C, P] standard normal noise (momenta) for iteration t, drawn in blocks per chain; zero where frozen.

        A block holds NOISE_BLOCK iterations (fewer at the end of a run, and fewer when the block of all chains
        would exceed NOISE_BLOCK_BYTES, e.g. hundreds of chains of a large model); t runs from 0 in every run.
        """
        if t == 0 or t >= self._block_start + len(self._block):
            P, C, size = self.flat.size, len(gens), self.flat.w_star.element_size()
            steps = min(NOISE_BLOCK, self.total - t, max(1, NOISE_BLOCK_BYTES // (C * P * size)))
            block = torch.empty(steps, C, P, dtype=self.flat.dtype, device=self.flat.device)
            for c, g in enumerate(gens):  # each chain's own stream, drawn contiguously (then copied into place)
                block[:, c] = torch.randn(steps, P, generator=g, dtype=self.flat.dtype, device=g.device)
            if self.flat.mask is not None:
                block.mul_(self.flat.mask)  # elementwise, so the same numbers as masking each row
            self._block, self._block_start = block, t
        return self._block[t - self._block_start]

    def run(self, start: Optional[torch.Tensor] = None) -> LLCResult:
        """The sampling loop from w* (or from whitened state `start` [C, P])."""
        cfg, C, P = self.cfg, self.cfg.num_chains, self.flat.size
        children = chain_seeds(cfg.seed, C)
        gens = [noise_generator(c, self.flat.device) for c in children]
        total = self.total = cfg.num_burnin + cfg.num_draws
        steps = total * cfg.leapfrog_steps
        uniforms = [noise_generator(c.spawn(1)[0], self.flat.device) for c in children]
        if not self.full_batch:
            idx = torch.as_tensor(np.stack([batch_indices(self.n_items, cfg.batch_size, total,
                                                          np.random.default_rng(c)) for c in children], axis=1),
                                  device=self.flat.device)  # [iterations, C, B]
        metric_every = cfg.metric_every or max(total // 10, 1)
        # the losses stay on the model's device (no host sync per step) and are checked for NaN once per noise block
        losses = torch.zeros(total, C, dtype=torch.float64, device=self.flat.device)
        checked = 0  # losses[:checked] are known to be finite
        accept, metrics = [], []
        z = torch.zeros(C, P, dtype=self.flat.dtype, device=self.flat.device) if start is None else start
        cached = None  # (U, grad, loss) at z on the full batch, reused by Metropolis runs
        bar = tqdm(range(total), disable=not (cfg.progress and sys.stderr.isatty()), desc="LLC sampler",
                   leave=False, total=total, unit="it", postfix={"steps": steps})
        for t in bar:
            rows = None if self.full_batch else idx[t]  # [C, B] this iteration's minibatch of every chain
            if cfg.metropolis:
                batch = self.batch(rows)
                if cached is None or not self.full_batch:
                    cached = self.potential(z, batch)
                z, cached, prob = self.metropolis_step(z, cached, batch, self.noise(gens, t), uniforms, t,
                                                        math.sqrt(cfg.step_size))
                losses[t] = cached[2]
                accept.append(prob)
            else:
                if bool(cfg.mala_every) and t % cfg.mala_every == 0:
                    batch = self.batch(rows)
                    u, grad, loss = self.potential(z, batch)
                    new = langevin_update(z, grad, self.noise(gens, t), *self.scalars()[2:])
                    accept.append(self._mala_probability(z, new, (u, grad, loss), batch))
                else:
                    new, loss = self.sgld_step(z, rows, self.noise(gens, t))
                losses[t] = loss
                z = new
                if (t + 1) % NOISE_BLOCK == 0:
                    self._check_losses(losses, checked, t + 1)
                    checked = t + 1
            if cfg.draw_metric is not None and (t % metric_every == metric_every - 1 or t == total - 1):
                self._check_losses(losses, checked, t + 1)
                checked = t + 1
                metrics.append(self._draw_metric(z))
        bar.close()
        self._check_losses(losses, checked, total)
        return self._result(losses.cpu(), accept, metrics)

    def metropolis_step(self, z, cached, batch, p0, uniforms, t, h):
        """One leapfrog trajectory of step h from momentum p0 and its accept/reject, per chain."""
        cfg = self.cfg
        u0, g0, _ = cached
        zn, p = z, p0 - 0.5 * h * g0
        for i in range(cfg.leapfrog_steps):
            zn = zn + h * p
            un, gn, ln = self.potential(zn, batch)
            if i < cfg.leapfrog_steps - 1:
                p = p - h * gn
        p = p - 0.5 * h * gn
        log_alpha = (u0 + 0.5 * (p0 ** 2).sum(1)) - (un + 0.5 * (p ** 2).sum(1))
        log_alpha = torch.nan_to_num(log_alpha.double(), nan=-math.inf)
        prob = torch.exp(log_alpha.clamp(max=0.0))
        uniform = torch.stack([torch.rand((), generator=g, dtype=torch.float64, device=g.device) for g in uniforms])
        ok = (uniform < prob).to(z.device)
        z = torch.where(ok[:, None], zn, z)
        cached = tuple(torch.where(ok.view(-1, *[1] * (a.dim() - 1)), b, a) for a, b in zip(cached, (un, gn, ln)))
        self._check_finite(cached[2], t)
        return z, cached, prob.cpu().numpy()

    def _mala_probability(self, z, new, current, batch) -> np.ndarray:
        """Acceptance probability of the SGLD step as a MALA proposal (diagnostic only), on the same batch."""
        u, grad, _ = current
        u_new, grad_new, _ = self.potential(new, batch)
        eps = self.cfg.step_size
        log_q_fwd = -((new - z + 0.5 * eps * grad) ** 2).sum(1) / (2 * eps)
        log_q_bwd = -((z - new + 0.5 * eps * grad_new) ** 2).sum(1) / (2 * eps)
        log_alpha = torch.nan_to_num((u - u_new + log_q_bwd - log_q_fwd).double(), nan=-math.inf)
        return torch.exp(log_alpha.clamp(max=0.0)).cpu().numpy()

    @torch.no_grad()
    def _draw_metric(self, z) -> list:
        """The user's metric on a copy of the model holding each chain's weights (a real module, so the metric may
        read parameters as attributes)."""
        if self._metric_model is None:
            self._metric_model = copy.deepcopy(self.flat.model)
        params = dict(self._metric_model.named_parameters())
        out = []
        for w in self.to_w(z):
            for name, value in self.flat.unflatten(w).items():
                params[name].copy_(value)
            out.append(float(self.cfg.draw_metric(self._metric_model)))
        return out

    def _check_losses(self, losses: torch.Tensor, start: int, stop: int) -> None:
        """Raises for the first non-finite loss among iterations [start, stop) of `losses` [iterations, C]."""
        if stop <= start or bool(torch.isfinite(losses[start:stop]).all()):
            return
        first = int((~torch.isfinite(losses[start:stop])).any(1).nonzero()[0, 0])
        self._check_finite(losses[start + first], start + first)

    def _check_finite(self, loss: torch.Tensor, t: int) -> None:
        if bool(torch.isfinite(loss).all()):
            return
        bad = (~torch.isfinite(loss)).nonzero().flatten().tolist()
        if not bad:
            return
        cfg = self.cfg
        advice = ("step_size x localization / 2 = {:.3g} > 1: the localization term alone is unstable, so reduce "
                  "step_size".format(cfg.step_size * cfg.localization / 2)
                  if cfg.step_size * cfg.localization / 2 > 1 else
                  "reduce step_size (or precondition, or strengthen the localization)")
        raise SGLDDivergenceError(
            f"sampler diverged: loss is {float(loss[bad[0]])} in chain {bad[0]} at iteration {t} "
            f"(step_size={cfg.step_size}, localization={cfg.localization}, nbeta={self.nbeta:.6g}). {advice}.")

    def _result(self, losses, accept, metrics) -> LLCResult:
        cfg = self.cfg
        losses = losses.T.numpy()
        trace, burn = losses[:, cfg.num_burnin:], losses[:, :cfg.num_burnin]
        llc = self.nbeta * (trace.mean(axis=1) - self.init_loss)
        acc = np.array(accept).T if accept else np.zeros((cfg.num_chains, 0))
        acc_draws = acc[:, cfg.num_burnin:] if cfg.metropolis else acc
        diag = summarize(trace, self.init_loss, acc_draws, self.nbeta)
        diag["sampler"] = ("hmc" if cfg.leapfrog_steps > 1 else "mala") if cfg.metropolis else "sgld"
        met = np.array(metrics).T if metrics else np.zeros((cfg.num_chains, 0))
        if met.size:
            diag["draw_metric_min"] = float(met.min())
            diag["draw_metric_mean"] = float(met.mean())
        if self.bounds is not None:
            diag["bounds"] = self.bounds
        ok, reasons = assess(diag, llc, self.flat.num_sampled, cfg.thresholds, self.bounds)
        diag["trustworthy"], diag["warnings"] = ok, reasons
        if not ok:
            warnings.warn("LLC estimate flagged untrustworthy: " + "; ".join(reasons), LLCWarning, stacklevel=3)
        return LLCResult(llc_per_chain=llc, loss_trace=trace, burnin_trace=burn, init_loss=self.init_loss,
                         nbeta=self.nbeta, n=self.n, num_sampled_params=self.flat.num_sampled, config=cfg,
                         diagnostics=diag, param_names=self.flat.names, acceptance_trace=acc, metric_trace=met)
