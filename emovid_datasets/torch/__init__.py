"""PyTorch adapter: stream EmoVid rows into a DataLoader as video diffusion training tensors.

`EmoVidClips` wraps a `datasets` split; `BucketBatcher` / `collate_clips` batch equal shapes.
Inside this package always use absolute ``import torch`` (the package name shadows nothing).
"""

from __future__ import annotations

from .batching import BucketBatcher, collate_clips
from .clips import EmoVidClips, node_rank_and_world_size, to_model_range
from .resize import RESIZE_MODES, default_buckets, nearest_bucket
from .sampling import SHORT_CLIP_POLICIES, WINDOWS

__all__ = [
    "BucketBatcher", "EmoVidClips", "RESIZE_MODES", "SHORT_CLIP_POLICIES", "WINDOWS", "collate_clips",
    "default_buckets", "nearest_bucket", "node_rank_and_world_size", "to_model_range",
]
