"""Input and output encoders: tokens <-> ids (categorical) and identity (numerical)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from tracr.craft import bases


class NumericalEncoder:
    """Identity encoding of a numerical output."""

    def __init__(self, basis: Sequence[bases.BasisDirection]):
        self.basis = list(basis)

    @property
    def name(self) -> str:
        return self.basis[0].name

    def encode(self, inputs: Sequence[float]) -> list[float]:
        return list(inputs)

    def decode(self, encodings: Sequence[float]) -> list[float]:
        return [float(x) for x in encodings]


class CategoricalEncoder:
    """Maps the values of a sorted basis to ids 0..n-1.

    Args:
        basis: the directions whose values are the tokens (kept in sorted order).
        enforce_bos: require `bos_token` first.
        max_seq_len: the longest accepted input, BOS included.
    """

    def __init__(
        self,
        basis: Sequence[bases.BasisDirection],
        enforce_bos: bool = False,
        bos_token: Optional[Any] = None,
        pad_token: Optional[Any] = None,
        max_seq_len: Optional[int] = None,
    ):
        self.basis = sorted(basis, key=bases.BasisDirection.sort_key)
        self.encoding_map = {d.value: i for i, d in enumerate(self.basis)}
        self.decoding_map = {i: v for v, i in self.encoding_map.items()}
        self.enforce_bos = enforce_bos
        self.bos_token = bos_token
        self.pad_token = pad_token
        self.max_seq_len = max_seq_len

    @property
    def name(self) -> str:
        return self.basis[0].name

    @property
    def vocab_size(self) -> int:
        return len(self.encoding_map)

    @property
    def bos_encoding(self) -> int:
        return self.encoding_map[self.bos_token]

    @property
    def pad_encoding(self) -> int:
        return self.encoding_map[self.pad_token]

    def encode(self, inputs: Sequence[Any]) -> list[int]:
        """Token values -> ids.

        Raises:
            ValueError: first token is not BOS, a token is not in the vocabulary, or the input is too long.
        """
        inputs = list(inputs)
        if self.enforce_bos and (not inputs or inputs[0] != self.bos_token):
            raise ValueError(f"The first token must be the BOS token {self.bos_token!r}, got {inputs[:1]!r}")
        if self.max_seq_len is not None and len(inputs) > self.max_seq_len:
            raise ValueError(
                f"Input of length {len(inputs)} (BOS included) exceeds the maximum {self.max_seq_len} "
                f"(max_seq_len {self.max_seq_len - 1} plus BOS)")
        unknown = [x for x in inputs if x not in self.encoding_map]
        if unknown:
            known = sorted(self.encoding_map, key=lambda v: bases._value_key(v))
            raise ValueError(f"Tokens {unknown!r} are not in the vocabulary {known!r}")
        return [self.encoding_map[x] for x in inputs]

    def decode(self, encodings: Sequence[int]) -> list[Any]:
        bad = [e for e in encodings if e not in self.decoding_map]
        if bad:
            raise ValueError(f"Ids {bad!r} are not valid encodings")
        return [self.decoding_map[e] for e in encodings]
