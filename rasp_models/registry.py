"""Name -> program spec for every program we study, ordered roughly from trivial to complex."""

from rasp_models import (dominant_peak, fractok, histogram, palindrome, palindrome_seq, peak, reverse, sort,
                         tracr_lib, triplets)
from rasp_models.base import ProgramSpec

_SPECS = {s.name: s for s in [
    tracr_lib.IDENTITY, tracr_lib.LENGTH, tracr_lib.COUNT_A, histogram.SPEC, fractok.SPEC, tracr_lib.PAIR_BALANCE,
    tracr_lib.DETECT_ABC, triplets.SPEC, dominant_peak.SPEC, tracr_lib.COUNT_LESS_FREQ, reverse.SPEC, sort.SPEC,
    palindrome.SPEC, palindrome_seq.SPEC, tracr_lib.SORT_FREQ, tracr_lib.SHUFFLE_DYCK2, peak.SPEC,
]}


def names() -> list[str]:
    """Registered program names, roughly from trivial to complex."""
    return list(_SPECS)


def get(name: str) -> ProgramSpec:
    """The spec of a registered program.

    Raises:
        KeyError: unknown name (the message lists the known ones).
    """
    if name not in _SPECS:
        raise KeyError(f"unknown program {name!r}; registered: {names()}")
    return _SPECS[name]



_VARIANTS = {"fractok": fractok.variant, "palindrome": palindrome.variant, "sort": sort.variant}


def variant(family: str, **size) -> ProgramSpec:
    """A registered program at another size (same algorithm, bigger model), named after its size.

    Sizes: `fractok` (letters, max_seq_len), `palindrome` (max_seq_len), `sort` (max_seq_len); e.g.
    `variant("fractok", letters=13, max_seq_len=10)` is `fractok_v13_l10`.

    Raises:
        KeyError: a family without size variants.
        TypeError: size names the family does not take.
    """
    if family not in _VARIANTS:
        raise KeyError(f"no size variants of {family!r}; families: {sorted(_VARIANTS)}")
    return _VARIANTS[family](**size)
