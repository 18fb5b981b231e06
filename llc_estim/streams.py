"""Where a sampler run's randomness and threads come from: one SeedSequence per chain, from which its noise,
minibatch order and accept/reject draws derive, so a chain's draws do not depend on how many chains run beside it.
"""

from __future__ import annotations

import contextlib
from typing import Optional

import numpy as np
import torch


@contextlib.contextmanager
def torch_threads(num: Optional[int]):
    """Within the block torch uses `num` threads (None: unchanged), restored afterwards."""
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
    """One child SeedSequence per chain (its batch order, noise and accept/reject draws derive from it)."""
    return np.random.SeedSequence(seed).spawn(num_chains)


def noise_generator(child: np.random.SeedSequence, device="cpu") -> torch.Generator:
    """A torch generator on `device` seeded from one chain's SeedSequence."""
    return torch.Generator(device=device).manual_seed(int(child.generate_state(1, np.uint64)[0] >> np.uint64(1)))
