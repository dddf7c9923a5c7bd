"""Write a dataset folder's shards: `data/<config>/<split>-NNNNN-of-MMMMM.parquet`.

Runs `EmoVidBuilder` once over the build manifest, then writes each source's clips once
(`data/<source>/`, shards sized by a byte target, at least ``min_shards`` where there are
enough rows, so DataLoader workers and GPUs each get whole files) and the media-free
`data/metadata/`. The `default` config stores nothing of its own: the card lists every
source's shards as its data files. Shards are written atomically and in a fixed order, so re-running over the
same manifest reproduces the same bytes. The card (README.md) is written by the build
stage in `builder_scripts` from `card_metadata` plus measured statistics.
"""

from __future__ import annotations

import contextlib
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import datasets
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData
from tqdm.auto import tqdm

from .atomic import atomic_path, remove_leftovers
from .builder import EmoVidBuilder
from .schema import MEDIA_COLUMNS, METADATA_CONFIG, SPLITS, config_features
from .taxonomy import SOURCES

DEFAULT_MAX_SHARD_SIZE = "500MB"
DEFAULT_MIN_SHARDS = 8
ROW_GROUP_BYTES = 64 << 20
SHARD_NAME = re.compile(r"^(?P<split>[a-z_]+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.parquet$")

BUILD_DIR = "_build"  # the build's own files in a dataset folder (rejects, stats, its cache); never published
CACHE_NAME = "arrow-cache"


def parse_size(size: Union[int, str]) -> int:
    """'500MB' / '2GiB' / 1000 -> bytes (decimal units for MB/GB, binary for MiB/GiB)."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*", size, flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"cannot parse size {size!r}")
    unit = (match.group(2) or "B").upper()
    base = 1024 if "I" in unit else 1000
    power = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit[0]]
    return int(float(match.group(1)) * base**power)


def shard_count(num_rows: int, num_bytes: int, max_shard_bytes: int, min_shards: int) -> int:
    """Shards for a split: enough to stay under the byte target, at least ``min_shards``, at most one per row."""
    if num_rows == 0:
        return 0
    wanted = max(math.ceil(num_bytes / max_shard_bytes), min_shards, 1)
    return min(wanted, num_rows)


@dataclass
class ExportResult:
    """What was written: shard files per (config, split), row counts, and the clips rejected."""

    root: Path
    shards: dict[tuple[str, str], list[Path]] = field(default_factory=dict)
    num_rows: dict[tuple[str, str], int] = field(default_factory=dict)
    num_bytes: dict[tuple[str, str], int] = field(default_factory=dict)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    dataset: Optional[datasets.DatasetDict] = None

    @property
    def configs(self) -> dict[str, list[str]]:
        """Config name -> the splits written for it."""
        out: dict[str, list[str]] = {}
        for config, split in self.shards:
            out.setdefault(config, []).append(split)
        return out


def card_metadata(configs: dict[str, list[str]]) -> DatasetCardData:
    """Card YAML declaring each config's data files and its exact Features (what `load_dataset` reads).

    ``configs`` maps the folders under `data/` to their splits. `default` lists every source folder's
    shards (each clip is stored once); in a release without media it is the metadata.
    """
    sources = [c for c in SOURCES if c in configs] or [METADATA_CONFIG]
    declared: dict[str, dict[str, Any]] = {"default": {"default": True, "data_files": [
        {"split": s, "path": [f"data/{c}/{s}-*" for c in sources if s in configs.get(c, ())]}
        for s in SPLITS if any(s in configs.get(c, ()) for c in sources)]}}
    for config, splits in configs.items():
        declared[config] = {"data_files": [{"split": s, "path": f"data/{config}/{s}-*"} for s in SPLITS if s in splits]}
    card_data = DatasetCardData()
    MetadataConfigs(declared).to_dataset_card_data(card_data)
    datasets.info.DatasetInfosDict({
        config: datasets.DatasetInfo(features=config_features(sources[0] if config == "default" else config),
                                     config_name=config)
        for config in declared
    }).to_dataset_card_data(card_data)
    return card_data


def _write_split(ds: datasets.Dataset, folder: Path, split: str, max_shard_bytes: int, min_shards: int,
                 bar: tqdm) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    total = shard_count(len(ds), ds.data.nbytes, max_shard_bytes, min_shards)
    bar.total = (bar.total or 0) + total
    bar.refresh()
    written: list[Path] = []
    for index in range(total):
        shard = ds.shard(num_shards=total, index=index, contiguous=True)
        avg_row = max(shard.data.nbytes // max(len(shard), 1), 1)
        path = folder / f"{split}-{index:05d}-of-{total:05d}.parquet"
        with atomic_path(path) as tmp:
            shard.to_parquet(str(tmp), batch_size=max(1, ROW_GROUP_BYTES // avg_row))
        written.append(path)
        bar.update()
    return written


def write_shards(
    manifest: Union[str, Path],
    out_dir: Union[str, Path],
    *,
    max_shard_size: Union[int, str] = DEFAULT_MAX_SHARD_SIZE,
    min_shards: int = DEFAULT_MIN_SHARDS,
    metadata_only: bool = False,
    progress: bool = True,
) -> ExportResult:
    """Build each source's shards and the metadata config from ``manifest`` into ``out_dir/data``.

    ``metadata_only``: write only `data/metadata/` (a release whose media users rebuild from the origins).
    Shows one progress bar over the shards; `datasets`' own per-step bars and messages are silenced meanwhile.
    Whatever else is under `data/` (an older layout, a source or split that no longer has rows) is removed,
    so the folder only ever holds this build.
    """
    out_dir = Path(out_dir)
    max_bytes = parse_size(max_shard_size)
    remove_leftovers(out_dir / "data")
    # The Arrow cache (a full copy with media) lives in the output's own work folder, not the system temp
    # folder, so a killed build leaves it where the next build finds and removes it.
    cache = out_dir / BUILD_DIR / CACHE_NAME
    shutil.rmtree(cache, ignore_errors=True)
    bar = tqdm(total=0, desc="build shards", unit="shard", disable=not progress)
    try:
        with _quiet_datasets():
            builder = EmoVidBuilder(config_name="default", manifest=str(manifest), cache_dir=str(cache))
            builder.download_and_prepare(download_mode=datasets.DownloadMode.FORCE_REDOWNLOAD)
            full = builder.as_dataset()
            result = ExportResult(root=out_dir, rejects=list(builder.rejects))
            for split in (s for s in SPLITS if s in full):
                for source in () if metadata_only else SOURCES:
                    part = full[split].filter(lambda sources, label: [s == label for s in sources],
                                              input_columns="source", batched=True,
                                              fn_kwargs={"label": SOURCES.index(source)})
                    _write_config(result, part, source, split, max_bytes, min_shards, bar)
                meta = full[split].remove_columns(list(MEDIA_COLUMNS))
                # A few small files: the byte target alone decides, there are no loader workers to feed.
                _write_config(result, meta, METADATA_CONFIG, split, max_bytes, 1, bar)
            _remove_unwritten(out_dir / "data", result)
            # Keep the metadata in memory for statistics; the cache is removed below.
            result.dataset = datasets.DatasetDict()
            for split in full:
                meta = full[split].remove_columns(list(MEDIA_COLUMNS))
                result.dataset[split] = datasets.Dataset.from_dict(meta.to_dict(), features=meta.features)
    finally:
        bar.close()
        shutil.rmtree(cache, ignore_errors=True)
    return result


def _write_config(result: ExportResult, ds: datasets.Dataset, config: str, split: str, max_bytes: int,
                  min_shards: int, bar: tqdm) -> None:
    """Write one (config, split) when it has rows, recording its shards, rows and bytes in ``result``."""
    if len(ds) == 0:
        return
    paths = _write_split(ds, result.root / "data" / config, split, max_bytes, min_shards, bar)
    result.shards[(config, split)] = paths
    result.num_rows[(config, split)] = len(ds)
    result.num_bytes[(config, split)] = sum(p.stat().st_size for p in paths)


def _remove_unwritten(data: Path, result: ExportResult) -> None:
    """Delete shards under ``data`` that this build did not write, and the folders left empty."""
    written = {p for paths in result.shards.values() for p in paths}
    for shard in data.glob("*/*.parquet"):
        if shard not in written and SHARD_NAME.match(shard.name):
            shard.unlink()
    for folder in data.glob("*/"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Silence `datasets`' progress bars and info messages inside the block, restoring them after."""
    from datasets.utils import logging as ds_logging

    bars, verbosity = ds_logging.is_progress_bar_enabled(), ds_logging.get_verbosity()
    ds_logging.disable_progress_bar()
    ds_logging.set_verbosity_error()
    try:
        yield
    finally:
        ds_logging.set_verbosity(verbosity)
        if bars:
            ds_logging.enable_progress_bar()
