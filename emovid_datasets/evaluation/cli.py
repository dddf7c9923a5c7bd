"""`emovid evaluate` (score one or several runs of generated videos: Table 3) and `emovid benchmark generate`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..schema import CONFIGS
from .options import CLIP_TEXT_RULES, DTYPES, PREPROCESSING, SD_REFERENCES, TASKS


def default_classifier(benchmark: str) -> Optional[str]:
    """The EA evaluator saved in a local dataset folder (never its label model), if there is one."""
    from .evaluator import EVALUATOR_DIR

    path = Path(benchmark) / EVALUATOR_DIR
    return str(path) if path.is_dir() else None


def parse_runs(values: list[str]) -> dict[str, str]:
    """``NAME=DIR`` values (a bare existing DIR is named by its folder) -> {name: dir}; ValueError on a repeated name."""
    runs: dict[str, str] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or Path(value).is_dir():
            name, folder = Path(value).name or value, value
        if name in runs:
            raise ValueError(f"--generated: run name {name!r} given twice")
        runs[name] = folder
    return runs


def _run(args: argparse.Namespace) -> int:
    from ..loading import load_emovid
    from .evaluate import evaluate, format_table, write_result
    from .evaluator import check_not_leaking
    from .extractors import ClipEncoder, load_classifier, load_video_extractor
    from .report import build_report, format_report, report_paths, write_report

    single = len(args.generated) == 1 and "=" not in args.generated[0]  # the one-folder form: its JSON as before
    runs = parse_runs(args.generated)
    if not single:
        report_paths(args.out)
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
    results = {name: evaluate(folder, benchmark, args.task, clip=clip, video_features=video, classifier=classifier,
                              text_rule=args.clip_text, sd_reference=args.sd_reference, frame_step=args.frame_step,
                              classifier_info=info) for name, folder in runs.items()}
    if single:
        path = write_result(next(iter(results.values())), args.out)
        print(format_table(next(iter(results.values()))))
        print(f"wrote {path}")
        return 0
    report = build_report(results, args.task)
    paths = write_report(report, args.out)
    print(format_report(report))
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def _generate(args: argparse.Namespace) -> int:
    from ..training.generate import parse_lora
    from .generation import benchmark_clips, generate_benchmark, write_prompts

    if bool(args.model) != bool(args.out):
        raise ValueError("benchmark generate: give --model and --out together (or only --prompts-out)")
    if not args.model and not args.prompts_out:
        raise ValueError("benchmark generate: give --model and --out, or --prompts-out")
    clips = benchmark_clips(args.benchmark, args.config, args.split, args.limit)
    if args.prompts_out:
        print(f"wrote {write_prompts(clips, args.prompts_out, args.task, args.seed)} ({len(clips)} clips)")
    if not args.model:
        return 0
    overrides = {"num_frames": args.num_frames, "height": args.height, "width": args.width, "steps": args.steps,
                 "guidance": args.guidance, "fps": args.fps}
    run = generate_benchmark(clips, args.out, model=args.model, task=args.task, loras=[parse_lora(s) for s in args.lora],
                             revision=args.revision, overrides=overrides, negative_prompt=args.negative_prompt,
                             seed=args.seed, dtype=args.dtype, device=args.device,
                             benchmark={"dataset": args.benchmark, "config": args.config, "split": args.split})
    where = f"process {run.rank} of {run.world}: " if run.world > 1 else ""
    print(f"{where}wrote {len(run.written)} videos, skipped {len(run.skipped)} already in {args.out}"
          + (f", {len(run.failed)} failed (unreadable first frame)" if run.failed else ""))
    return 1 if run.failed else 0


def _add_generate(subparsers: argparse._SubParsersAction) -> None:
    b = subparsers.add_parser("benchmark", help="run a video model over the benchmark prompts (then `evaluate`)")
    sub = b.add_subparsers(dest="benchmark_command", required=True, metavar="COMMAND")
    g = sub.add_parser("generate", help="generate DIR/<clip_id>.mp4 for every benchmark clip with a diffusers model",
                       description="Every benchmark clip's prompt (caption + the emotion sentence), and for i2v its "
                                   "first frame, through one diffusers video pipeline; a fixed seed per clip; resumable; "
                                   "data-parallel under torchrun / accelerate launch (RANK, WORLD_SIZE).")
    g.add_argument("--benchmark", required=True, help="EmoVid dataset folder or Hub repo id")
    g.add_argument("--task", required=True, choices=TASKS)
    g.add_argument("--model", help="diffusers video pipeline folder or Hub id (Wan 2.1/2.2, CogVideoX, HunyuanVideo, "
                                   "LTX, ...), or tiny-wan / tiny-cogvideox (random, offline)")
    g.add_argument("--out", help="folder for <clip_id>.mp4 and generation.json")
    g.add_argument("--revision", help="Hub revision (branch, tag or commit) of --model")
    g.add_argument("--lora", action="append", default=[], metavar="DIR[:WEIGHT]",
                   help="LoRA folder or file with an optional weight; repeat to mix LoRAs")
    g.add_argument("--num-frames", type=int, help="default: the model family's recommendation")
    g.add_argument("--height", type=int, help="default: the model family's recommendation")
    g.add_argument("--width", type=int, help="default: the model family's recommendation")
    g.add_argument("--steps", type=int, help="denoising steps (default: the model family's recommendation)")
    g.add_argument("--guidance", type=float, help="guidance scale (default: the model family's recommendation)")
    g.add_argument("--fps", type=float, help="frame rate written (default: the model family's)")
    g.add_argument("--negative-prompt")
    g.add_argument("--seed", type=int, default=0, help="base of the per-clip seeds (another value: another sample)")
    g.add_argument("--limit", type=int, help="only the first N clips (in clip id order)")
    g.add_argument("--dtype", choices=tuple(DTYPES), help="default: the family's (bf16; fp32 for the tiny models)")
    g.add_argument("--device", help="torch device (default: cuda:LOCAL_RANK when available)")
    g.add_argument("--config", default="default", choices=CONFIGS)
    g.add_argument("--split", default="benchmark", help="split holding the benchmark clips")
    g.add_argument("--prompts-out", metavar="FILE", help="also write FILE (JSON lines: clip_id, prompt, seed, "
                   "first_frame) and, for i2v, the first frames as PNG, for models outside diffusers")
    g.set_defaults(func=_generate)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `evaluate` and `benchmark generate` with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser("evaluate", help="benchmark metrics (FVD, CLIP/SD, Flicker, EA-2/EA-8) of generated videos")
    p.add_argument("--generated", required=True, nargs="+", metavar="NAME=DIR",
                   help="runs to score, each a folder of videos named <clip_id>.mp4: NAME=DIR for one row per run "
                        "in one Table 3 with the paper's rows (JSON at --out, .md and .html beside it); a single "
                        "bare DIR prints its per-source/emotion table and writes its JSON as before")
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
    _add_generate(subparsers)
