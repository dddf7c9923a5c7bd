"""Speed of the paper's colour attributes (`color_attributes`) against a plain PyAV decode of the same clip.

    .venv/bin/python benchmarks/colour_speed.py [VIDEO] [--repeat 5]

VIDEO defaults to ../shared/media/cockatoo.mp4 (h264 1280x720, 280 frames). In this process, alternately,
best wall time of ``--repeat`` runs each:
  * decode: every frame decoded with PyAV (threaded, as `iter_frames` does), none converted;
  * frames: `iter_frames` with step 20, i.e. decode plus RGB conversion of the frames measured;
  * now: `color_attributes(VIDEO)` (integer histograms of the pixels' keys, float64 tables at the end);
  * before: the former per-pixel float32 path, `rgb_to_hsv` then sin/cos of every pixel's hue.
Prints each one's seconds and its ratio to decode, and the largest relative gap between now's and
before's raw values (before is float32 per pixel, so ~1e-8).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Callable

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from emovid_datasets.color import COLOUR_STEP, color_attributes, rgb_to_hsv  # noqa: E402
from emovid_datasets.media.frames import iter_frames  # noqa: E402

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "media" / "cockatoo.mp4"


def plain_decode(path: str) -> None:
    """Decode every frame of the first video stream, converting none."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for _ in container.decode(stream):
            pass


def sampled_frames(path: str) -> None:
    """Decode the clip and convert the frames `color_attributes` measures to RGB, measuring nothing."""
    for _ in iter_frames(path, step=COLOUR_STEP):
        pass


def float_attributes(path: str) -> dict[str, float]:
    """The raw attributes the way they were computed before: float32 HSV per pixel, sin/cos of every hue."""
    sin = cos = saturation = value = 0.0
    pixels = 0
    for frame in iter_frames(path, step=COLOUR_STEP):
        h, s, v = rgb_to_hsv(frame.array)
        rad = np.deg2rad(h, dtype=np.float64)
        sin += float(np.sin(rad).sum())
        cos += float(np.cos(rad).sum())
        saturation += float(s.sum(dtype=np.float64))
        value += float(v.sum(dtype=np.float64))
        pixels += h.size
    return {"hue_raw": (math.degrees(math.atan2(sin, cos)) + 360.0) % 360.0,
            "colorfulness_raw": saturation / pixels, "brightness_raw": value / pixels}


def best_times(jobs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall seconds of each job over ``repeat`` rounds, the jobs run in turn within each round."""
    best = dict.fromkeys(jobs, math.inf)
    for _ in range(repeat):
        for name, job in jobs.items():
            started = time.perf_counter()
            job()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def main() -> None:
    """Print the timings and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", default=str(DEFAULT_VIDEO))
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    path = args.video

    now, before = color_attributes(path), float_attributes(path)  # also warms caches and the lookup tables
    gap = max(abs(now[k] - v) / max(abs(v), 1e-12) for k, v in before.items())
    times = best_times({"decode": lambda: plain_decode(path), "frames": lambda: sampled_frames(path),
                        "now": lambda: color_attributes(path), "before": lambda: float_attributes(path)}, args.repeat)
    print(f"{Path(path).name}: {now['frames_sampled']} frames measured, best of {args.repeat}")
    for name, label in [("decode", "plain PyAV decode"), ("frames", "decode + RGB of every 20th frame"),
                        ("now", "color_attributes"), ("before", "before: float32 per pixel")]:
        print(f"  {label:34s} {times[name]:6.3f} s  {times[name] / times['decode']:5.2f}x decode")
    print(f"  color_attributes is {times['before'] / times['now']:.1f}x faster than before; "
          f"raw values differ by {gap:.1e} relative")


if __name__ == "__main__":
    main()
