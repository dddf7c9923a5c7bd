"""The build's per-clip measuring cost, one decoding pass against three, and the Ray engine against local.

    .venv/bin/python benchmarks/pipeline_throughput.py ATTRIBUTES_STAGE [--limit 60] [--workers 2]

ATTRIBUTES_STAGE is a stage folder listing clips, e.g. ``emovid_demo/work/attributes`` after
`emovid-build demo emovid_demo`. Printed, all in this process:

1. CPU seconds per clip for what attributes, the feature labeller's predict and the factual caption need:
   before, three separate decodes (probe + colour attributes; `clip_features`; the caption's motion) and
   after, the single pass (`measure_clip`) with predict and caption reading its manifest values.
2. Clips per second of the `attributes` stage on the local engine (``--workers`` processes) and on Ray Data
   (a local instance with as many CPUs), the same clips into fresh folders, and their ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from builder_scripts.engine.executors import LocalExecutor, RayExecutor, use_engine  # noqa: E402
from builder_scripts.engine.manifest import read_manifest  # noqa: E402
from builder_scripts.stages.attributes import run_attributes  # noqa: E402
from emovid_datasets.color import color_attributes  # noqa: E402
from emovid_datasets.labelling.features import clip_features, measure_clip, motion_features  # noqa: E402
from emovid_datasets.media import probe, sample_frames  # noqa: E402


def cpu_seconds(work, clips) -> float:
    """CPU time (user + system, this process) per clip of ``work`` over ``clips``."""
    before = os.times()
    for clip in clips:
        work(clip)
    after = os.times()
    return ((after.user - before.user) + (after.system - before.system)) / max(1, len(clips))


def three_passes(path: str) -> None:
    """What the stages decoded before the single pass: attributes, the labeller's features, the caption's motion."""
    probe(path)
    color_attributes(path)
    clip_features(path)
    motion_features(sample_frames(path, 8, width=64, height=48))


def stage_rate(rows, executor, workers: int) -> float:
    """Clips per second of the attributes stage on ``executor`` into a fresh folder."""
    with tempfile.TemporaryDirectory() as out, use_engine(executor):
        started = time.monotonic()
        run_attributes(rows, out, workers=workers, progress=False)
        return len(rows) / (time.monotonic() - started)


def main() -> None:
    """Print the two comparisons."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stage")
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    rows = [{"clip_id": r["clip_id"], "video_path": r["video_path"]} for r in read_manifest(args.stage)][:args.limit]
    paths = [r["video_path"] for r in rows]

    before = cpu_seconds(three_passes, paths)
    after = cpu_seconds(measure_clip, paths)
    print(f"measuring, CPU s/clip over {len(paths)} clips: three passes {before:.3f}, one pass {after:.3f} "
          f"(one pass = {after / before:.2f}x the CPU)")

    local = stage_rate(rows, LocalExecutor(), args.workers)
    import ray

    ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="ERROR")
    try:
        stage_rate(rows[:args.workers], RayExecutor(), args.workers)  # warm: workers started, modules imported
        on_ray = stage_rate(rows, RayExecutor(), args.workers)
    finally:
        ray.shutdown()
    print(f"attributes stage, {len(rows)} clips on {args.workers} CPUs: local {local:.2f} clips/s, "
          f"ray {on_ray:.2f} clips/s (ray = {on_ray / local:.2f}x local)")


if __name__ == "__main__":
    main()
