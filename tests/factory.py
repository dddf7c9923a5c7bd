"""Small generated media and datasets for tests (PyAV and Pillow; nothing downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from emovid_datasets.media import Mp4Writer
from emovid_datasets.taxonomy import EMOTIONS, SOURCES

Color = tuple[int, int, int]


def make_video(
    path: Union[str, Path],
    *,
    frames: int = 12,
    fps: float = 12,
    size: tuple[int, int] = (64, 48),
    color: Union[Color, Callable[[int], np.ndarray]] = (200, 40, 40),
    audio: bool = True,
    audio_rate: int = 16000,
) -> Path:
    """An MP4 of solid ``color`` (or ``color(i)`` -> (H, W, 3) uint8 per frame) with an optional 440 Hz tone."""
    w, h = size
    with Mp4Writer(path, width=w, height=h, fps=fps, audio_rate=audio_rate if audio else None,
                   audio_layout="mono") as writer:
        for i in range(frames):
            frame = color(i) if callable(color) else np.full((h, w, 3), color, dtype=np.uint8)
            writer.write_frame(frame)
        if audio:
            n = int(audio_rate * frames / fps)
            t = np.arange(n) / audio_rate
            writer.write_audio((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :])
    return Path(path)


def make_gif(path: Union[str, Path], *, frames: int = 8, size: tuple[int, int] = (48, 48),
             colors: Sequence[Color] = ((255, 0, 0), (0, 0, 255)), duration_ms: int = 100) -> Path:
    """An animated GIF cycling through ``colors``."""
    images = [Image.new("RGB", size, colors[i % len(colors)]) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return Path(path)


def make_manifest(root: Union[str, Path], *, per_cell: int = 1, benchmark_per_cell: int = 0,
                  frames: int = 12, size: tuple[int, int] = (64, 48)) -> Path:
    """A build manifest with ``per_cell`` train (+ benchmark) clips for every (source, emotion).

    Colour encodes the emotion (hue steps of 45 degrees), stickers have no audio, movie clips
    carry sequence ids. Returns the manifest path (root/manifest.parquet).
    """
    root = Path(root)
    rows = []
    for s, source in enumerate(SOURCES):
        for e, emotion in enumerate(EMOTIONS):
            for k in range(per_cell + benchmark_per_cell):
                clip_id = f"{source}-{emotion}-{k:02d}"
                hue_rgb = np.array(Image.new("HSV", (1, 1), (e * 32, 200, 120 + 15 * s)).convert("RGB"))[0, 0]
                video = make_video(root / "clips" / f"{clip_id}.mp4", frames=frames, size=size,
                                   color=tuple(int(c) for c in hue_rgb), audio=source != "sticker")
                rows.append({
                    "clip_id": clip_id, "source": source, "emotion": emotion,
                    "split": "benchmark" if k >= per_cell else "train",
                    "video_path": str(video), "caption": f"A {source} clip in colour {e}.",
                    "label_source": "human", "human_votes": [emotion, emotion, "none"],
                    "label_confidence": 2 / 3, "origin": f"test:{clip_id}",
                    "sequence_id": "film-0" if source == "movie" else None,
                    "sequence_index": (e * (per_cell + benchmark_per_cell) + k) if source == "movie" else None,
                })
    path = root / "manifest.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def make_dataset(root: Union[str, Path], *, min_shards: int = 2, evaluator: bool = True,
                 **manifest_kwargs) -> Path:
    """A complete EmoVid dataset folder (shards + card) built from `make_manifest`; returns its path."""
    from builder_scripts.publish.build import build_dataset

    root = Path(root)
    manifest = make_manifest(root / "raw", **manifest_kwargs)
    build_dataset(manifest, root / "dataset", min_shards=min_shards, evaluator=evaluator, progress=False)
    return root / "dataset"




def corrupt_clip(dataset: Union[str, Path], clip_id: str) -> None:
    """Overwrite ``clip_id``'s embedded video with bytes no decoder accepts, in every config's shards."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for shard in Path(dataset).glob("data/*/*.parquet"):
        table = pq.read_table(shard)
        rows = table.to_pylist()
        if not any(row["clip_id"] == clip_id for row in rows):
            continue
        for row in rows:
            if row["clip_id"] == clip_id:
                row["video"] = {"bytes": b"\x00not a video" * 64, "path": None}
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
