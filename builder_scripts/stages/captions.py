"""Stage `caption`: write a caption for every clip, in batches, resumably.

``emovid-build caption IN --out OUT`` uses the offline `FactualCaptioner` (what the pipeline measured:
source, duration, sound, light, colour, motion, sticker title and tags); ``--vlm MODEL`` uses a
`transformers` chat VLM instead (the paper used NVILA-8B-Video). Clips that already have a caption
keep it unless ``--overwrite``. A killed run resumes with the clips not yet in ``OUT``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Sequence, Union

from builder_scripts.engine.manifest import reject
from builder_scripts.engine.runner import Outcome, StageSummary, load_inputs, run_batched_stage
from builder_scripts.stages.vlm_options import add_vlm_arguments, vlm_settings

log = logging.getLogger("emovid.build")
STAGE = "caption"


def caption_batch(captioner: Any, clips: list[dict[str, Any]], *, overwrite: bool = False) -> Outcome:
    """Caption the clips that need it in one call; if the batch fails, caption clip by clip so one bad clip is
    rejected with its reason while the rest go on."""
    need = [c for c in clips if overwrite or not str(c.get("caption") or "").strip()]
    need_ids = {c["clip_id"] for c in need}
    keep = [dict(c) for c in clips if c["clip_id"] not in need_ids]
    try:
        texts = captioner.caption(need) if need else []
        return Outcome(rows=keep + [{**c, "caption": t, "captioner": captioner.name} for c, t in zip(need, texts)])
    except Exception as exc:  # noqa: BLE001 - find the clip(s) at fault below
        if len(need) == 1:
            return Outcome(rows=keep, rejects=[reject(STAGE, f"{type(exc).__name__}: {exc}", clip_id=need[0]["clip_id"],
                                                      origin=need[0].get("origin"))])
    outcome = Outcome(rows=keep)
    for clip in need:
        single = caption_batch(captioner, [clip], overwrite=overwrite)
        outcome.rows += single.rows
        outcome.rejects += single.rejects
    return outcome


def run_captions(rows: Sequence[dict[str, Any]], out_dir: Union[str, Path], *, captioner: Any = None,
                 batch_size: int = 8, overwrite: bool = False, progress: bool = True) -> StageSummary:
    """Caption every clip of ``rows`` not yet in ``out_dir`` (offline `FactualCaptioner` by default)."""
    if captioner is None:
        from emovid_datasets.labelling import FactualCaptioner

        captioner = FactualCaptioner()
    return run_batched_stage(STAGE, rows, lambda clips: caption_batch(captioner, clips, overwrite=overwrite),
                             out_dir, batch_size=batch_size, progress=progress)


def _cmd_caption(args: argparse.Namespace) -> int:
    captioner = None
    if args.vlm:
        from emovid_datasets.labelling import VLMCaptioner

        captioner = VLMCaptioner(args.vlm, **vlm_settings(args))
    run_captions(load_inputs([args.input]), args.out, captioner=captioner, batch_size=args.batch_size,
                 overwrite=args.overwrite)
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser(STAGE, help="caption every clip (offline factual captions, or --vlm MODEL)")
    p.add_argument("input", help="stage folder whose manifest lists the clips")
    p.add_argument("--out", required=True, help="output stage folder")
    add_vlm_arguments(p, "caption")
    p.add_argument("--batch-size", type=int, default=8, help="clips per captioner call and checkpoint (default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace captions the clips already have")
    p.set_defaults(func=_cmd_caption)
