"""Command-line options shared by the stages that can use a transformers VLM (`annotate predict`, `caption`)."""

from __future__ import annotations

import argparse
from typing import Any

from builder_scripts.engine.executors import add_engine_arguments
from builder_scripts.engine.stage import Resources


def add_vlm_arguments(parser: argparse.ArgumentParser, purpose: str) -> None:
    """``--vlm MODEL``, ``--frames`` and ``--trust-remote-code``; ``purpose`` completes "<purpose> with a VLM"."""
    parser.add_argument("--vlm", metavar="MODEL", help=f"{purpose} with a transformers chat VLM (local path or hub id)")
    parser.add_argument("--frames", type=int, default=8, help="frames sampled per clip for --vlm (default 8)")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow the VLM's own code (e.g. NVILA)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0,
                        help="GPUs each model worker reserves on --engine ray (e.g. 1, or 0.5 to share one; "
                             "default 0: CPU workers)")
    add_engine_arguments(parser)


def vlm_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for `VLMLabeller` / `VLMCaptioner` from the parsed options."""
    return {"num_frames": args.frames, "trust_remote_code": args.trust_remote_code}


def model_resources(args: argparse.Namespace) -> Resources:
    """What each model worker reserves on the Ray engine."""
    return Resources(gpus=args.gpus_per_worker)
