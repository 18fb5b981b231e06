"""Seeded sequence generators with controlled class balance, and train/validation/test splits."""

from __future__ import annotations

import random
from typing import Callable

from rasp_models.base import ProgramSpec

Sampler = Callable[[random.Random, ProgramSpec], list]


def uniform(rng: random.Random, spec: ProgramSpec) -> list:
    """Length uniform in 1..max_seq_len, tokens uniform."""
    vocab = sorted(spec.vocab, key=str)
    return [rng.choice(vocab) for _ in range(rng.randint(1, spec.max_seq_len))]


def palindrome_balanced(rng: random.Random, spec: ProgramSpec) -> list:
    """Half palindromes (a mirrored random half), half non-palindromes of length >= 2 (rejection sampled)."""
    vocab = sorted(spec.vocab, key=str)
    if rng.random() < 0.5:
        n = rng.randint(1, spec.max_seq_len)
        half = [rng.choice(vocab) for _ in range((n + 1) // 2)]
        return half + half[: n // 2][::-1]
    while True:
        xs = [rng.choice(vocab) for _ in range(rng.randint(2, spec.max_seq_len))]
        if xs != xs[::-1]:
            return xs


def fractok_rate(rng: random.Random, spec: ProgramSpec) -> list:
    """Each sequence draws its own rate of "x" uniformly in [0, 1], so every prefix fraction is exercised."""
    others = sorted(t for t in spec.vocab if t != "x")
    p = rng.random()
    return ["x" if rng.random() < p else rng.choice(others) for _ in range(rng.randint(1, spec.max_seq_len))]


def peak_mixture(rng: random.Random, spec: ProgramSpec) -> list:
    """Half uniform sequences (about a third of positions are peaks), half zig-zags with jitter (about half are
    peaks), so the peak share of positions is controlled near 0.4 and both classes are common."""
    vocab = sorted(spec.vocab)
    n = rng.randint(1, spec.max_seq_len)
    if rng.random() < 0.5:
        return [rng.choice(vocab) for _ in range(n)]
    lo, hi = vocab[: len(vocab) // 2], vocab[len(vocab) // 2:]
    phase = rng.randint(0, 1)
    return [rng.choice(hi if (i + phase) % 2 else lo) for i in range(n)]


def dyck_mixture(rng: random.Random, spec: ProgramSpec) -> list:
    """Half balanced shuffles of () and {} (each pair a random balanced string, interleaved), half uniform."""
    vocab = sorted(spec.vocab)
    if rng.random() < 0.5:
        return [rng.choice(vocab) for _ in range(rng.randint(1, spec.max_seq_len))]
    pairs = ["()", "{}"]
    seqs = []
    budget = rng.randint(1, spec.max_seq_len // 2)
    for o, c in pairs:
        k = rng.randint(0, budget)
        budget -= k
        s, depth = [], 0
        for _ in range(2 * k):
            if depth and (rng.random() < 0.5 or len([x for x in s if x == o]) == k):
                s.append(c)
                depth -= 1
            else:
                s.append(o)
                depth += 1
        seqs.append(s)
    merged = []
    a, b = seqs
    while a or b:
        src = a if (a and (not b or rng.random() < 0.5)) else b
        merged.append(src.pop(0))
    return merged or ["(", ")"]


def dominant_mixture(rng: random.Random, spec: ProgramSpec) -> list:
    """Uniform sequences, half of them with a planted unique maximum."""
    vocab = sorted(spec.vocab)
    xs = [rng.choice(vocab) for _ in range(rng.randint(1, spec.max_seq_len))]
    if rng.random() < 0.5:
        xs = [min(x, vocab[-2]) for x in xs]
        xs[rng.randrange(len(xs))] = vocab[-1]
    return xs


def planted(pattern_of: Callable) -> Sampler:
    """Uniform sequences, half of them with a pattern copied in at a random place (so True labels are common)."""

    def sample(rng: random.Random, spec: ProgramSpec) -> list:
        xs = uniform(rng, spec)
        pattern = pattern_of(rng, spec)
        if rng.random() < 0.5 and len(pattern) <= spec.max_seq_len:
            if len(xs) < len(pattern):  # lengthen to fit the pattern
                xs = [rng.choice(sorted(spec.vocab, key=str)) for _ in range(len(pattern))]
            at = rng.randint(0, len(xs) - len(pattern))
            xs[at:at + len(pattern)] = pattern
        return xs

    return sample


SAMPLERS: dict[str, Sampler] = {
    "palindrome": palindrome_balanced, "palindrome_seq": palindrome_balanced, "fractok": fractok_rate,
    "peak": peak_mixture, "shuffle_dyck2": dyck_mixture, "dominant_peak": dominant_mixture,
    "detect_abc": planted(lambda rng, spec: list("abc")),
    "triplets": planted(lambda rng, spec: [rng.choice(sorted(spec.vocab))] * 3),
}


def sampler_for(spec: ProgramSpec) -> Sampler:
    """The data generator of a program (variants use their family's)."""
    return SAMPLERS.get(spec.family or spec.name, uniform)


def generate(spec: ProgramSpec, n: int, seed: int) -> list[list]:
    """`n` sequences for `spec`, deterministic given `seed`."""
    if n < 1:
        raise ValueError("n must be >= 1")
    rng = random.Random(seed)
    sampler = sampler_for(spec)
    return [sampler(rng, spec) for _ in range(n)]


def splits(spec: ProgramSpec, sizes: tuple[int, int, int], seed: int) -> tuple[list, list, list]:
    """Train/validation/test splits with no sequence in two splits (duplicates are drawn again).

    Raises:
        ValueError: a requested split is empty, or the task has too few distinct sequences.
    """
    if min(sizes) < 1:
        raise ValueError(f"every split needs at least one sequence, got {sizes}")
    rng = random.Random(seed)
    sampler = sampler_for(spec)
    taken: set = set()
    out = []
    for size in sizes:
        split, tries = [], 0
        while len(split) < size:
            xs = sampler(rng, spec)
            key = tuple(xs)
            tries += 1
            if tries > 200 * sum(sizes):
                raise ValueError(f"{spec.name}: cannot draw {sum(sizes)} distinct sequences")
            if key in taken:
                continue
            taken.add(key)
            split.append(xs)
        out.append(split)
    return tuple(out)


def balance(spec: ProgramSpec, seqs: list[list]) -> dict:
    """Class balance of the reference labels: share of True positions (and of all-True sequences)."""
    labels = [spec.reference(xs) for xs in seqs]
    flat = [v for row in labels for v in row if v is not None]
    if flat and all(isinstance(v, bool) for v in flat):
        return {"true_share_positions": sum(flat) / len(flat),
                "all_true_share_sequences": sum(all(v for v in row if v is not None) for row in labels) / len(seqs)}
    return {"num_positions": len(flat), "distinct_values": len(set(flat))}

