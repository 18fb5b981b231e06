"""The main job (`make results`): all three research questions at the scale `LLC_SCALE` selects.

1. `results/complexity/`: LLC of every compiled program vs its complexity descriptors (question 1);
2. `results/grokking/` and `results/training/`: LLC during training (question 2);
3. `results/ablations/`: how ablations change the LLC (question 3; it also ablates the trained models that
   `training` wrote under the same results root).
Then `results/README.md`, the index (`studies.index`). `LLC_RESULTS_DIR` redirects the results root; `LLC_EXPERIMENTS` (comma-separated: complexity, grokking,
training, ablations) runs a subset.
"""

from __future__ import annotations

import os
import time

import torch

from studies import ablations, complexity, grokking, training
from studies.index import write_index
from studies.common import results_root, scale

EXPERIMENTS = {
    "complexity": lambda: complexity.run(complexity.PRESETS[scale()], results_root() / "complexity"),
    "grokking": lambda: grokking.run(grokking.PRESETS[scale()], results_root() / "grokking"),
    "training": lambda: training.run(training.PRESETS[scale()], results_root() / "training"),
    "ablations": lambda: ablations.run(ablations.PRESETS[scale()], results_root() / "ablations"),
}


def selected(value) -> list:
    """The experiments an `LLC_EXPERIMENTS` value names (None: all, in order).

    Raises:
        ValueError: an unknown name, a repeated one, or a value that names none (e.g. "," or "").
    """
    if value is None:
        return list(EXPERIMENTS)
    chosen = [e.strip() for e in value.split(",") if e.strip()]
    if not chosen:
        raise ValueError(f"LLC_EXPERIMENTS={value!r} names no experiment; choose from {list(EXPERIMENTS)} "
                         "(or unset it to run all)")
    unknown = sorted(set(chosen) - set(EXPERIMENTS))
    if unknown:
        raise ValueError(f"unknown experiments {unknown} in LLC_EXPERIMENTS; choose from {list(EXPERIMENTS)}")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"LLC_EXPERIMENTS={value!r} names an experiment twice")
    return chosen


def main() -> None:
    """Runs the experiments `LLC_EXPERIMENTS` names (default: all, in order).

    Raises:
        ValueError: an unknown experiment name, or a selection that names none.
    """
    torch.set_num_threads(1)
    chosen = selected(os.environ.get("LLC_EXPERIMENTS"))
    for name in chosen:
        t0 = time.time()
        print(f"=== {name} (scale {scale()!r}) -> {results_root() / name}", flush=True)
        EXPERIMENTS[name]()
        print(f"=== {name} done in {time.time() - t0:.0f} s", flush=True)
    write_index(results_root())
    print(f"=== index -> {results_root() / 'README.md'}", flush=True)


if __name__ == "__main__":
    main()
