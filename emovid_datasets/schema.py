"""The EmoVid row schema, defined once as `datasets.Features`, plus the configs and splits.

The column names are a contract (see the dataset card); extra columns such as the
unrounded colour attributes are added at the end and never replace a contract column.
"""

from __future__ import annotations

import datasets

from .taxonomy import EMOTIONS, LABEL_SOURCES, SOURCES, VALENCES

METADATA_CONFIG = "metadata"  # every column but the media: labels, captions, colour, origins, timestamps
MEDIA_CONFIGS: tuple[str, ...] = ("default",) + SOURCES  # `default` lists every source's shards, stored once
CONFIGS: tuple[str, ...] = MEDIA_CONFIGS + (METADATA_CONFIG,)
SPLITS: tuple[str, ...] = ("train", "benchmark")

FEATURES = datasets.Features(
    {
        "clip_id": datasets.Value("string"),
        "source": datasets.ClassLabel(names=list(SOURCES)),
        "video": datasets.Video(),
        "audio": datasets.Audio(),
        "caption": datasets.Value("string"),
        "emotion": datasets.ClassLabel(names=list(EMOTIONS)),
        "valence": datasets.ClassLabel(names=list(VALENCES)),
        "label_source": datasets.ClassLabel(names=list(LABEL_SOURCES)),
        "human_votes": datasets.List(datasets.Value("string")),
        "label_confidence": datasets.Value("float32"),
        "colorfulness": datasets.Value("float32"),
        "brightness": datasets.Value("float32"),
        "hue": datasets.Value("int16"),
        "duration": datasets.Value("float32"),
        "fps": datasets.Value("float32"),
        "num_frames": datasets.Value("int32"),
        "width": datasets.Value("int32"),
        "height": datasets.Value("int32"),
        "has_audio": datasets.Value("bool"),
        "sequence_id": datasets.Value("string"),
        "sequence_index": datasets.Value("int32"),
        "start_time": datasets.Value("float32"),
        "end_time": datasets.Value("float32"),
        "origin": datasets.Value("string"),
        # Additions beyond the contract: the colour attributes before rounding.
        "colorfulness_raw": datasets.Value("float32"),
        "brightness_raw": datasets.Value("float32"),
        "hue_raw": datasets.Value("float32"),
    }
)

MEDIA_COLUMNS: tuple[str, ...] = ("video", "audio")
METADATA_FEATURES = datasets.Features({k: v for k, v in FEATURES.items() if k not in MEDIA_COLUMNS})


def config_features(config: str) -> datasets.Features:
    """The Features of a config's rows: the metadata config has no media columns."""
    return METADATA_FEATURES if config == METADATA_CONFIG else FEATURES

COLUMN_DOCS: dict[str, str] = {
    "clip_id": "stable id, unique across the dataset",
    "source": "content type: " + ", ".join(SOURCES),
    "video": "the clip as MP4 (H.264, yuv420p), bytes embedded in the shard",
    "audio": "the clip's own sound track, its packets remuxed as they are (AAC in M4A); null where the clip has none",
    "caption": "free-text description",
    "emotion": "Mikels label: " + ", ".join(EMOTIONS),
    "valence": "positive (amusement, awe, contentment, excitement) or negative; derived from emotion",
    "label_source": "who labelled it: human (2-of-3 vote) or model",
    "human_votes": "the annotators' votes (an emotion name or `none`), empty when model-labelled",
    "label_confidence": "vote agreement for human labels, model probability otherwise",
    "colorfulness": "mean HSV saturation over every 20th frame, rounded to 1 decimal",
    "brightness": "mean HSV value over every 20th frame, rounded to 1 decimal",
    "hue": "circular mean hue in degrees over every 20th frame, [0, 360)",
    "duration": "seconds",
    "fps": "frames per second",
    "num_frames": "frames in the clip",
    "width": "pixels",
    "height": "pixels",
    "has_audio": "whether the clip has a sound track",
    "sequence_id": "movie clips: the film the clip comes from (null otherwise)",
    "sequence_index": "movie clips: order within the film in story order (null otherwise)",
    "start_time": "start of the clip in its source video, seconds",
    "end_time": "end of the clip in its source video, seconds",
    "origin": "where the raw media came from (URL or source id); never a local path",
    "colorfulness_raw": "colorfulness before rounding",
    "brightness_raw": "brightness before rounding",
    "hue_raw": "hue before rounding, degrees",
}


def feature_type_name(feature: object) -> str:
    """A short human-readable type for the schema table in the README and the card."""
    if isinstance(feature, datasets.ClassLabel):
        return "ClassLabel [" + ", ".join(feature.names) + "]"
    if isinstance(feature, datasets.Value):
        return feature.dtype
    if isinstance(feature, datasets.List):
        return f"list of {feature_type_name(feature.feature)}"
    return type(feature).__name__ + "()"


def schema_markdown_table() -> str:
    """The schema as a Markdown table, generated from FEATURES (used in the dataset card)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    for name, feature in FEATURES.items():
        lines.append(f"| `{name}` | {feature_type_name(feature)} | {COLUMN_DOCS[name]} |")
    return "\n".join(lines)
