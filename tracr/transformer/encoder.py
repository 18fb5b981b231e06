"""Input and output encoders: tokens <-> ids (categorical) and identity (numerical)."""

from __future__ import annotations

import collections.abc
from typing import Any, Optional, Sequence

import numpy as np

from tracr.craft import bases


def _token_list(xs: Any, what: str, hint: str = "") -> list:
    """`xs` as a list of tokens; raises TypeError for a string, a non-sequence (or an array that is not 1-D), or an
    unhashable token."""
    if (isinstance(xs, (str, bytes)) or not isinstance(xs, (collections.abc.Sequence, np.ndarray))
            or (isinstance(xs, np.ndarray) and xs.ndim != 1)):
        raise TypeError(f"{what} must be a list of tokens, got {type(xs).__name__} {xs!r}{hint}")
    xs = list(xs)
    for x in xs:
        try:
            hash(x)
        except TypeError:
            raise TypeError(f"{what} holds the unhashable token {x!r}; tokens are single values") from None
    return xs


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
            TypeError: `inputs` is not a list (or tuple, or 1-D array) of tokens, or a token is unhashable.
            ValueError: first token is not BOS, BOS or the pad token appears later on, a token is not in the
                vocabulary, or the input is too long.
        """
        inputs = _token_list(inputs, "the input")
        if self.enforce_bos:
            if not inputs or inputs[0] != self.bos_token:
                raise ValueError(f"The first token must be the BOS token {self.bos_token!r}, got {inputs[:1]!r}")
            if self.bos_token in inputs[1:]:
                raise ValueError(f"The BOS token {self.bos_token!r} may only come first, found at position "
                                 f"{inputs.index(self.bos_token, 1)} of {inputs!r}")
        if self.pad_token is not None and self.pad_token in inputs:
            raise ValueError(f"The pad token {self.pad_token!r} is not an input token (position "
                             f"{inputs.index(self.pad_token)} of {inputs!r}); pass shorter inputs instead")
        if self.max_seq_len is not None and len(inputs) > self.max_seq_len:
            raise ValueError(
                f"Input of length {len(inputs)} (BOS included) exceeds the maximum {self.max_seq_len} "
                f"(max_seq_len {self.max_seq_len - 1} plus BOS)")
        unknown = [x for x in inputs if x not in self.encoding_map]
        if unknown:
            known = sorted(self.encoding_map, key=lambda v: bases._value_key(v))
            raise ValueError(f"Tokens {unknown!r} are not in the vocabulary {known!r}")
        return [self.encoding_map[x] for x in inputs]

    def encode_batch(self, batch: Sequence[Sequence[Any]]) -> list[list[int]]:
        """A batch of token lists (BOS optional) -> equal-length id rows, BOS first, padded with the pad token.

        An empty token list is just [BOS].

        Raises:
            TypeError: `batch` is not a list of token lists (e.g. one sequence `["a", "b"]` without the outer list).
            ValueError: an empty batch, or a bad sequence (see `encode`).
        """
        if isinstance(batch, (str, bytes)) or not isinstance(batch, (collections.abc.Sequence, np.ndarray)):
            raise TypeError(f"encode expects a batch (a list of token lists), got {type(batch).__name__} {batch!r}")
        if len(batch) == 0:
            raise ValueError("encode got an empty batch; pass at least one token list (e.g. [[]] for BOS alone)")
        rows = []
        for i, xs in enumerate(batch):
            xs = _token_list(xs, f"element {i} of the batch", hint=" (did you forget the outer list: "
                             "encode([tokens]) for one sequence?)")
            rows.append(self.encode(xs if (xs and xs[0] == self.bos_token) else [self.bos_token, *xs]))
        T = max(len(r) for r in rows)
        return [r + [self.pad_encoding] * (T - len(r)) for r in rows]

    def check_ids(self, ids: np.ndarray) -> None:
        """Checks an id array [B, T] as `encode_batch` makes it: not too long, known ids, BOS first and only there,
        pads last.

        Raises:
            ValueError: the first offending row and position.
        """
        ids = np.asarray(ids)
        if ids.ndim != 2 or ids.shape[1] == 0:
            raise ValueError(f"ids must have shape [batch, positions] with at least the BOS position, got {ids.shape}")
        if self.max_seq_len is not None and ids.shape[1] > self.max_seq_len:
            raise ValueError(f"ids with {ids.shape[1]} positions exceed the maximum {self.max_seq_len} (BOS included)")
        problems = [
            ((ids < 0) | (ids >= self.vocab_size), f"ids must lie in 0..{self.vocab_size - 1}"),
            (np.pad(ids[:, :1] != self.bos_encoding, ((0, 0), (0, ids.shape[1] - 1))),
             f"every row must start with the BOS id {self.bos_encoding}"),
            (np.pad(ids[:, 1:] == self.bos_encoding, ((0, 0), (1, 0))), "the BOS id may only come first"),
            (np.pad((ids[:, :-1] == self.pad_encoding) & (ids[:, 1:] != self.pad_encoding), ((0, 0), (1, 0))),
             f"pads (id {self.pad_encoding}) may only follow the sequence, not precede a token"),
        ]
        for bad, rule in problems:
            if bad.any():
                b, t = np.argwhere(bad)[0]
                raise ValueError(f"{rule}: row {b}, position {t} is {ids[b, t]} (row {ids[b].tolist()})")

    def decode(self, encodings: Sequence[int]) -> list[Any]:
        bad = [e for e in encodings if e not in self.decoding_map]
        if bad:
            raise ValueError(f"Ids {bad!r} are not valid encodings")
        return [self.decoding_map[e] for e in encodings]
