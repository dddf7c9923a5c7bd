"""Stage `caption`: write a caption for every clip, in batches, resumably.

``emovid-build caption IN --out OUT`` uses the offline `FactualCaptioner` (what the pipeline measured:
source, duration, sound, light, colour, motion, sticker title and tags); ``--vlm MODEL`` uses a
`transformers` chat VLM instead (the paper used NVILA-8B-Video). Clips that already have a caption
keep it unless ``--overwrite``. A killed run resumes with the clips not yet in ``OUT``.
"""

from __future__ import annotations

import argparse
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from builder_scripts.engine.executors import with_engine
from builder_scripts.engine.manifest import reject
from builder_scripts.engine.runner import StageSummary, exit_status, load_inputs, run_batched_stage
from builder_scripts.engine.stage import ModelStage, Outcome, Resources
from builder_scripts.stages.vlm_options import add_vlm_arguments, model_resources, vlm_settings
from emovid_datasets.options import add_dataclass_arguments

log = logging.getLogger("emovid.build")
STAGE = "caption"


@dataclass(frozen=True)
class CaptionOptions:
    """The config's ``captions:`` keys and the command's options."""

    batch_size: int = field(default=8, metadata={"help": "clips per captioner call and checkpoint"})


class CaptionStage(ModelStage):
    """Caption a batch of clips with the model (a captioner); ``overwrite`` replaces captions clips already have."""

    name = STAGE

    def __init__(self, *, overwrite: bool = False, **model: Any) -> None:
        super().__init__(**model)
        self.overwrite = overwrite

    def process_batch(self, clips: list[dict[str, Any]]) -> Outcome:
        """Caption the clips that need it in one call; if the batch fails, caption clip by clip so one bad clip
        is rejected with its reason while the rest go on."""
        need = [c for c in clips if self.overwrite or not str(c.get("caption") or "").strip()]
        need_ids = {c["clip_id"] for c in need}
        keep = [dict(c) for c in clips if c["clip_id"] not in need_ids]
        try:
            texts = self.model.caption(need) if need else []
            return Outcome(rows=keep + [{**c, "caption": t, "captioner": self.model.name}
                                        for c, t in zip(need, texts)])
        except Exception as exc:  # noqa: BLE001 - find the clip(s) at fault below
            if len(need) == 1:
                return Outcome(rows=keep, rejects=[reject(STAGE, f"{type(exc).__name__}: {exc}",
                                                          clip_id=need[0]["clip_id"], origin=need[0].get("origin"))])
        outcome = Outcome(rows=keep)
        for clip in need:
            single = self.process_batch([clip])
            outcome.rows += single.rows
            outcome.rejects += single.rejects
        return outcome


def run_captions(rows: Sequence[dict[str, Any]], out_dir: Union[str, Path], *, captioner: Any = None,
                 load: Optional[Callable[[], Any]] = None, resources: Resources = Resources(),
                 batch_size: int = CaptionOptions.batch_size,
                 overwrite: bool = False, progress: bool = True) -> StageSummary:
    """Caption every clip of ``rows`` not yet in ``out_dir``: with ``captioner``, with ``load()`` once per
    worker, or with the offline `FactualCaptioner` when neither is given."""
    if captioner is None and load is None:
        from emovid_datasets.labelling import FactualCaptioner

        load = FactualCaptioner
    stage = CaptionStage(model=captioner, load=load, overwrite=overwrite, resources=resources)
    return run_batched_stage(stage, rows, out_dir, batch_size=batch_size, progress=progress)


def _cmd_caption(args: argparse.Namespace) -> int:
    load = None
    if args.vlm:
        from emovid_datasets.labelling import VLMCaptioner

        load = functools.partial(VLMCaptioner, args.vlm, **vlm_settings(args))
    return exit_status(run_captions(load_inputs([args.input]), args.out, load=load, resources=model_resources(args),
                                    batch_size=args.batch_size, overwrite=args.overwrite))


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser(STAGE, help="caption every clip (offline factual captions, or --vlm MODEL)")
    p.add_argument("input", help="stage folder whose manifest lists the clips")
    p.add_argument("--out", required=True, help="output stage folder")
    add_vlm_arguments(p, "caption")
    add_dataclass_arguments(p, CaptionOptions)
    p.add_argument("--overwrite", action="store_true", help="replace captions the clips already have")
    p.set_defaults(func=with_engine(_cmd_caption))
