"""Throughput of `emovid_datasets.torch.EmoVidClips` against plain PyAV decoding, in the same process.

    .venv/bin/python benchmarks/adapter_throughput.py DATASET_DIR [--num-frames 81 --fps 16 --height 96 --width 128]

DATASET_DIR is an EmoVid dataset folder, e.g. from `emovid-build demo OUT_DIR` (use OUT_DIR's dataset
folder) or `tests/factory.make_dataset`. Baselines, on the same rows:
  * "PyAV window" (the baseline): decode each clip's video from its embedded bytes up to the end of the adapter's
    window (num_frames / fps seconds) and convert every decoded frame to a uint8 RGB array, native size;
  * "PyAV full clip": the same over the whole clip;
  * "PyAV window, single-threaded": the window with one decoder thread and one swscale thread, as the
    adapter does by default (PyAV's automatic threading starts threads per clip and per frame, which
    costs more than it gains for small frames or busy cores).
The adapter runs in-process (num_workers=0) and through a DataLoader with 1 and 2 workers (batch_size=None,
worker start-up included), and with uint8 output (``video_dtype=torch.uint8``: 4x less to pass between processes).
Ratios are adapter clips/s over the "PyAV window" clips/s; the target is >= 0.9
with 1 worker, and higher with 2 where cores allow. The torchcodec path runs when torchcodec loads.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Callable, Iterable

import av
import datasets
import torch
from torch.utils.data import DataLoader

from emovid_datasets.loading import load_emovid
from emovid_datasets.media import open_input
from emovid_datasets.torch import EmoVidClips


def pyav_clip(video: dict, seconds: float, *, threaded: bool = True) -> int:
    """Decode ``video`` up to ``seconds`` into uint8 RGB arrays (what a hand-written loader does); frames kept.

    ``threaded``: PyAV's automatic decoder and swscale threading, else one thread for each.
    """
    arrays = []
    with open_input(video) as container:
        stream = container.streams.video[0]
        if threaded:
            stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.time is not None and frame.time > seconds:
                break
            arrays.append(frame.to_ndarray(format="rgb24", threads=0 if threaded else 1))
    return len(arrays)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (DataLoader workers are joined after each epoch)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def measure(runs: dict[str, Callable[[], Iterable[int]]], repeat: int) -> dict[str, tuple[float, float, int, int]]:
    """Best (wall s, CPU s, clips, frames) per run; runs take turns ``repeat`` times, in a rotating order,
    so load spikes and warm-up hit them alike."""
    best: dict[str, tuple[float, float, int, int]] = {name: (float("inf"), 0.0, 0, 0) for name in runs}
    names = list(runs)
    for turn in range(repeat):
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            run = runs[name]
            start, cpu = time.perf_counter(), cpu_seconds()
            frames = list(run())
            result = (time.perf_counter() - start, cpu_seconds() - cpu, len(frames), sum(frames))
            best[name] = min(best[name], result)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="EmoVid dataset folder")
    parser.add_argument("--config", default="default")
    parser.add_argument("--split", default="train")
    parser.add_argument("--num-frames", type=int, default=81)
    parser.add_argument("--fps", type=float, default=16)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3, help="turns per run, interleaved; the best is kept")
    args = parser.parse_args()

    datasets.disable_progress_bars()
    rows = load_emovid(args.dataset, args.config, split=args.split, decode_media=False)
    videos = rows.select_columns(["video"])
    seconds = args.num_frames / args.fps
    options = dict(num_frames=args.num_frames, fps=args.fps, height=args.height, width=args.width)
    print(f"{len(rows)} clips from {args.dataset} ({args.config}/{args.split}); adapter output "
          f"{args.num_frames} frames at {args.fps:g} fps, {args.height}x{args.width}, best of {args.repeat}")

    def adapter(num_workers: int | None, decode: str = "pyav", dtype: torch.dtype = torch.float32,
                ) -> Callable[[], Iterable[int]]:
        clips = EmoVidClips(rows, **options, decode=decode, video_dtype=dtype)
        if num_workers is None:
            return lambda: (s["video"].shape[1] for s in clips)
        loader = DataLoader(clips, batch_size=None, num_workers=num_workers)
        return lambda: (s["video"].shape[1] for s in loader)

    runs: dict[str, Callable[[], Iterable[int]]] = {
        "PyAV window (baseline)": lambda: (pyav_clip(r["video"], seconds) for r in videos),
        "PyAV full clip": lambda: (pyav_clip(r["video"], float("inf")) for r in videos),
        "PyAV window, single-threaded": lambda: (pyav_clip(r["video"], seconds, threaded=False) for r in videos),
        "adapter, in-process": adapter(None),
    }
    for n in args.workers:
        runs[f"adapter, {n} worker{'s' if n > 1 else ''}"] = adapter(n)
    most = max(args.workers)
    runs[f"adapter uint8, {most} worker{'s' if most > 1 else ''}"] = adapter(most, dtype=torch.uint8)
    try:
        runs["adapter, torchcodec, in-process"] = adapter(None, "torchcodec")
    except ImportError as exc:
        print(f"torchcodec path skipped: {str(exc).split('(')[0].strip()}")
    results = measure(runs, args.repeat)

    base_wall, base_cpu, base_clips, _ = results["PyAV window (baseline)"]
    print(f"{'run':34s} {'clips/s':>8s} {'frames/s':>9s} {'vs baseline':>12s} {'CPU ms/clip':>12s} {'vs baseline':>12s}")
    for name, (wall, cpu, clips, frames) in results.items():
        speed = (clips / wall) / (base_clips / base_wall)
        cost = (base_cpu / base_clips) / (cpu / clips)
        print(f"{name:34s} {clips / wall:8.1f} {frames / wall:9.0f} {speed:11.2f}x {1000 * cpu / clips:12.1f} {cost:11.2f}x")
    print("frames/s: uint8 frames decoded (baselines) or output frames (adapter); wall time includes worker start-up; "
          "CPU ms/clip counts this process and its workers, its ratio is baseline cost / run cost "
          f"(less sensitive to other load on the machine); PyAV {av.__version__}, {os.cpu_count()} CPUs")

if __name__ == "__main__":
    main()
