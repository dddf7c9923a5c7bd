"""Batches of equal shapes: the bucketing rule, a collate that refuses mixed shapes and a batcher that groups by shape."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Iterator, TypeVar

from torch.utils.data import IterableDataset, default_collate

from .resize import Size, default_buckets, nearest_bucket
from .sampling import check_num_frames

T = TypeVar("T")
# Clip lengths (s) whose frame counts are buckets by default: EmoVid's stickers are mostly 1-3 s, its films 4 s and up.
SHORT_BUCKET_SECONDS: tuple[int, ...] = (1, 2, 3, 4)
# Slack (in frames) against float32 durations: a clip whose length lies on a frame boundary is never counted long.
FRAME_SLACK = 1e-3


@dataclass(frozen=True, order=True)
class Bucket:
    """One training shape: ``frames`` x ``height`` x ``width``."""

    frames: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"


def frames_within(duration: float, fps: float) -> int:
    """Frames resampling at ``fps`` (output frame i shows time i / fps) takes from a ``duration`` s clip before it ends."""
    return max(0, math.ceil(duration * fps - FRAME_SLACK))


def default_bucket_frames(num_frames: int, fps: float) -> list[int]:
    """``num_frames`` and, below it, the longest 4k+1 counts that clips of `SHORT_BUCKET_SECONDS` fill at ``fps``."""
    short = [4 * math.floor((frames_within(s, fps) - 1) / 4) + 1 for s in SHORT_BUCKET_SECONDS]
    return sorted({n for n in short if 1 < n < num_frames} | {num_frames})


@dataclass(frozen=True)
class BucketRule:
    """Where a clip goes: the size nearest its aspect ratio, and the longest frame count it fills without looping.

    A clip shorter than every frame count takes the shortest (its short-clip policy fills the rest).
    """

    sizes: tuple[Size, ...]
    frame_counts: tuple[int, ...]

    def __post_init__(self) -> None:
        sizes = tuple(dict.fromkeys((int(h), int(w)) for h, w in self.sizes))
        if not sizes or any(h < 1 or w < 1 for h, w in sizes):
            raise ValueError(f"bucket sizes must be a non-empty list of positive (height, width), got {self.sizes!r}")
        if not self.frame_counts:
            raise ValueError("bucket frame counts must not be empty")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "frame_counts", tuple(sorted({check_num_frames(n) for n in self.frame_counts})))

    @classmethod
    def default(cls, height: int, width: int, num_frames: int, fps: float, multiple: int = 16) -> "BucketRule":
        """`default_buckets` (height x width, its transpose, a square of that area, sides multiples of
        ``multiple``) and `default_bucket_frames`."""
        return cls(tuple(default_buckets(height, width, multiple)), tuple(default_bucket_frames(num_frames, fps)))

    def size_for(self, height: int, width: int) -> Size:
        """The (height, width) bucket nearest a frame's aspect ratio, compared in log space."""
        return nearest_bucket(height, width, self.sizes)

    def frames_for(self, available: int) -> int:
        """The longest frame count of at most ``available`` frames, else the shortest."""
        fitting = [n for n in self.frame_counts if n <= available]
        return fitting[-1] if fitting else self.frame_counts[0]

    def bucket_for(self, height: int, width: int, duration: float, fps: float) -> Bucket:
        """The bucket of a (height, width) clip of ``duration`` seconds resampled at ``fps``."""
        return Bucket(self.frames_for(frames_within(duration, fps)), *self.size_for(height, width))


def group_by_key(items: Iterable[T], key: Callable[[T], Hashable], size: int, *,
                 drop_last: bool = False) -> Iterator[list[T]]:
    """Lists of ``size`` items of one key, each as soon as it fills; then the partly filled ones unless ``drop_last``
    (in the order their keys first came)."""
    groups: dict[Hashable, list[T]] = {}
    for item in items:
        group = groups.setdefault(key(item), [])
        group.append(item)
        if len(group) == size:
            yield list(group)
            group.clear()
    if not drop_last:
        yield from (group for group in groups.values() if group)


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
        for group in group_by_key(self.samples, lambda s: tuple(s["video"].shape), self.batch_size,
                                  drop_last=self.drop_last):
            yield collate_clips(group)

    def set_epoch(self, epoch: int) -> None:
        """Forward the epoch to the wrapped dataset (reshuffling, random windows)."""
        self.samples.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """The wrapped dataset's state (see the class docstring for what is not included)."""
        return self.samples.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a `state_dict` (the wrapped samples' position)."""
        self.samples.load_state_dict(state)
