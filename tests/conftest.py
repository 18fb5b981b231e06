"""Test-wide settings: float64 JAX (so Haiku and torch can be compared at 1e-9), one torch thread."""

import os

import jax

jax.config.update("jax_enable_x64", True)
os.environ.setdefault("LLC_SCALE", "smoke")

try:
    import torch

    torch.set_num_threads(1)
except ImportError:  # pragma: no cover
    pass
