"""Small generated media and datasets for tests (PyAV and Pillow; nothing downloaded)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import av
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


def marker_frame(width: int, height: int) -> np.ndarray:
    """A blue (H, W, 3) frame whose top-left quarter is red: shows which way up, and how wide, a frame is shown."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[...] = (20, 40, 220)
    frame[: height // 2, : width // 2] = (230, 30, 30)
    return frame


def make_pyav_video(path: Union[str, Path], *, size: tuple[int, int] = (64, 48), frames: int = 12, fps: int = 12,
                    sar: Optional[Fraction] = None, rotation: Optional[int] = None, faststart: bool = False,
                    audio_rate: Optional[int] = None, color: Optional[Callable[[int], np.ndarray]] = None) -> Path:
    """An H.264 MP4 written with PyAV itself, with what `Mp4Writer` never writes: a sample aspect ratio (an
    anamorphic DVD), a display matrix (``rotation`` degrees counter-clockwise, as `VideoFrame.rotation` reads
    it: -90 is a phone's "rotate 90"), the index up front (``faststart``, as streamed files have it); with a
    440 Hz mono tone at ``audio_rate``. ``color(i)`` draws frame ``i`` at ``size`` (default: `marker_frame`)."""
    width, height = size
    color = color or (lambda i: marker_frame(width, height))
    with av.open(str(path), "w", options={"movflags": "+faststart"} if faststart else {}) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"threads": "1", "x264-params": "cpu-independent=1"}
        if sar is not None:
            video.codec_context.sample_aspect_ratio = sar
        if rotation is not None:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=audio_rate, layout="mono") if audio_rate else None
        per_frame = audio_rate // fps if audio_rate else 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(color(i)), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
            if sound is not None:
                t = np.arange(i * per_frame, (i + 1) * per_frame) / audio_rate
                chunk = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                                   format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = audio_rate, i * per_frame
                out.mux(sound.encode(chunk))
        out.mux(video.encode(None))
        if sound is not None:
            out.mux(sound.encode(None))
    return Path(path)


def noise_frames(size: tuple[int, int] = (64, 48), seed: int = 0) -> Callable[[int], np.ndarray]:
    """Frame ``i`` of random noise (bytes spread evenly over a file, and no two frames alike)."""
    width, height = size
    return lambda i: np.random.default_rng((seed, i)).integers(0, 256, (height, width, 3), dtype=np.uint8)


def cut_off(path: Union[str, Path], src: Union[str, Path], fraction: float) -> Path:
    """The first ``fraction`` of ``src``'s bytes written to ``path``: an interrupted download."""
    data = Path(src).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * fraction)])
    return Path(path)
