"""Labelled torch datasets built on a compiled model's encoding (for training).

Teacher data (for the LLC of compiled models) is built by `datasets.teacher.teacher_problem`.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

IGNORE = -100  # label of positions without a defined output (BOS, padding, RASP None)


class LabelledSequences(Dataset):
    """Sequences encoded with the compiled model's input encoder, labelled by the reference function.

    Each item is (ids [T], labels [T], mask [T]) with BOS at position 0 (label ignored). Categorical labels are
    output ids of the compiled output encoder (long, `IGNORE` where undefined); numerical labels are floats
    (mask False where undefined).

    Raises:
        ValueError: an empty sequence list, an unknown token, or a sequence longer than max_seq_len.
    """

    def __init__(self, spec, seqs: Sequence[list], model=None):
        if not seqs:
            raise ValueError("no sequences")
        model = model or spec.compile()
        self.encoder, self.out_encoder = model.input_encoder, model.output_encoder
        self.numerical = spec.numerical
        self.pad_id = self.encoder.pad_encoding
        self.items = []
        for xs in seqs:
            spec.check_tokens(list(xs))
            ids = torch.tensor(self.encoder.encode([self.encoder.bos_token, *xs]))
            ref = [None] + list(spec.reference(list(xs)))
            mask = torch.tensor([r is not None for r in ref])
            if self.numerical:
                labels = torch.tensor([float(r) if r is not None else 0.0 for r in ref], dtype=torch.float64)
            else:
                labels = torch.tensor([self.out_encoder.encoding_map[r] if r is not None else IGNORE for r in ref])
            self.items.append((ids, labels, mask))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def pad_collate(pad_id: int):
    """Collate (ids, labels, mask) items of different lengths: ids padded with `pad_id`, mask False there."""

    def collate(items):
        T = max(len(ids) for ids, _, _ in items)
        ids = torch.full((len(items), T), pad_id, dtype=torch.long)
        labels = torch.zeros((len(items), T), dtype=items[0][1].dtype)
        if labels.dtype == torch.long:
            labels.fill_(IGNORE)
        mask = torch.zeros((len(items), T), dtype=torch.bool)
        for i, (a, b, m) in enumerate(items):
            ids[i, : len(a)], labels[i, : len(b)], mask[i, : len(m)] = a, b, m
        return ids, labels, mask

    return collate


def loader(dataset: LabelledSequences, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    """A DataLoader with the padding collate and a seeded shuffle."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=pad_collate(dataset.pad_id),
                      generator=torch.Generator().manual_seed(seed))


def labelled_tensors(spec, seqs: Sequence[list], model=None) -> tuple:
    """(ids [n, T], labels [n, T], mask [n, T]) of `LabelledSequences(spec, seqs, model)` as one padded batch."""
    ds = LabelledSequences(spec, seqs, model)
    return pad_collate(ds.pad_id)([ds[i] for i in range(len(ds))])
