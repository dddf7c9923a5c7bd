"""Rows to train on, their buckets, the seeded per-epoch batches, and the clips for one batch.

Each epoch walks a seeded permutation of the selected rows and cuts it into global batches (batch size x
processes) of one bucket each, the same on every process, so the data position is just (epoch, rows consumed)
and a resumed run picks up the same rows.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import datasets
import torch

from ..loading import load_emovid
from ..taxonomy import SOURCES
from ..torch.batching import Bucket, BucketRule, group_by_key


def load_rows(dataset: str, config: str = "default", split: str = "train",
              sources: Optional[Sequence[str]] = None) -> datasets.Dataset:
    """The EmoVid rows of ``split`` (media left as bytes), optionally only from ``sources``.

    With the ``default`` config, ``sources`` are read from their own configs, so only their shards are
    downloaded; within another config they filter its rows.
    """
    unknown = sorted(set(sources or ()) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown source(s) {', '.join(unknown)}; expected {', '.join(SOURCES)}")
    if sources and config == "default":
        parts = [load_emovid(dataset, source, split=split, decode_media=False) for source in dict.fromkeys(sources)]
        rows = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    else:
        rows = load_emovid(dataset, config, split=split, decode_media=False)
    if sources and config != "default":
        wanted = {rows.features["source"].str2int(s) for s in sources}
        rows = rows.filter(lambda s: s in wanted, input_columns="source")
    if len(rows) == 0:
        raise ValueError(f"{dataset}: no rows in split {split!r}" + (f" from {', '.join(sources)}" if sources else ""))
    return rows


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The row order of ``epoch``: a permutation of range(n) fixed by (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()


def clip_buckets(rows: datasets.Dataset, rule: BucketRule, fps: float) -> list[Bucket]:
    """Each row's bucket by ``rule`` from its height, width and duration columns (no media decoded)."""
    table = rows.select_columns(["clip_id", "height", "width", "duration"]).to_dict()
    shapes = list(zip(table["height"], table["width"], table["duration"]))
    missing = [clip_id for clip_id, shape in zip(table["clip_id"], shapes) if None in shape]
    if missing:
        raise ValueError(f"{len(missing)} rows lack the height, width or duration that bucketing needs "
                         f"(e.g. {', '.join(missing[:3])})")
    return [rule.bucket_for(height, width, duration, fps) for height, width, duration in shapes]


def epoch_batches(order: Sequence[int], buckets: Sequence[Bucket], batch_size: int, world: int) -> list[list[int]]:
    """The global batches of an epoch: ``batch_size * world`` rows of one bucket each, as they fill along ``order``.

    With several processes a bucket's incomplete last batch is dropped, so every process steps together;
    one process trains it as a smaller batch at the end of the epoch.
    """
    return list(group_by_key(order, buckets.__getitem__, batch_size * world, drop_last=world > 1))


def adapter_clips(rows: datasets.Dataset, bucket: Bucket, *, fps: float, prompt: str = "caption+emotion") -> Any:
    """EmoVid's PyTorch adapter over ``rows`` at ``bucket``'s shape: training tensors in [-1, 1] plus prompts.

    Each clip is scaled to cover the bucket and centre-cropped only where its aspect ratio differs. The trainer
    already gives each process its own rows, so the adapter must not split them again.
    """
    from ..torch import EmoVidClips

    return EmoVidClips(rows, num_frames=bucket.frames, fps=fps, height=bucket.height, width=bucket.width,
                       resize="crop", prompt=prompt, split_by_node=False)
