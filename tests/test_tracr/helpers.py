"""Shared assertions for compiler tests: the RASP evaluator is the oracle."""

import numbers
import random

from tracr.rasp import causal_eval, rasp


def outputs_match(actual, expected, atol=1e-3) -> bool:
    """Categorical exact, numerical within `atol`; positions where the oracle says None are skipped."""
    if len(actual) != len(expected):
        return False
    for a, e in zip(actual, expected):
        if e is None:
            continue
        if isinstance(e, numbers.Number) and not isinstance(e, bool) and isinstance(a, float):
            if abs(a - e) > atol:
                return False
        elif isinstance(e, bool) and isinstance(a, float):
            if abs(a - float(e)) > atol:
                return False
        elif a != e:
            return False
    return True


def random_inputs(vocab, max_seq_len, n, seed=0):
    rng = random.Random(seed)
    vocab = sorted(vocab, key=str)
    return [[rng.choice(vocab) for _ in range(rng.randint(1, max_seq_len))] for _ in range(n)]


def oracle(program, xs, causal=False):
    """The evaluator's output, or None when the program is undefined there (e.g. a mean of letters)."""
    try:
        return (causal_eval.evaluate if causal else rasp.evaluate)(program, xs)
    except ValueError:
        return None
