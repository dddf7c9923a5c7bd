"""`emovid inspect DATASET`: load an EmoVid dataset and print its splits, schema and a few rows."""

from __future__ import annotations

import argparse
from collections import Counter

from .loading import load_emovid
from .schema import CONFIGS


def describe_dataset(path: str, config: str = "default", rows: int = 3) -> str:
    """A short text report: rows per split, emotions per split, and the first rows' metadata."""
    dsd = load_emovid(path, config, decode_media=False)
    lines = [f"EmoVid {path!r}, config {config!r}"]
    for split, ds in dsd.items():
        names = ds.features["emotion"].names
        counts = Counter(names[i] for i in ds["emotion"])
        lines.append(f"  {split}: {len(ds)} clips; " + ", ".join(f"{k} {counts[k]}" for k in names if counts[k]))
        for row in ds.select(range(min(rows, len(ds)))):
            lines.append(
                f"    {row['clip_id']}: {ds.features['source'].int2str(row['source'])}, "
                f"{names[row['emotion']]}, {row['duration']:.1f}s {row['width']}x{row['height']}, "
                f"video {len(row['video']['bytes'])} B, audio {'yes' if row['audio'] else 'none'}; "
                f"{(row['caption'] or '')[:70]}"
            )
    return "\n".join(lines)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser("inspect", help="load a dataset folder or Hub repo and summarise it")
    p.add_argument("dataset", help="dataset folder or Hub repo id")
    p.add_argument("--config", default="default", choices=CONFIGS)
    p.add_argument("--rows", type=int, default=3, help="rows to show per split")
    p.set_defaults(func=lambda a: print(describe_dataset(a.dataset, a.config, a.rows)))
