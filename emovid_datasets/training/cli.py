"""`emovid train` (Wan2.1 LoRA on EmoVid) and `emovid generate` (video / sticker with mixed LoRAs)."""

from __future__ import annotations

import argparse

from ..schema import CONFIGS
from ..taxonomy import EMOTIONS, SOURCES

_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def _train(args: argparse.Namespace) -> int:
    from .config import config_from_args
    from .trainer import train

    result = train(config_from_args(args))
    if result.lora_path is not None:  # the main process writes the LoRA; the others have nothing to report
        print(f"trained to step {result.global_step}; LoRA: {result.lora_path}; "
              f"ComfyUI/original keys: {result.comfyui_path}" + (f"; {result.validation}" if result.validation else ""))
    return 0


def _generate(args: argparse.Namespace) -> int:
    import torch

    from .generate import generate, parse_lora

    result = generate(args.model, args.prompt, args.output, loras=[parse_lora(s) for s in args.lora],
                      emotion=args.emotion, image=args.image, num_frames=args.num_frames, height=args.height,
                      width=args.width, steps=args.steps, guidance=args.guidance,
                      negative_prompt=args.negative_prompt, seed=args.seed, fps=args.fps, sticker=args.sticker,
                      dtype=getattr(torch, _DTYPES[args.dtype]), device=args.device)
    print(f"wrote {result.video}" + (f" and {result.gif}" if result.gif else ""))
    return 0


def _shape_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-frames", type=int, default=81, help="frames per clip, 4k+1 (default 81 = 5 s at 16 fps)")
    p.add_argument("--height", type=int, default=480, help="multiple of 16, of 32 for TI2V-5B (default 480)")
    p.add_argument("--width", type=int, default=832, help="multiple of 16, of 32 for TI2V-5B (default 832)")
    p.add_argument("--fps", type=float, default=16, help="frame rate (default 16, Wan2.1's)")
    p.add_argument("--seed", type=int, default=42)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `train` and `generate`."""
    t = subparsers.add_parser("train", help="train a Wan2.1 LoRA (t2v or i2v) on EmoVid",
                              description="Precompute a latent cache, then train a LoRA with flow matching. "
                                          "Clips train in buckets of size and length (--buckets, --bucket-frames; "
                                          "by default from --height, --width and --num-frames), one bucket a batch. "
                                          "Multi-GPU: accelerate launch -m emovid_datasets.cli train ...")
    t.add_argument("--task", required=True, choices=("t2v", "i2v"))
    t.add_argument("--model", required=True,
                   help="Wan2.1 / Wan2.2 (A14B, TI2V-5B) diffusers folder or Hub id, or 'tiny', 'tiny-wan22', "
                        "'tiny-wan22-ti2v' (random, offline)")
    t.add_argument("--data", required=True, help="EmoVid dataset folder or Hub repo id")
    t.add_argument("--output", required=True, help="folder for the LoRA, checkpoints, logs and cache")
    t.add_argument("--config", default="default", choices=CONFIGS, help="dataset config")
    t.add_argument("--split", default="train")
    t.add_argument("--sources", nargs="+", choices=SOURCES, help="train only on these sources")
    t.add_argument("--limit", type=int, help="use only the first N selected clips (quick trials)")
    t.add_argument("--prompt", default="caption+emotion", help="prompt preset or template (see EmoVidClips)")
    t.add_argument("--rank", type=int, default=32)
    t.add_argument("--alpha", type=float, default=32)
    t.add_argument("--image-kv", action="store_true", help="i2v: also adapt the image key/value projections")
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--weight-decay", type=float, default=1e-2)
    t.add_argument("--lr-scheduler", default="constant", help="diffusers scheduler name (constant, cosine, ...)")
    t.add_argument("--lr-warmup-steps", type=int, default=0)
    t.add_argument("--max-grad-norm", type=float, help="clip gradients to this norm (off by default, as DiffSynth)")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--batch-size", type=int, default=1)
    t.add_argument("--max-steps", type=int, help="stop after this many optimiser steps")
    t.add_argument("--gradient-accumulation", type=int, default=1)
    t.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    t.add_argument("--gradient-checkpointing", action="store_true")
    t.add_argument("--timestep-sampling", default="diffsynth", choices=("diffsynth", "uniform", "logit_normal"))
    t.add_argument("--shift", type=float, default=5.0, help="timestep shift (DiffSynth's Wan default 5)")
    t.add_argument("--expert", choices=("high", "low", "both"),
                   help="Wan2.2 A14B: train the high-noise expert (levels at or above the boundary), the low-noise one "
                        "(below it) or both, one LoRA each (default both)")
    t.add_argument("--boundary-ratio", type=float,
                   help="Wan2.2 A14B: the noise level (0-1) splitting the experts (default: the model's own, "
                        "0.875 T2V / 0.9 I2V)")
    _shape_args(t)
    t.add_argument("--buckets", nargs="+", metavar="HxW",
                   help="sizes to train at, multiples of 16 (32 for TI2V-5B); each clip goes to the one nearest its aspect ratio and is "
                        "scaled to cover it, cropping only the aspect difference (default: HEIGHTxWIDTH, its "
                        "transpose and a square of about that area, rounded to the model's multiple: 480x832 832x480 624x624)")
    t.add_argument("--bucket-frames", nargs="+", type=int, metavar="N",
                   help="frame counts to train at, each 4k+1; each clip takes the longest it fills at --fps without "
                        "looping (default: --num-frames and, below it, the longest that clips of 1, 2, 3 and 4 s fill: "
                        "81 61 45 29 13 at 16 fps)")
    t.add_argument("--resume", nargs="?", const="latest",
                   help="continue from the latest checkpoint in --output, or from the given checkpoint folder")
    t.add_argument("--overwrite", action="store_true",
                   help="start afresh in an --output that holds an earlier run's checkpoints, removing them "
                        "(without it, or --resume, such an --output is refused)")
    t.add_argument("--no-cache", action="store_true", help="encode clips on the fly instead of caching them first")
    t.add_argument("--cache-dir", help="latent cache folder (default OUTPUT/cache)")
    t.add_argument("--checkpoint-every", type=int, default=500, help="optimiser steps between checkpoints")
    t.add_argument("--keep-checkpoints", type=int, default=3)
    t.add_argument("--validate-every", type=int, metavar="N",
                   help="at step 0 and every N optimiser steps (and the last), render the validation prompts with the "
                        "current LoRA into OUTPUT/samples/step-N/ (MP4 + GIF, a fixed seed per prompt), score them "
                        "(EA-8/EA-2 with DATASET/evaluator/, flicker, CLIP) into OUTPUT/validation.csv, TensorBoard "
                        "and OUTPUT/samples/index.html")
    t.add_argument("--validation-prompts", nargs="+", metavar="PROMPT",
                   help="'EMOTION: caption' (the emotion sentence is appended and EA scores against EMOTION) or plain "
                        "text (not EA-scored); default: the dataset's benchmark prompts, else built-in ones")
    t.add_argument("--validation-per-emotion", type=int, default=1,
                   help="default prompts: how many per emotion (default 1: 8 videos)")
    t.add_argument("--validation-frames", type=int, default=17, help="frames per validation video, 4k+1 (default 17)")
    t.add_argument("--validation-steps", type=int, default=10, help="denoising steps per validation video (default 10)")
    t.add_argument("--validation-clip-model", help="CLIP folder or hub id: also score validation videos with CLIP")
    t.set_defaults(func=_train)

    g = subparsers.add_parser("generate", help="generate a video (and a GIF sticker) with Wan2.1 and LoRAs")
    g.add_argument("--model", required=True,
                   help="Wan2.1 / Wan2.2 diffusers folder or Hub id, or 'tiny', 'tiny-wan22', 'tiny-wan22-ti2v'")
    g.add_argument("--lora", action="append", default=[], metavar="DIR[:WEIGHT]",
                   help="LoRA folder or file with an optional weight; repeat to mix LoRAs. Wan2.2 A14B: a training "
                        "folder's *_high_noise / *_low_noise files go into their experts, any other LoRA into both")
    g.add_argument("--prompt", required=True)
    g.add_argument("--emotion", choices=EMOTIONS, help="append the paper's emotion sentence to the prompt")
    g.add_argument("--image", help="first frame: image-to-video (needs an I2V model)")
    g.add_argument("--output", required=True, help="MP4 path")
    g.add_argument("--sticker", action="store_true", help="also write a looping GIF next to the MP4")
    g.add_argument("--steps", type=int, default=50, help="denoising steps (Wan: 50 t2v, 40 i2v)")
    g.add_argument("--guidance", type=float, default=5.0)
    g.add_argument("--negative-prompt")
    g.add_argument("--dtype", default="fp32", choices=tuple(_DTYPES))
    g.add_argument("--device", help="torch device (default cuda when available)")
    _shape_args(g)
    g.set_defaults(func=_generate)
