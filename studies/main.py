"""The main job (`make results`): all three research questions at the scale `LLC_SCALE` selects.

1. `results/complexity/`: LLC of every compiled program vs its complexity descriptors (question 1);
2. `results/grokking/` and `results/training/`: LLC during training (question 2);
3. `results/ablations/`: how ablations change the LLC (question 3; it also ablates the trained models that
   `training` wrote under the same results root).
`LLC_RESULTS_DIR` redirects the results root; `LLC_EXPERIMENTS` (comma-separated: complexity, grokking,
training, ablations) runs a subset.
"""

from __future__ import annotations

import os
import time

import torch

from studies import ablations, complexity, grokking, training
from studies.common import results_root, scale

EXPERIMENTS = {
    "complexity": lambda: complexity.run(complexity.PRESETS[scale()], results_root() / "complexity"),
    "grokking": lambda: grokking.run(grokking.PRESETS[scale()], results_root() / "grokking"),
    "training": lambda: training.run(training.PRESETS[scale()], results_root() / "training"),
    "ablations": lambda: ablations.run(ablations.PRESETS[scale()], results_root() / "ablations"),
}


def main() -> None:
    """Runs the experiments `LLC_EXPERIMENTS` names (default: all, in order).

    Raises:
        ValueError: an unknown experiment name.
    """
    torch.set_num_threads(1)
    chosen = [e.strip() for e in os.environ.get("LLC_EXPERIMENTS", ",".join(EXPERIMENTS)).split(",") if e.strip()]
    unknown = sorted(set(chosen) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"unknown experiments {unknown}; choose from {list(EXPERIMENTS)}")
    for name in chosen:
        t0 = time.time()
        print(f"=== {name} (scale {scale()!r}) -> {results_root() / name}", flush=True)
        EXPERIMENTS[name]()
        print(f"=== {name} done in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
