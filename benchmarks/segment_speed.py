"""Cut-detection speed and accuracy of `builder_scripts.stages.shot_detection.detect_cuts` against PySceneDetect's defaults.

    .venv/bin/python benchmarks/segment_speed.py [VIDEO] [--cuts 285,378,553] [--repeat 3]

VIDEO defaults to ../shared/media/big_buck_bunny_480p_30s.mp4, whose hard cuts (285, 378, 553; a
fade-in over frames 0-48) are the default ``--cuts``. The detectors run on the same file in this
process, alternately, best wall time of ``--repeat`` runs each:
  * baseline: ``scenedetect.detect(VIDEO, ContentDetector())`` (OpenCV backend, auto-downscale to 256 px);
  * ``scenedetect.detect(VIDEO, ConfirmedCutDetector(), backend="pyav")``: our detector behind
    PySceneDetect's own PyAV backend (full-size BGR conversion, then resize), for comparison;
  * ours: ``detect_cuts(VIDEO)`` (PyAV threaded decoding, FFmpeg area-downscale to ~128 px straight
    from YUV, `ConfirmedCutDetector`).
Prints frames/s, x realtime, the speed ratio ours/baseline, and each detector's cut precision and
recall against ``--cuts`` (a detected cut within ``--tolerance`` frames of a true one counts once).
Then the whole job, every shot kept: `split_shots` (one decoding pass, cut + re-encode with PyAV,
single-threaded x264) against PySceneDetect's way, ``detect`` + ``split_video_ffmpeg`` (one ffmpeg
process per scene re-encoding from a seek, x264 with its default threads; skipped without ffmpeg).
"""

from __future__ import annotations

import argparse
import logging
import resource
import tempfile
import time
from pathlib import Path
from typing import Callable

import av.logging
import scenedetect

from builder_scripts.stages.shot_cutting import split_shots
from builder_scripts.stages.shot_detection import ConfirmedCutDetector, detect_cuts
from emovid_datasets.media import probe

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "media" / "big_buck_bunny_480p_30s.mp4"
BBB_CUTS = "285,378,553"


def scenedetect_cuts(path: Path, detector: scenedetect.SceneDetector, backend: str = "opencv") -> list[int]:
    """Cut frames from ``scenedetect.detect`` (its defaults: OpenCV backend, auto-downscale)."""
    scenes = scenedetect.detect(str(path), detector, backend=backend)
    av.logging.set_level(None)  # its PyAV backend turns FFmpeg's console logging on, process-wide
    return [start.frame_num for start, _ in scenes[1:]]


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads) and its finished children (ffmpeg): a fairer
    measure than wall time on a busy machine."""
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))


def precision_recall(found: list[int], truth: list[int], tolerance: int) -> tuple[float, float]:
    """Greedy one-to-one matching of detected cuts to true cuts within ``tolerance`` frames."""
    unmatched, hits = list(truth), 0
    for cut in found:
        near = [t for t in unmatched if abs(t - cut) <= tolerance]
        if near:
            unmatched.remove(min(near, key=lambda t: abs(t - cut)))
            hits += 1
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    return precision, recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--cuts", default=None, help=f"true cut frames, comma-separated (default for BBB: {BBB_CUTS})")
    parser.add_argument("--tolerance", type=int, default=2, help="frames a detected cut may be off (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per detector; the best time counts")
    args = parser.parse_args()
    logging.getLogger("pyscenedetect").setLevel(logging.ERROR)
    cuts_arg = args.cuts if args.cuts is not None else (BBB_CUTS if args.video.name == DEFAULT_VIDEO.name else "")
    truth = [int(c) for c in cuts_arg.split(",") if c.strip()]
    info = probe(args.video)
    print(f"{args.video.name}: {info.num_frames} frames, {info.width}x{info.height}, {info.fps:.3f} fps, "
          f"{info.duration:.1f} s; true cuts {truth or 'not given'}")

    runners: dict[str, Callable[[], list[int]]] = {
        "PySceneDetect defaults": lambda: scenedetect_cuts(args.video, scenedetect.ContentDetector()),
        "ours via its PyAV backend": lambda: scenedetect_cuts(args.video, ConfirmedCutDetector(), "pyav"),
        "detect_cuts": lambda: detect_cuts(args.video),
    }
    best = {name: float("inf") for name in runners}
    cpu = dict(best)
    found: dict[str, list[int]] = {}
    for _ in range(args.repeat):
        for name, run in runners.items():
            start, start_cpu = time.perf_counter(), cpu_seconds()
            found[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], cpu_seconds() - start_cpu)
    for name in runners:
        fps = info.num_frames / best[name]
        line = (f"{name:>26}: {best[name]:6.2f} s  {fps:7.1f} frames/s  {info.duration / best[name]:5.1f}x realtime"
                f"  ({cpu[name]:.2f} CPU s)")
        line += f"  cuts {found[name]}"
        if truth:
            precision, recall = precision_recall(found[name], truth, args.tolerance)
            line += f"  precision {precision:.2f} recall {recall:.2f} (within {args.tolerance} frames)"
        print(line)
    baseline = "PySceneDetect defaults"
    print(f"speed ratio detect_cuts / {baseline}: {best[baseline] / best['detect_cuts']:.2f}x wall time, "
          f"{cpu[baseline] / cpu['detect_cuts']:.2f}x CPU time")

    jobs: dict[str, Callable[[str], int]] = {
        "split_shots": lambda tmp: len(split_shots(args.video, tmp, "bench", min_seconds=1e-3, max_seconds=1e9).rows),
    }
    if scenedetect.is_ffmpeg_available():
        def detect_and_split(tmp: str) -> int:
            scenes = scenedetect.detect(str(args.video), scenedetect.ContentDetector(), start_in_scene=True)
            if scenedetect.split_video_ffmpeg(str(args.video), scenes, output_dir=tmp):
                raise RuntimeError("split_video_ffmpeg failed")
            return len(scenes)
        jobs["detect + split_video_ffmpeg"] = detect_and_split
    elapsed = {}
    for name, job in jobs.items():
        with tempfile.TemporaryDirectory() as tmp:
            start, start_cpu = time.perf_counter(), cpu_seconds()
            clips = job(tmp)
            elapsed[name] = time.perf_counter() - start
            print(f"{name:>26}: {elapsed[name]:6.2f} s  {info.num_frames / elapsed[name]:7.1f} frames/s  "
                  f"{info.duration / elapsed[name]:5.1f}x realtime  ({cpu_seconds() - start_cpu:.2f} CPU s)  {clips} clips")
    if len(elapsed) == 2:
        print(f"speed ratio split_shots / detect + split_video_ffmpeg: "
              f"{elapsed['detect + split_video_ffmpeg'] / elapsed['split_shots']:.2f}x wall time")


if __name__ == "__main__":
    main()
