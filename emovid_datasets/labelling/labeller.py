"""Model labellers: the `Labeller` interface, the offline `FeatureClassifier` and the `VLMLabeller`.

EmoVid labels the 80 % of clips people did not label with a model trained on the human labels.
`FeatureClassifier` (scikit-learn on `features.clip_features`) is the offline default and is
saved with the build; `VLMLabeller` prompts a chat video-language model for one of the eight
emotions and parses the answer.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_text
from ..media import MediaSource
from ..records import read_json_file
from ..taxonomy import EMOTIONS, STICKER_QUERIES
from .features import FEATURE_NAMES, clip_features
from .vlm import Generate, TransformersVLM, ask_about_videos, video_message

log = logging.getLogger("emovid")
MODEL_FORMAT = "emovid-feature-classifier"
MODEL_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Prediction:
    """One clip's model label: the emotion (None when the model gave none, with the reason), its probability,
    and the model's raw answer for generative labellers."""

    emotion: Optional[str]
    confidence: float
    raw: Optional[str] = None
    reason: Optional[str] = None


@runtime_checkable
class Labeller(Protocol):
    """Anything that scores clips over `taxonomy.EMOTIONS` (columns in that order)."""

    name: str

    def predict_proba(self, videos: Sequence[MediaSource]) -> np.ndarray:
        """(N, 8) probabilities in EMOTIONS order; an all-zero row means no answer."""

    def predict(self, videos: Sequence[MediaSource]) -> list[Optional[str]]:
        """The most likely emotion per clip, None where there is no answer."""

    def label(self, videos: Sequence[MediaSource]) -> list[Prediction]:
        """The most likely emotion per clip with its probability (the label's confidence)."""


def argmax_predictions(proba: np.ndarray) -> list[Prediction]:
    """The top emotion and its probability per row; an all-zero row gives no emotion."""
    return [Prediction(EMOTIONS[int(np.argmax(p))], float(np.max(p))) if p.sum() > 0 else Prediction(None, 0.0)
            for p in proba]


class FeatureClassifier:
    """Standardised clip features -> multinomial logistic regression, trained on human-labelled clips."""

    name = "feature-classifier"

    def __init__(self, *, c: float = 1.0, seed: int = 0) -> None:
        self.c = c
        self.seed = seed
        self.model: Any = None
        self.metrics: dict[str, Any] = {}

    def _new_model(self) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=self.c, max_iter=2000, random_state=self.seed))

    def fit_features(self, features: np.ndarray, labels: Sequence[str], *, holdout: float = 0.25,
                     rows: Optional[Sequence[Mapping[str, Any]]] = None) -> dict[str, Any]:
        """Measure held-out quality on a split stratified by source and emotion, then refit on everything.

        ``rows`` (aligned with ``features``: ``clip_id``, ``source``, ``human_votes``, ``human_annotators``)
        name the clips, so the metrics hold per-source accuracy and per-annotator kappas and the
        saved model records ``train_clip_ids``. Returns the metrics (`quality.labeller_metrics`).
        """
        from .quality import labeller_metrics, stratified_holdout

        labels = [str(x) for x in labels]
        unknown = sorted(set(labels) - set(EMOTIONS))
        if unknown:
            raise ValueError(f"training labels {unknown} are not emotions")
        if len(set(labels)) < 2:
            raise ValueError(f"need human labels of at least two emotions to train, got {sorted(set(labels))}")
        features = np.asarray(features, dtype=np.float64)
        named = rows is not None
        rows = [dict(r, emotion=y) for r, y in zip(rows, labels)] if rows is not None else \
            [{"clip_id": f"#{i:06d}", "emotion": y} for i, y in enumerate(labels)]
        index = {str(r["clip_id"]): i for i, r in enumerate(rows)}
        train_ids, held_ids = stratified_holdout(rows, holdout, self.seed) if holdout > 0 else (list(index), [])
        metrics: dict[str, Any] = {"train_clips": len(labels), "class_counts": {e: labels.count(e) for e in EMOTIONS
                                                                               if e in labels},
                                   "holdout_fraction": holdout, "heldout_clips": 0, "heldout_accuracy": None,
                                   "chance_accuracy": None}
        train = [index[c] for c in train_ids]
        if held_ids and len({labels[i] for i in train}) >= 2:
            held = [index[c] for c in held_ids]
            probe_model = self._new_model().fit(features[train], [labels[i] for i in train])
            proba = self._columns(probe_model, probe_model.predict_proba(features[held]))
            metrics.update(labeller_metrics([rows[i] for i in held], proba, train_labels=[labels[i] for i in train]))
        self.model = self._new_model().fit(features, labels)
        if named:
            metrics["train_clip_ids"] = sorted(index)
        self.metrics = metrics
        return metrics

    @staticmethod
    def _columns(model: Any, raw: np.ndarray) -> np.ndarray:
        """scikit-learn's probability columns (its ``classes_``) laid out in EMOTIONS order, 0 for absent ones."""
        out = np.zeros((raw.shape[0], len(EMOTIONS)), dtype=np.float64)
        for column, emotion in enumerate(model.classes_):
            out[:, EMOTIONS.index(emotion)] = raw[:, column]
        return out

    def fit(self, videos: Sequence[MediaSource], labels: Sequence[str], *, holdout: float = 0.25,
            rows: Optional[Sequence[Mapping[str, Any]]] = None) -> dict[str, Any]:
        """Compute features of ``videos`` and `fit_features` on them."""
        return self.fit_features(np.stack([clip_features(v) for v in videos]), labels, holdout=holdout, rows=rows)

    @property
    def train_clip_ids(self) -> Optional[list[str]]:
        """The clips the model was fitted on, when it was given their ids (None otherwise)."""
        return self.metrics.get("train_clip_ids")

    def proba_from_features(self, features: np.ndarray) -> np.ndarray:
        """(N, 8) probabilities over EMOTIONS (0 for emotions absent from training)."""
        if self.model is None:
            raise RuntimeError("FeatureClassifier is not trained; call fit() or load()")
        raw = self.model.predict_proba(np.asarray(features, dtype=np.float64).reshape(-1, len(FEATURE_NAMES)))
        return self._columns(self.model, raw)

    def predict_proba(self, videos: Sequence[MediaSource]) -> np.ndarray:
        """(N, 8) probabilities in EMOTIONS order from each clip's features."""
        return self.proba_from_features(np.stack([clip_features(v) for v in videos]))

    def predict(self, videos: Sequence[MediaSource]) -> list[Optional[str]]:
        """The most likely emotion per clip, None where there is no answer."""
        return [p.emotion for p in self.label(videos)]

    def label(self, videos: Sequence[MediaSource]) -> list[Prediction]:
        """The most likely emotion per clip with its probability (the label's confidence)."""
        return argmax_predictions(self.predict_proba(videos))

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (skops format, no pickle) and ``path.json`` (format, versions, features, metrics)."""
        import sklearn
        import skops.io as sio

        if self.model is None:
            raise RuntimeError("FeatureClassifier is not trained; nothing to save")
        path = Path(path)
        atomic_write_bytes(path, _stable_zip(sio.dumps(self.model)))
        meta = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION, "sklearn_version": sklearn.__version__,
                "emotions": list(EMOTIONS), "feature_names": list(FEATURE_NAMES), "c": self.c, "seed": self.seed,
                "metrics": self.metrics}
        atomic_write_text(_meta_path(path), json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureClassifier":
        """Load a saved classifier after checking its format version, emotions and feature names."""
        import sklearn
        import skops.io as sio

        path = Path(path)
        meta_path = _meta_path(path)
        if not path.is_file() or not meta_path.is_file():
            raise FileNotFoundError(f"{path}: saved labeller or its {meta_path.name} is missing")
        meta = read_json_file(meta_path)
        if meta.get("format") != MODEL_FORMAT or meta.get("format_version") != MODEL_FORMAT_VERSION:
            raise ValueError(f"{path}: format {meta.get('format')} v{meta.get('format_version')} is not "
                             f"{MODEL_FORMAT} v{MODEL_FORMAT_VERSION}; retrain with `emovid-build annotate predict`")
        if meta.get("emotions") != list(EMOTIONS) or meta.get("feature_names") != list(FEATURE_NAMES):
            raise ValueError(f"{path}: saved for other emotions or features than this version computes; retrain it")
        if meta.get("sklearn_version") != sklearn.__version__:
            log.warning("%s was saved with scikit-learn %s, running %s; predictions may differ",
                                                path, meta.get("sklearn_version"), sklearn.__version__)
        model = sio.loads(path.read_bytes(), trusted=[])  # only skops' default-trusted scikit-learn types
        labeller = cls(c=meta.get("c", 1.0), seed=meta.get("seed", 0))
        labeller.model, labeller.metrics = model, meta.get("metrics", {})
        return labeller


# Where a dataset build keeps its label model (relative to the dataset folder), and the 1 % validation
# set's agreement report beside it. The EA evaluator is kept apart (`evaluation.evaluator`).
LABELLER_DIR = "labeller"
VALIDATION_FILE = "validation_agreement.json"


def _stable_zip(data: bytes) -> bytes:
    """The same skops archive with stable member names and fixed timestamps, so one model always saves to the
    same bytes (and sha256). skops names array members and ``__id__`` references after Python object ids,
    which change every run; both are renumbered in the order ``schema.json`` first mentions them."""
    import io
    import re
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as src:
        members = {info.filename: src.read(info) for info in src.infolist()}
    schema = members.pop("schema.json").decode("utf-8")
    order = sorted(members, key=lambda name: (schema.find(f'"{name}"'), name))
    renamed = {name: f"{i:05d}{Path(name).suffix}" for i, name in enumerate(order)}
    for name, new in renamed.items():
        schema = schema.replace(f'"{name}"', f'"{new}"')
    ids: dict[str, int] = {}
    schema = re.sub(r'"__id__": (\d+)', lambda m: f'"__id__": {ids.setdefault(m.group(1), len(ids))}', schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, payload in [("schema.json", schema.encode("utf-8"))] + [(renamed[n], members[n]) for n in order]:
            dst.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), payload,
                         compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def saved_labeller_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """The two files of a saved `FeatureClassifier`: the skops model and its metadata sidecar."""
    path = Path(path)
    return path, _meta_path(path)


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


# Word forms mapped to the eight emotions: the taxonomy's search synonyms plus adjectives.
# "happy"/"joy" are deliberately absent: they could mean amusement, contentment or excitement.
EMOTION_WORDS: dict[str, str] = {
    **{word: emotion for emotion, words in STICKER_QUERIES.items() for word in words},
    **{e: e for e in EMOTIONS},
    "amusing": "amusement", "funny": "amusement", "humor": "amusement", "humour": "amusement",
    "awed": "awe", "awestruck": "awe", "awe-inspiring": "awe", "amazement": "awe", "wonderment": "awe",
    "contented": "contentment", "calm": "contentment", "serene": "contentment", "peace": "contentment",
    "exciting": "excitement", "thrill": "excitement", "enthusiasm": "excitement", "thrilling": "excitement",
    "angry": "anger", "rage": "anger", "fury": "anger", "irritated": "anger",
    "disgusting": "disgust", "revulsion": "disgust", "repulsed": "disgust",
    "fearful": "fear", "frightened": "fear", "frightening": "fear", "scary": "fear", "terror": "fear",
    "anxious": "fear", "sad": "sadness", "sorrow": "sadness", "grief": "sadness", "melancholy": "sadness",
    "sorrowful": "sadness", "unhappy": "sadness",
}
NONE_ANSWERS: tuple[str, ...] = ("none", "no specific emotion", "no emotion", "neutral", "unclear", "unknown")
_NEGATIONS = frozenset({"not", "no", "isn't", "isnt", "without", "nor", "never"})


@dataclass(frozen=True)
class ParsedAnswer:
    """A parsed VLM answer: the emotion or None, and why it is None ('none', 'ambiguous', 'unparseable')."""

    emotion: Optional[str]
    reason: Optional[str] = None


def parse_emotion(answer: str) -> ParsedAnswer:
    """Map a free-text answer to one of the eight emotions, tolerating case, punctuation, synonyms and extra words.

    Negated mentions ("not anger") are ignored; two different emotions left over, a `none`-like answer or
    no emotion word give None with the reason.
    """
    text = re.sub(r"[.,;:!?()\[\]\"/]", " | ", (answer or "").lower())  # '|' marks a clause boundary
    words = [w.strip("'-") for w in re.sub(r"[^a-z'\-| ]+", " ", text).split()]
    text = " ".join(w for w in words if w != "|")
    phrases = [(i, EMOTION_WORDS[w]) for i, w in enumerate(words) if w in EMOTION_WORDS]
    phrases += [(i, EMOTION_WORDS[f"{a} {b}"]) for i, (a, b) in enumerate(zip(words, words[1:]))
                if f"{a} {b}" in EMOTION_WORDS]  # two-word synonyms such as "mind blown"

    def negated(i: int) -> bool:
        before = words[max(0, i - 2):i]
        return bool(_NEGATIONS & set(before[len(before) - before[::-1].index("|"):] if "|" in before else before))

    kept = {e for i, e in phrases if not negated(i)}
    if len(kept) == 1:
        return ParsedAnswer(kept.pop())
    if len(kept) > 1:
        return ParsedAnswer(None, "ambiguous: names " + ", ".join(sorted(kept)))
    if any(re.search(rf"\b{re.escape(n)}\b", text) for n in NONE_ANSWERS):
        return ParsedAnswer(None, "none")
    return ParsedAnswer(None, "unparseable")


def emotion_question(caption: Optional[str] = None) -> str:
    """The prompt asking for exactly one of the eight emotions (optionally with the clip's caption)."""
    context = f'The video is described as: "{caption.strip()}"\n' if caption and caption.strip() else ""
    return (f"{context}Which emotion does this video evoke? Answer with exactly one word from this list: "
            f"{', '.join(EMOTIONS)}.")


class VLMLabeller:
    """Labels clips by asking a chat VLM for one of the eight emotions; unparseable answers give no label."""

    name = "vlm"

    def __init__(self, model: str, *, generate: Optional[Generate] = None, num_frames: int = 8,
                 frame_size: Optional[tuple[int, int]] = (448, 448), max_new_tokens: int = 10,
                 batch_size: int = 1, trust_remote_code: bool = False) -> None:
        self.model_id = model
        self.generate = generate or TransformersVLM(model, trust_remote_code=trust_remote_code)
        self.num_frames = num_frames
        self.frame_size = frame_size
        self.max_new_tokens = max_new_tokens
        self.batch_size = max(1, batch_size)

    def conversation(self) -> list[dict[str, Any]]:
        """The chat messages sent with each clip's frames."""
        return video_message(emotion_question())

    def answers(self, videos: Sequence[MediaSource]) -> list[str]:
        """The model's raw answers, generated ``batch_size`` clips at a time."""
        out: list[str] = []
        for start in range(0, len(videos), self.batch_size):
            out.extend(ask_about_videos(self.generate, videos[start:start + self.batch_size], self.conversation(),
                                        num_frames=self.num_frames, frame_size=self.frame_size,
                                        max_new_tokens=self.max_new_tokens))
        return out

    def label(self, videos: Sequence[MediaSource]) -> list[Prediction]:
        """Parsed answers: a one-word answer naming an emotion gets confidence 1.0; the raw answer is kept."""
        parsed = [(raw, parse_emotion(raw)) for raw in self.answers(videos)]
        return [Prediction(p.emotion, 1.0 if p.emotion else 0.0, raw, p.reason) for raw, p in parsed]

    def predict_proba(self, videos: Sequence[MediaSource]) -> np.ndarray:
        """One-hot rows for parsed answers, all-zero rows for answers without an emotion."""
        proba = np.zeros((len(videos), len(EMOTIONS)))
        for row, pred in enumerate(self.label(videos)):
            if pred.emotion:
                proba[row, EMOTIONS.index(pred.emotion)] = 1.0
        return proba

    def predict(self, videos: Sequence[MediaSource]) -> list[Optional[str]]:
        """The most likely emotion per clip, None where there is no answer."""
        return [p.emotion for p in self.label(videos)]
