"""Write a dataset folder's shards: `data/<config>/<split>-NNNNN-of-MMMMM.parquet`.

Runs `EmoVidBuilder` once over the build manifest, then writes every config (`default` and
one per source) and split as Parquet shards sized by a byte target, with at least
``min_shards`` shards where there are enough rows (so DataLoader workers and GPUs each get
whole files). Shards are written atomically and in a fixed order, so re-running over the
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
from typing import Any, Iterator, Optional, Sequence, Union

import datasets
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCardData
from tqdm.auto import tqdm

from .atomic import atomic_path, remove_leftovers
from .builder import EmoVidBuilder
from .schema import CONFIGS, FEATURES, SPLITS
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
    """Card YAML declaring each config's data files and the exact Features (what `load_dataset` reads)."""
    card_data = DatasetCardData()
    MetadataConfigs(
        {
            config: {
                "data_files": [{"split": s, "path": f"data/{config}/{s}-*"} for s in SPLITS if s in splits],
                **({"default": True} if config == "default" else {}),
            }
            for config, splits in configs.items()
        }
    ).to_dataset_card_data(card_data)
    datasets.info.DatasetInfosDict(
        {config: datasets.DatasetInfo(features=FEATURES, config_name=config) for config in configs}
    ).to_dataset_card_data(card_data)
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
    _remove_stale_shards(folder, split, keep=written)
    return written


def _remove_stale_shards(folder: Path, split: str, keep: Sequence[Path] = ()) -> None:
    """Delete ``split``'s shards in ``folder`` that this build did not write (e.g. when the shard count fell)."""
    for stale in folder.glob(f"{split}-*.parquet"):
        if stale not in keep and SHARD_NAME.match(stale.name):
            stale.unlink()


def write_shards(
    manifest: Union[str, Path],
    out_dir: Union[str, Path],
    *,
    max_shard_size: Union[int, str] = DEFAULT_MAX_SHARD_SIZE,
    min_shards: int = DEFAULT_MIN_SHARDS,
    progress: bool = True,
) -> ExportResult:
    """Build every config and split from ``manifest`` into ``out_dir/data`` and return what was written.

    Shows one progress bar over the shards; `datasets`' own per-step bars and messages are silenced meanwhile.

    Shards of a config or split that no longer has rows (a source or the benchmark dropped since the last
    build) are removed, so the folder only ever holds this build.
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
            for config in CONFIGS:
                for split in SPLITS:
                    folder = out_dir / "data" / config
                    ds = full[split] if split in full else None
                    if ds is not None and config != "default":
                        ds = ds.filter(lambda sources, label: [s == label for s in sources], input_columns="source",
                                       batched=True, fn_kwargs={"label": SOURCES.index(config)})
                    if ds is None or len(ds) == 0:
                        _remove_stale_shards(folder, split)
                        continue
                    result.shards[(config, split)] = _write_split(ds, folder, split, max_bytes, min_shards, bar)
                    result.num_rows[(config, split)] = len(ds)
                    result.num_bytes[(config, split)] = sum(p.stat().st_size for p in result.shards[(config, split)])
            # Keep the metadata (no media) in memory for statistics; the cache is removed below.
            result.dataset = datasets.DatasetDict()
            for split in full:
                meta = full[split].remove_columns(["video", "audio"])
                result.dataset[split] = datasets.Dataset.from_dict(meta.to_dict(), features=meta.features)
    finally:
        bar.close()
        shutil.rmtree(cache, ignore_errors=True)
    return result


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
