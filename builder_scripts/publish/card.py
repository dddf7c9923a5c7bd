"""Render the dataset card (README.md) from `dataset_card/README.template.md`, the schema and measured statistics.

No number in the card is typed by hand: counts, durations and shard sizes come from the build.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Optional

import datasets

from emovid_datasets.evaluation.evaluator import EVALUATOR_DIR
from emovid_datasets.export import ExportResult, card_metadata
from emovid_datasets.labelling.labeller import LABELLER_DIR, VALIDATION_FILE, saved_labeller_files
from emovid_datasets.records import read_json_file
from emovid_datasets.schema import SPLITS, schema_markdown_table
from emovid_datasets.stats import composition
from emovid_datasets.taxonomy import EMOTIONS, SOURCES

TEMPLATE = "README.template.md"


def template_text() -> str:
    """The card template: `dataset_card/` in a checkout, or the copy a wheel ships as package data."""
    checkout = Path(__file__).resolve().parents[2] / "dataset_card" / TEMPLATE
    if checkout.exists():
        return checkout.read_text("utf-8")
    return resources.files("builder_scripts.dataset_card").joinpath(TEMPLATE).read_text("utf-8")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def card_statistics(result: ExportResult) -> dict[str, Any]:
    """Statistics the card shows, measured on the built splits."""
    assert result.dataset is not None
    splits = {split: composition(ds) for split, ds in result.dataset.items()}
    every = composition(datasets.concatenate_datasets(list(result.dataset.values())))
    files = {
        f"{config}/{split}": {"rows": result.num_rows[(config, split)], "shards": len(paths),
                              "bytes": result.num_bytes[(config, split)]}
        for (config, split), paths in sorted(result.shards.items())
    }
    return {"all": every, "splits": splits, "files": files, "rejected": len(result.rejects)}


def _f(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _label_model_lines(folder: Path) -> list[str]:
    from emovid_datasets.labelling.finetune import METADATA_FILE

    if (folder / METADATA_FILE).is_file():
        record = read_json_file(folder / METADATA_FILE)
        metrics = record.get("metrics", {})
        what = (f"`{record['base_model']}` fine-tuned with LoRA and a classification head on the human labels "
                f"(soft targets from the votes, classes balanced, temperature {record['temperature']:.2f} fitted on "
                f"the held-out clips), the paper's method")
    else:
        skops = next(iter(sorted(folder.glob("*.skops"))), None)
        if skops is None:
            return []
        metrics = read_json_file(saved_labeller_files(skops)[1]).get("metrics", {})
        what = "a scikit-learn classifier on colour, motion and audio features (the offline label model)"
    annotators = metrics.get("kappa_vs_annotators") or {}
    kappas = ", ".join(f"{a} {_f(k)}" for a, k in annotators.items()) or "n/a"
    return [f"- **Label model** (`{LABELLER_DIR}/`): {what}.",
            f"- Held-out human-labelled clips: {metrics.get('heldout_clips', 0)}; accuracy "
            f"{_f(metrics.get('heldout_accuracy'))} (majority-class chance {_f(metrics.get('chance_accuracy'))}), "
            f"macro-F1 {_f(metrics.get('macro_f1'))}, Cohen's kappa against the human majority "
            f"{_f(metrics.get('kappa_vs_majority'))} and against each annotator: {kappas}; expected calibration "
            f"error {_f(metrics.get('ece_before_calibration'))} before and {_f(metrics.get('ece_after_calibration'))} "
            f"after calibration."]


def labelling_quality(out_dir: Path) -> str:
    """The card's account of label quality measured on this build: the label model on held-out human labels,
    the 1 % validation set's kappas next to the paper's claim, and the EA evaluator with its ceiling EA."""
    from emovid_datasets.evaluation.evaluator import evaluator_record

    folder = Path(out_dir) / LABELLER_DIR
    lines = _label_model_lines(folder) if folder.is_dir() else []
    if not lines:
        lines = ["- No label model is stored with this build."]
    if (folder / VALIDATION_FILE).is_file():
        report = read_json_file(folder / VALIDATION_FILE)
        mean, gap = report["mean_kappa"], report.get("human_model_gap_relative")
        lines.append(f"- **Validation set** (model-labelled clips labelled again by {len(report['sources']) - 1} "
                     f"people, {report['fleiss']['items']} clips): mean pairwise Cohen's kappa human-human "
                     f"{_f(mean.get('human-human'))}, human-model {_f(mean.get('human-model'))}"
                     + (f", a gap of {100 * gap:.1f} % of the human-human kappa" if gap is not None else "")
                     + f"; Fleiss' kappa {_f(report['fleiss']['kappa'])}. The paper reports a human-model gap under "
                       f"4 % on its 1 % validation set.")
    record = evaluator_record(out_dir)
    if record:
        ref = record.get("real_benchmark") or {}
        ea = (f"EA-8 {ref['ea8']['value']:.1f} % and EA-2 {ref['ea2']['value']:.1f} % on the {ref['n']} real "
              f"benchmark clips: the ceiling for generated video" if ref else "no benchmark clips to score")
        lines.append(f"- **EA evaluator** (`{EVALUATOR_DIR}/`, sha256 `{record['sha256'][:16]}`): a separate "
                     f"classifier trained on the {len(record['train_clip_ids'])} human-labelled train clips only, "
                     f"never on a benchmark clip; {ea}. `emovid evaluate` uses it by default and refuses a "
                     f"classifier trained on benchmark clips (such as the label model). The paper's EA-8 on "
                     f"generated video: 40-48 % (T2V), 70-76 % (I2V).")
    return "\n".join(lines)


def media_note(result: ExportResult) -> str:
    """What the card says about the media: where it is, or, for a metadata-only release, how to rebuild it."""
    if any(config in SOURCES for config, _ in result.shards):
        return "Each clip's media is embedded in its row (see below); `metadata` omits it."
    return ("**This release holds no media**, only the `metadata` config: the clips are cut again from their "
            "sources by each row's `origin`, `start_time` and `end_time`. Rebuild a full dataset folder with\n\n"
            "```bash\nemovid-build rehydrate PATH_OR_REPO_ID --out emovid --from-dir animation=ANIMATION_FOLDER \\\n"
            "    --tenor-endpoint TENOR_COMPATIBLE_API  # stickers by id, key in $TENOR_API_KEY\n```\n\n"
            "Movies are downloaded by their YouTube URL (or `--download-url` with `{videoid}`, or "
            "`--from-dir movie=FOLDER` of files named by video id). Each cut is checked against the row's frame "
            "count and duration; what cannot be fetched is listed in `OUT.work/rejects.parquet`.")


def render_card(result: ExportResult, *, pretty_name: str = "EmoVid") -> str:
    """The full README.md text: YAML (configs + Features) followed by the filled-in template."""
    stats = card_statistics(result)
    comp = stats["all"]
    composition_rows = [
        [s, c["clips"], f"{c['duration_mean']:.2f}", f"{c['duration_sd']:.2f}", "yes",
         "yes" if c["with_audio"] == c["clips"] and c["clips"] else ("some" if c["with_audio"] else "no"),
         c["with_caption"]]
        for s, c in list(comp["per_source"].items()) + [("total", comp["total"])]
    ]
    emotion_rows = [[e] + [comp["emotions"][s][e] for s in SOURCES] for e in EMOTIONS]
    file_rows = [[k, v["rows"], v["shards"], f"{v['bytes'] / 1e6:.1f} MB"] for k, v in stats["files"].items()]
    card_yaml = card_metadata(result.configs)
    card_yaml["pretty_name"] = pretty_name
    card_yaml["task_categories"] = ["video-classification", "text-to-video", "image-to-video"]
    card_yaml["tags"] = ["emotion", "video", "audio", "animation", "stickers"]
    body = Template(template_text()).substitute(
        pretty_name=pretty_name,
        num_clips=comp["total"]["clips"],
        total_hours=f"{comp['total']['duration_total'] / 3600:.2f}",
        composition_table=_table(["type", "clips", "avg dur (s)", "SD (s)", "video", "audio", "captioned"],
                                 composition_rows),
        emotion_table=_table(["emotion"] + list(SOURCES), emotion_rows),
        files_table=_table(["config/split", "rows", "shards", "size"], file_rows),
        schema_table=schema_markdown_table(),
        configs=", ".join(f"`{c['config_name']}`" for c in card_yaml["configs"]),
        splits=", ".join(f"`{s}`" for s in SPLITS),
        label_table=_table(["labelled by", "clips"], sorted(comp["label_sources"].items())),
        rejected=stats["rejected"],
        labelling_quality=labelling_quality(result.root),
        media_note=media_note(result),
    )
    return f"---\n{card_yaml.to_yaml()}\n---\n\n{body}"


def write_card(result: ExportResult, out_dir: Path, **kwargs: Any) -> Path:
    """Write README.md (the card) into the dataset folder atomically."""
    from emovid_datasets.atomic import atomic_write_text

    return atomic_write_text(Path(out_dir) / "README.md", render_card(result, **kwargs))
