"""Compile time of every lib program at the reference sizes (target: under 1 s each on a 2-core CPU)."""

import time

from tests.test_tracr.cases import CASES
from tracr.compiler import compiling


def main() -> None:
    print(f"{'program':28s} {'layers':>6s} {'heads':>5s} {'resid':>5s} {'mlp':>5s} {'compile_s':>9s}")
    for case in CASES:
        best = float("inf")
        for _ in range(3):
            program = case.program()
            t0 = time.perf_counter()
            m = compiling.compile_rasp_to_model(program, case.vocab, case.max_seq_len, compiler_bos="BOS")
            best = min(best, time.perf_counter() - t0)
        c = m.model_config
        print(f"{case.name:28s} {c.num_layers:6d} {c.num_heads:5d} {len(m.residual_labels):5d} "
              f"{c.mlp_hidden_size:5d} {best:9.4f}")


if __name__ == "__main__":
    main()
