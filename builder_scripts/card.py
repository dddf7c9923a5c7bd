"""Render the dataset card (README.md) from `dataset_card/README.template.md`, the schema and measured statistics.

No number in the card is typed by hand: counts, durations and shard sizes come from the build.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import datasets

from emovid_datasets.export import ExportResult, card_metadata
from emovid_datasets.labelling.labeller import DATASET_LABELLER, saved_labeller_files
from emovid_datasets.records import read_json_file
from emovid_datasets.schema import CONFIGS, SPLITS, schema_markdown_table
from emovid_datasets.stats import composition
from emovid_datasets.taxonomy import EMOTIONS, SOURCES


TEMPLATE = "README.template.md"


def template_text() -> str:
    """The card template: `dataset_card/` in a checkout, or the copy a wheel ships as package data."""
    checkout = Path(__file__).resolve().parents[1] / "dataset_card" / TEMPLATE
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


def labeller_note(out_dir: Path) -> str:
    """A sentence on the build's label model (from its metadata sidecar), or that there is none."""
    _, meta_path = saved_labeller_files(Path(out_dir) / DATASET_LABELLER)
    if not meta_path.is_file():
        return "No label model is stored with this build."
    metrics = read_json_file(meta_path).get("metrics", {})
    accuracy = metrics.get("heldout_accuracy")
    measured = (f"held-out accuracy {accuracy:.3f} on {metrics.get('heldout_clips')} human-labelled clips, "
                f"chance {metrics.get('chance_accuracy', 0):.3f}" if accuracy is not None else "no held-out accuracy")
    return (f"The label model of this build is stored in `{DATASET_LABELLER}` (a scikit-learn classifier on "
            f"colour, motion and audio features, skops format; {measured}). `emovid evaluate` uses it for "
            f"EA-2/EA-8 by default.")


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
        configs=", ".join(f"`{c}`" for c in CONFIGS if c in result.configs),
        splits=", ".join(f"`{s}`" for s in SPLITS),
        label_table=_table(["labelled by", "clips"], sorted(comp["label_sources"].items())),
        rejected=stats["rejected"],
        labeller_note=labeller_note(result.root),
    )
    return f"---\n{card_yaml.to_yaml()}\n---\n\n{body}"


def write_card(result: ExportResult, out_dir: Path, **kwargs: Any) -> Path:
    """Write README.md (the card) into the dataset folder atomically."""
    from emovid_datasets.atomic import atomic_write_text

    return atomic_write_text(Path(out_dir) / "README.md", render_card(result, **kwargs))
