"""Stage `attributes`: probe each clip and measure the paper's colour attributes.

Reads the manifests of one or more earlier stage folders (rows with ``clip_id`` and
``video_path``) and writes the same rows plus duration, fps, frame count, size, audio
presence, colourfulness/brightness/hue (rounded and raw), the label features and motion to
``OUT/manifest.parquet``, all from one decoding pass (`labelling.features.measure_clip`):
`annotate predict` and `caption` read them instead of decoding the clip again.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence, Union

from builder_scripts.engine.executors import add_engine_arguments, with_engine
from builder_scripts.engine.runner import StageSummary, exit_status, load_inputs, run_stage
from builder_scripts.engine.stage import FunctionStage
from emovid_datasets.labelling.features import measure_clip

STAGE = "attributes"


def measure(row: dict[str, Any]) -> dict[str, Any]:
    """One clip's probe values, colour attributes, label features and motion added to its manifest row."""
    return {**row, **measure_clip(row["video_path"])}


def run_attributes(inputs: Sequence[dict[str, Any]], out_dir: Union[str, Path], *, workers: int = 1,
                   progress: bool = True) -> StageSummary:
    """Measure every input clip not yet in ``out_dir``'s manifest."""
    return run_stage(FunctionStage(STAGE, measure), inputs, out_dir, workers=workers, progress=progress)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser(STAGE, help="probe clips and measure colour attributes (paper Eq. 1-3)")
    p.add_argument("inputs", nargs="+", help="stage folders whose manifest.parquet lists the clips")
    p.add_argument("--out", required=True, help="output stage folder")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    add_engine_arguments(p)
    p.set_defaults(func=with_engine(lambda a: exit_status(run_attributes(load_inputs(a.inputs), a.out, workers=a.workers))))
