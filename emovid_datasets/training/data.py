"""Rows to train on, the seeded per-epoch order, and the clips for one stretch of that order.

Training walks a seeded permutation of the selected rows, one global batch (batch size x processes) at a
time, so the data position is just (epoch, rows consumed) and a resumed run picks up the same rows.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import datasets
import torch

from ..loading import load_emovid
from ..taxonomy import SOURCES


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


def local_rows(order: Sequence[int], start: int, batch_size: int, rank: int, world: int) -> list[list[int]]:
    """This process's batches from ``order[start:]``: global batch g gives it rows [rank*B, (rank+1)*B).

    With several processes an incomplete last global batch is dropped, so every process steps together.
    """
    per_step = batch_size * world
    batches = []
    for begin in range(start, len(order), per_step):
        chunk = order[begin:begin + per_step]
        if world > 1 and len(chunk) < per_step:
            break
        batches.append(list(chunk[rank * batch_size:(rank + 1) * batch_size]))
    return batches


def adapter_clips(rows: datasets.Dataset, *, num_frames: int, height: int, width: int, fps: float,
                  prompt: str = "caption+emotion") -> Any:
    """EmoVid's PyTorch adapter over ``rows``: training tensors in [-1, 1] plus prompts.

    The trainer already gives each process its own rows, so the adapter must not split them again.
    """
    from ..torch import EmoVidClips

    return EmoVidClips(rows, num_frames=num_frames, fps=fps, height=height, width=width, resize="crop",
                       prompt=prompt, split_by_node=False)
