"""Load EmoVid from a local dataset folder or a Hub repo id (a thin layer over `datasets.load_dataset`)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Optional, Union

import datasets

from .schema import CONFIGS, MEDIA_COLUMNS

AnyDataset = Union[datasets.Dataset, datasets.DatasetDict, datasets.IterableDataset, datasets.IterableDatasetDict]


def without_media_decoding(ds: AnyDataset, *, keep_video_decoding: bool = False) -> AnyDataset:
    """Return ``ds`` with `video`/`audio` as raw ``{bytes, path}`` dicts (no torchcodec needed).

    ``keep_video_decoding`` leaves the video column to `datasets`' own (torchcodec) decoding.
    Columns that are absent or already in the wanted state are left alone.
    """
    splits = list(ds.values()) if isinstance(ds, dict) else [ds]
    features = (splits[0].features if splits else None) or {}
    for column in MEDIA_COLUMNS:
        feature = features.get(column)
        decode = keep_video_decoding and column == "video"
        if isinstance(feature, (datasets.Video, datasets.Audio)) and feature.decode != decode:
            ds = ds.cast_column(column, type(feature)(decode=decode))
    return ds


def local_cache_dir(folder: Union[str, Path]) -> Path:
    """A cache folder keyed on a local dataset folder's path and the size and time of its card and shards.

    `datasets` 5.2 keys the cache of a local folder on its name and card only, so two builds in folders
    with the same name (or a rebuild in place) would read each other's cached Arrow files.
    """
    root = Path(folder).resolve()
    files = sorted([root / "README.md", *root.glob("data/**/*.parquet")])
    digest = hashlib.sha256(str(root).encode())
    for f in files:
        if f.exists():
            stat = f.stat()
            digest.update(f"{f.relative_to(root)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return Path(datasets.config.HF_DATASETS_CACHE) / "emovid-local" / digest.hexdigest()[:16]


def load_emovid(
    path_or_repo_id: str,
    config: str = "default",
    split: Optional[str] = None,
    streaming: bool = False,
    *,
    decode_media: bool = True,
    **kwargs: Any,
) -> AnyDataset:
    """`datasets.load_dataset(path_or_repo_id, config, split=..., streaming=...)` for an EmoVid folder or repo.

    ``decode_media=False`` keeps the media as embedded bytes, which is what the PyTorch adapter
    decodes with PyAV; decoding through `datasets` needs torchcodec and system FFmpeg libraries.
    """
    if config not in CONFIGS:
        raise ValueError(f"unknown EmoVid config {config!r}; expected one of {', '.join(CONFIGS)}")
    if Path(path_or_repo_id).is_dir() and "cache_dir" not in kwargs:
        kwargs["cache_dir"] = str(local_cache_dir(path_or_repo_id))
    ds = datasets.load_dataset(path_or_repo_id, config, split=split, streaming=streaming, **kwargs)
    return ds if decode_media else without_media_decoding(ds)
