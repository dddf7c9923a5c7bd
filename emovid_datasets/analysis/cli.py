"""`emovid analyze DATASET --out DIR`: write the analysis report (report.html) and its numbers (stats.json)."""

from __future__ import annotations

import argparse

from ..schema import CONFIGS


def _run(args: argparse.Namespace) -> int:
    from .report import write_report

    paths = write_report(args.dataset, args.out, config=args.config, split=args.split, alpha=args.alpha,
                         n_boot=args.bootstrap, seed=args.seed, gallery_per_emotion=args.gallery)
    print(f"wrote {paths['report']} and {paths['stats']}")
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser("analyze", help="dataset analysis report: composition, colour, transitions, phrases")
    p.add_argument("dataset", help="dataset folder or Hub repo id (anything load_emovid accepts)")
    p.add_argument("--out", required=True, help="output folder for report.html and stats.json")
    p.add_argument("--config", default="default", choices=CONFIGS)
    p.add_argument("--split", default="train", help="split to analyse, or 'all' for every split together")
    p.add_argument("--alpha", type=float, default=1.0, help="additive smoothing of the transition matrix")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of films (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gallery", type=int, default=3, help="gallery clips per emotion")
    p.set_defaults(func=_run)
