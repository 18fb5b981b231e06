"""Fraction of previous tokens (inclusive) equal to "x" (numerical output)."""

import dataclasses
import string

from tracr.compiler import lib
from tracr.rasp import rasp
from rasp_models.base import ProgramSpec, module_api

TARGET = "x"


def make_vocab(num_letters: int) -> frozenset:
    """`num_letters` letters other than "x", plus "x"."""
    letters = [c for c in string.ascii_lowercase if c != TARGET][:num_letters]
    return frozenset(letters + [TARGET])


VOCAB = make_vocab(5)
MAX_SEQ_LEN = 10


def program() -> rasp.SOp:
    return lib.make_frac_prevs(rasp.tokens == TARGET).named("fractok")


def reference(tokens: list) -> list:
    out, count = [], 0
    for i, t in enumerate(tokens):
        count += t == TARGET
        out.append(count / (i + 1))
    return out


def make_spec(num_letters: int = 5, max_seq_len: int = MAX_SEQ_LEN, name: str = "fractok") -> ProgramSpec:
    """The program over `num_letters` letters plus "x", for inputs up to `max_seq_len`."""
    return ProgramSpec(name, f'running fraction of "{TARGET}" ({num_letters} letters + x, msl {max_seq_len})',
                       program, make_vocab(num_letters), max_seq_len, reference, numerical=True)


def variant(*, letters: int, max_seq_len: int) -> ProgramSpec:
    """The size-sweep variant `fractok_v{letters}_l{max_seq_len}` (family "fractok")."""
    return dataclasses.replace(make_spec(letters, max_seq_len, name=f"fractok_v{letters}_l{max_seq_len}"),
                               family="fractok")


SPEC = make_spec()
compile, BOS = module_api(SPEC)  # noqa: A001
