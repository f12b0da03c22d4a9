"""The loaders over a split: `make_dataloader` (training: seeded shuffling, workers, prefetching, pinned
memory), `make_eval_loader` (in order, the first `max_examples`), and `first_examples`. Every batch is a
`collate_examples` batch, whatever the dataset (`ImageDataset`, `StreamingImageDataset`, `TensorDictDataset`).
"""

from __future__ import annotations

import itertools

import torch

from ..validation import check_int
from .transforms import collate_examples

__all__ = ["first_examples", "make_dataloader", "make_eval_loader"]


def make_dataloader(dataset: torch.utils.data.Dataset, batch_size: int, shuffle: bool = False, seed: int = 0,
                    num_workers: int = 0, drop_last: bool = False, prefetch_factor: int | None = None,
                    pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` whose shuffling and worker seeds come from a generator seeded with ``seed``.

    Batches are `collate_examples` batches ``{"pixel_values": (B, C, H, W) float32, "labels": (B,) int64}``.
    Workers stay alive between epochs (``persistent_workers``); ``prefetch_factor`` batches per worker are
    read ahead.
    """
    check_int("batch_size", batch_size, minimum=1)
    check_int("num_workers", num_workers, minimum=0)
    workers = {"prefetch_factor": prefetch_factor or 2, "persistent_workers": True} if num_workers else {}
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers, drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed), collate_fn=collate_examples, pin_memory=pin_memory, **workers,
    )


def make_eval_loader(dataset, batch_size: int, max_examples: int | None = None) -> torch.utils.data.DataLoader:
    """A loader over the first ``max_examples`` examples (all when ``None``) of a map-style or iterable dataset,
    in order."""
    if isinstance(dataset, torch.utils.data.IterableDataset):
        if max_examples is not None:
            dataset = _Take(dataset, max_examples)
    elif max_examples is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(max_examples, len(dataset))))
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_examples)


class _Take(torch.utils.data.IterableDataset):
    """The first ``count`` examples of an iterable dataset."""

    def __init__(self, dataset, count: int) -> None:
        self.dataset, self.count = dataset, count

    def __iter__(self):
        return itertools.islice(iter(self.dataset), self.count)


def first_examples(dataset, count: int) -> dict[str, torch.Tensor]:
    """The first ``count`` examples of a split (map-style or iterable) as one batch."""
    return next(iter(make_eval_loader(dataset, count, max_examples=count)))
