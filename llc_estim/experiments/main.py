"""The main job (`make results`): all three research questions at the scale `LLC_SCALE` selects.

1. `results/complexity/`: LLC of every compiled program vs its complexity descriptors (question 1);
2. `results/grokking/` and `results/training/`: LLC during training (question 2);
3. `results/ablations/`: how ablations change the LLC (question 3).
`LLC_RESULTS_DIR` redirects the results root; `LLC_EXPERIMENTS` (comma-separated: complexity, grokking,
training, ablations) runs a subset.
"""

from __future__ import annotations

import os
import time

import torch

from llc_estim.experiments import ablations, complexity
from llc_estim.experiments.common import results_root, scale
from llc_training import tasks
from llc_training.grokking import mod_add

EXPERIMENTS = {
    "complexity": lambda: complexity.run(complexity.PRESETS[scale()], results_root() / "complexity"),
    "grokking": lambda: mod_add.run(mod_add.PRESETS[scale()], results_root() / "grokking"),
    "training": tasks.main,
    "ablations": lambda: ablations.run(ablations.PRESETS[scale()], results_root() / "ablations"),
}


def main() -> None:
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
