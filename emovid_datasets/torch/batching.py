"""Batches of equal shapes: a collate that refuses mixed shapes and a batcher that groups clips by shape."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from torch.utils.data import IterableDataset, default_collate


def collate_clips(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors and list the names of ``samples``; ValueError naming the clips if video shapes differ."""
    shapes = {tuple(s["video"].shape) for s in samples}
    if len(shapes) > 1:
        detail = ", ".join(f"{s.get('clip_id')}: {tuple(s['video'].shape)}" for s in samples)
        raise ValueError(f"cannot batch clips of different shapes ({detail}); use resize='bucket' with BucketBatcher")
    return default_collate(samples)


class BucketBatcher(IterableDataset):
    """Group samples by video shape and yield collated batches of ``batch_size`` equal shapes.

    Use it inside the workers, ``DataLoader(BucketBatcher(clips, 4), batch_size=None, num_workers=N)``,
    or over a loader that yields single samples. Partly filled buckets are yielded at the end
    (smaller batches) unless ``drop_last``. Its state is the wrapped dataset's: samples waiting
    in a partly filled bucket when a checkpoint is taken are not replayed after resuming
    (at most (buckets x (batch_size - 1)) samples per worker), like a shuffle buffer's contents.
    """

    def __init__(self, samples: Iterable[dict[str, Any]], batch_size: int, *, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.samples = samples
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self) -> Iterator[dict[str, Any]]:
        buckets: dict[tuple[int, ...], list[dict[str, Any]]] = {}
        for sample in self.samples:
            bucket = buckets.setdefault(tuple(sample["video"].shape), [])
            bucket.append(sample)
            if len(bucket) == self.batch_size:
                yield collate_clips(bucket)
                bucket.clear()
        if not self.drop_last:
            for bucket in buckets.values():
                if bucket:
                    yield collate_clips(bucket)

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the wrapped dataset (reshuffling, random windows)."""
        self.samples.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped dataset's state (see the class docstring for what is not included)."""
        return self.samples.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a `state_dict` (the wrapped samples' position)."""
        self.samples.load_state_dict(state)

