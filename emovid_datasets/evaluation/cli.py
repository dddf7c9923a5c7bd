"""`emovid evaluate`: score generated videos on the EmoVid benchmark and print the Table 3 row(s)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..schema import CONFIGS
from .options import CLIP_TEXT_RULES, PREPROCESSING, SD_REFERENCES, TASKS


def default_classifier(benchmark: str) -> Optional[str]:
    """The EA evaluator saved in a local dataset folder (never its label model), if there is one."""
    from .evaluator import EVALUATOR_DIR

    path = Path(benchmark) / EVALUATOR_DIR
    return str(path) if path.is_dir() else None


def _run(args: argparse.Namespace) -> int:
    from ..loading import load_emovid
    from .evaluate import evaluate, format_table, write_result
    from .evaluator import check_not_leaking
    from .extractors import ClipEncoder, load_classifier, load_video_extractor

    clip = ClipEncoder.load(args.clip_model, args.device, args.preprocessing) if args.clip_model else None
    video = load_video_extractor(args.fvd_model, args.device, num_frames=args.fvd_frames,
                                 resolution=args.fvd_resolution) if args.fvd_model else None
    classifier_spec = args.classifier or default_classifier(args.benchmark)
    classifier = load_classifier(classifier_spec) if classifier_spec else None
    benchmark = load_emovid(args.benchmark, args.config, split=args.split, decode_media=False)
    info = None
    if classifier is not None:
        trained_on = check_not_leaking(classifier.inner, classifier_spec, benchmark["clip_id"])
        info = {"spec": classifier_spec, "sha256": classifier.sha256, "train_clips": trained_on}
    result = evaluate(args.generated, benchmark, args.task, clip=clip, video_features=video, classifier=classifier,
                      text_rule=args.clip_text, sd_reference=args.sd_reference, frame_step=args.frame_step,
                      classifier_info=info)
    path = write_result(result, args.out)
    print(format_table(result))
    print(f"wrote {path}")
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser("evaluate", help="benchmark metrics (FVD, CLIP/SD, Flicker, EA-2/EA-8) of generated videos")
    p.add_argument("--generated", required=True, help="folder of generated videos named <clip_id>.mp4")
    p.add_argument("--benchmark", required=True, help="EmoVid dataset folder or Hub repo id")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--out", required=True, help="output JSON file")
    p.add_argument("--clip-model", help="CLIP folder or hub id (transformers CLIPModel) for CLIP/SD scores")
    p.add_argument("--fvd-model", help="TorchScript I3D file (StyleGAN-V's) or 'module:attr' video feature callable")
    p.add_argument("--classifier", help="EA classifier (default: the evaluator saved in a local benchmark folder, "
                        "evaluator/): a saved labeller (a .skops file or a folder from `emovid-build annotate "
                        "finetune`), a .pkl/.joblib file, or 'module:attr' with predict_proba(list of videos) -> (N, 8); "
                        "one whose metadata shows benchmark clips among its training clips is refused")
    p.add_argument("--fvd-frames", type=int, default=16, help="TorchScript I3D: first N frames per clip")
    p.add_argument("--fvd-resolution", type=int, default=224, help="TorchScript I3D: square input size")
    p.add_argument("--config", default="default", choices=CONFIGS)
    p.add_argument("--split", default="benchmark", help="split holding the benchmark clips")
    p.add_argument("--device", help="torch device (default: cuda when available)")
    p.add_argument("--clip-text", default="emotion-first", choices=CLIP_TEXT_RULES,
                   help="text for the CLIP score; emotion-first keeps the emotion sentence within 77 tokens")
    p.add_argument("--sd-reference", default="first-frame", choices=SD_REFERENCES)
    p.add_argument("--preprocessing", default="clip", choices=PREPROCESSING,
                   help="CLIP image preprocessing: clip (mean/std) or evalcrafter (raw 0-255)")
    p.add_argument("--frame-step", type=int, default=1, help="score every n-th frame with CLIP")
    p.set_defaults(func=_run)
