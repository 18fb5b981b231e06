"""The sampler's loss-and-gradient function, eager or for `torch.compile`, and compilation with guards checked once.

`SGLDConfig(compile=True)` runs the potential and the plain SGLD step through `compile_once_guarded`: Dynamo traces
the vmapped `grad_and_value` of the loss, the potential and the update as one graph, and within a run (inputs of
fixed shapes) skips its guard checks after the first call. The eager path (the default) is autograd through the
vmapped forward.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from llc_estim.params import FlatParams, LossFn


def loss_and_grad_fn(flat: FlatParams, loss_fn: LossFn, batch_dim: Optional[int], compiled: bool) -> Callable:
    """(w [C, P], batch) -> (grad_w L [C, P], L [C]), detached, all chains at once.

    Eager: autograd through the vmapped forward. For `compiled` (traced inside `torch.compile` by the caller): one
    `grad_and_value` vmapped over chains, which Dynamo traces whole.
    """
    per_chain = lambda w, b: flat.loss(loss_fn, w, b)  # noqa: E731
    if compiled:
        return torch.func.vmap(torch.func.grad_and_value(per_chain), in_dims=(0, batch_dim))
    forward = torch.func.vmap(per_chain, in_dims=(0, batch_dim))

    def eager(w: torch.Tensor, batch):
        w = w.detach().requires_grad_(True)
        loss = forward(w, batch)  # [C]
        (grad,) = torch.autograd.grad(loss.sum(), w)
        return grad, loss.detach()

    return eager


def _signature(arg):
    """What a compiled function's guards check of one input: a tensor's shape, dtype and device; a container's
    leaves; any other object itself (compared by identity, and kept alive so that its id cannot be reused)."""
    if isinstance(arg, torch.Tensor):
        return arg.shape, arg.dtype, arg.device
    if arg is None or isinstance(arg, (bool, int, float, str)):
        return arg
    leaves = torch.utils._pytree.tree_leaves(arg)
    if len(leaves) == 1 and leaves[0] is arg:
        return (type(arg), arg)
    return tuple(_signature(leaf) for leaf in leaves)


def compile_once_guarded(fn: Callable, state: Callable[[], tuple] = tuple) -> Callable:
    """`torch.compile(fn)`, whose guards are checked in full only when its tensor inputs change shape or dtype.

    Dynamo guards on shapes and dtypes, not on the weights' values (parameters and frozen tensors are graph inputs),
    so later runs with a model of the same structure reuse the compiled code. Within one run the inputs keep their
    shapes, so after a first fully guarded call the guards are skipped (stance `skip_guard_eval_unsafe`), a third
    of a small model's call overhead. `state()` returns what `fn` reads besides its arguments that may be swapped
    between calls (e.g. the preconditioner `auto_llc` replaces after warm-up): a change there, as in the arguments'
    signature, brings the full guards back for that call.
    """
    compiled = torch.compile(fn, dynamic=False)
    signature = None

    def call(*args):
        nonlocal signature
        now = [_signature(a) for a in (*args, *state())]
        if now != signature:
            signature = now
            return compiled(*args)
        with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
            return compiled(*args)

    return call
