"""Score generated videos against the EmoVid benchmark split, overall and per source and emotion (Table 3).

Generated videos are files named ``<clip_id>.mp4`` in one folder; each is matched to the benchmark clip
with that id (its caption, emotion, source and real video). A metric whose model was not given is
reported as null with a note, never estimated.

Exact definitions used here:
- Flicker: mean over consecutive frame pairs of mean |I_{t+1} - I_t| / 255, all frames at native size.
- CLIP (t2v): mean over frames of the raw cosine between CLIP image and text embeddings. CLIP reads 77
  tokens; the default text rule "emotion-first" puts the paper's emotion sentence before the caption so
  truncation only ever cuts the caption ("paper": caption + sentence, cut at 77 tokens; "caption": caption only).
- SD (i2v): CLIP image embedding of every frame vs the reference, mean cosine. Reference "first-frame" = the
  generated video's frame 0 (frames 1.. scored); "benchmark-first-frame" = the benchmark clip's first frame,
  the inferred I2V conditioning image (all frames scored).
- FVD: Fréchet distance of video features (I3D) of the matched real and generated clips.
- EA-8 / EA-2: classifier top-1 == target emotion / same valence, percent, Wilson 95 % interval.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..media import MediaError, iter_frames, read_frames
from ..media.container import media_payload
from ..stats import decoded_rows, mean_of_present
from ..taxonomy import EMOTIONS, SOURCES, emotion_prompt, emotion_sentence
from .evaluator import REFERENCE_NAME
from .extractors import ClipEncoder, OrderedClassifier, VideoFeatures
from .metrics import SmallSampleWarning, argmax_emotions, clip_score, ea_scores, flicker, frechet_distance, sd_score
from .options import CLIP_TEXT_RULES, SD_REFERENCES, TASKS

log = logging.getLogger(__name__)


def clip_text(caption: str, emotion: str, rule: str = "emotion-first") -> str:
    """The text a generated clip's CLIP score is measured against (see the module docstring for the rules)."""
    if rule == "emotion-first":
        return f"{emotion_sentence(emotion)} {(caption or '').strip()}".strip()
    if rule == "paper":
        return emotion_prompt(caption, emotion)
    if rule == "caption":
        return (caption or "").strip()
    raise ValueError(f"unknown CLIP text rule {rule!r}; expected one of {CLIP_TEXT_RULES}")


def match_generated(generated_dir: str | Path, clip_ids: Sequence[str]) -> tuple[dict[str, Path], list[str], list[str]]:
    """(clip_id -> generated file, benchmark ids without a file, files whose name is no benchmark id)."""
    folder = Path(generated_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: generated-video folder does not exist")
    files = {p.stem: p for p in sorted(folder.glob("*.mp4")) if not p.name.startswith(".")}  # not hidden temporaries
    wanted = set(clip_ids)
    matched = {cid: files[cid] for cid in clip_ids if cid in files}
    return matched, [c for c in clip_ids if c not in files], sorted(n for n in files if n not in wanted)


def _group_metrics(indices: list[int], per_clip: list[dict[str, Any]], real: Optional[np.ndarray],
                   fake: Optional[np.ndarray], task: str, notes: set[str]) -> dict[str, Any]:
    clips = [per_clip[i] for i in indices]
    key = "clip" if task == "t2v" else "sd"
    out: dict[str, Any] = {"n": len(clips), "fvd": None, key: mean_of_present([c[key] for c in clips]),
                           "flicker": mean_of_present([c["flicker"] for c in clips]), "ea2": None, "ea8": None}
    if real is not None and len(indices) < 2:
        notes.add("FVD: null for groups with fewer than 2 clips (no covariance)")
    elif real is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SmallSampleWarning)
            out["fvd"] = frechet_distance(real[indices], fake[indices])
        if caught:
            out["fvd_small_sample"] = True
            notes.add("FVD: some groups have fewer clips than feature dimensions (fvd_small_sample); those values "
                      "are biased upward and only comparable at equal N, backbone, frames and resolution")
    labelled = [c for c in clips if c["predicted"] is not None]
    if labelled:
        ea = ea_scores([c["predicted"] for c in labelled], [c["emotion"] for c in labelled])
        out["ea2"], out["ea8"] = ea["ea2"], ea["ea8"]
    return out


def evaluate(generated_dir: str | Path, benchmark: Any, task: str, *, clip: Optional[ClipEncoder] = None,
             video_features: Optional[VideoFeatures] = None, classifier: Optional[OrderedClassifier] = None,
             text_rule: str = "emotion-first", sd_reference: str = "first-frame", frame_step: int = 1,
             batch_size: int = 8, classifier_info: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Benchmark metrics of the videos in ``generated_dir`` against ``benchmark`` (a Dataset with undecoded video).

    With a classifier, EA is also measured on the real benchmark clips (``reference``: the ceiling row).
    ``classifier_info`` (its spec, sha256, training clips) is recorded in the result as given.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    if sd_reference not in SD_REFERENCES:
        raise ValueError(f"unknown SD reference {sd_reference!r}; expected one of {SD_REFERENCES}")
    meta = benchmark.remove_columns([c for c in ("video", "audio") if c in benchmark.column_names])
    rows = list(decoded_rows(meta))
    index_of = {r["clip_id"]: i for i, r in enumerate(rows)}
    matched, missing, unmatched = match_generated(generated_dir, [r["clip_id"] for r in rows])
    if not matched:
        raise ValueError(f"{generated_dir}: no <clip_id>.mp4 matches a benchmark clip id")
    for cid in missing:
        log.warning("benchmark clip %s has no generated video; left out", cid)
    for name in unmatched:
        log.warning("%s.mp4 is not a benchmark clip id; ignored", name)

    notes: set[str] = set()
    per_clip: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    real_feats, fake_feats = [], []
    for cid, path in tqdm(matched.items(), desc=f"evaluate {task}", unit="video"):
        try:
            entry, features = _score_clip(path, rows[index_of[cid]], benchmark[index_of[cid]]["video"], task,
                                          clip, video_features, text_rule, sd_reference, frame_step)
        except (MediaError, ValueError) as exc:
            log.warning("%s left out: %s", path, exc)
            failed.append({"clip_id": cid, "file": str(path), "reason": str(exc)})
            continue
        if features is not None:
            real_feats.append(features[0])
            fake_feats.append(features[1])
        per_clip.append(entry)
    if not per_clip:
        raise ValueError(f"{generated_dir}: none of the {len(matched)} matched videos could be evaluated")

    reference = None
    if classifier is not None:
        _classify(per_clip, lambda c: matched[c["clip_id"]].read_bytes(), classifier, batch_size, "predicted",
                  "classifier_error")
        # The same classifier on the real benchmark clips: the EA that real video reaches (the ceiling row).
        _classify(per_clip, lambda c: media_payload(benchmark[index_of[c["clip_id"]]]["video"]), classifier,
                  batch_size, "real_predicted", "real_classifier_error")
        real = [c for c in per_clip if c["real_predicted"] is not None]
        if real:
            ea = ea_scores([c["real_predicted"] for c in real], [c["emotion"] for c in real])
            reference = {"name": REFERENCE_NAME, "n": len(real), "ea2": ea["ea2"], "ea8": ea["ea8"]}
    else:
        notes.add("EA-2/EA-8: no --classifier given; reported as null")
    if clip is None:
        notes.add(f"{'CLIP' if task == 't2v' else 'SD'}: no --clip-model given; reported as null")
    if video_features is None:
        notes.add("FVD: no --fvd-model given; reported as null")
    truncated = sum(bool(c.get("text_truncated")) for c in per_clip)
    if truncated:
        notes.add(f"CLIP: {truncated} prompts exceeded {clip.max_tokens} tokens and were truncated "
                  f"(text rule {text_rule!r})")

    real = np.stack(real_feats) if real_feats else None
    fake = np.stack(fake_feats) if fake_feats else None

    def group(indices: list[int]) -> dict[str, Any]:
        return _group_metrics(indices, per_clip, real, fake, task, notes)

    def by(field: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
        return {n: group([i for i, c in enumerate(per_clip) if c[field] == n])
                for n in names if any(c[field] == n for c in per_clip)}

    overall, per_source, per_emotion = group(list(range(len(per_clip)))), by("source", SOURCES), by("emotion", EMOTIONS)
    return {
        "task": task,
        "generated_dir": str(generated_dir),
        "matched": len(per_clip),
        "missing": missing,
        "unmatched": unmatched,
        "failed": failed,
        "settings": {"clip_text_rule": text_rule if task == "t2v" else None,
                     "sd_reference": sd_reference if task == "i2v" else None,
                     "clip_preprocessing": clip.preprocessing if clip else None,
                     "clip_frame_step": frame_step, "ea_interval": "Wilson 95%",
                     "fvd_covariance": "np.cov (N-1)", "fvd_real": "the matched benchmark clips only",
                     "fvd_frames": getattr(video_features, "num_frames", None),
                     "fvd_resolution": getattr(video_features, "resolution", None),
                     "flicker": "mean |I_t+1 - I_t| / 255, all frames"},
        "classifier": classifier_info,
        "reference": reference,
        "overall": overall,
        "per_source": per_source,
        "per_emotion": per_emotion,
        "notes": sorted(notes),
        "per_clip": per_clip,
    }


def _score_clip(path: Path, row: Mapping[str, Any], real_video: Any, task: str, clip: Optional[ClipEncoder],
                video_features: Optional[VideoFeatures], text_rule: str, sd_reference: str,
                frame_step: int) -> tuple[dict[str, Any], Optional[tuple[np.ndarray, np.ndarray]]]:
    """Per-clip flicker, CLIP or SD score, and the (real, generated) FVD features of one generated video."""
    frames = read_frames(path)
    entry: dict[str, Any] = {"clip_id": row["clip_id"], "source": row["source"], "emotion": row["emotion"],
                             "frames": int(len(frames)), "height": int(frames.shape[1]), "width": int(frames.shape[2]),
                             "flicker": flicker(frames), "clip": None, "sd": None, "predicted": None}
    if clip is not None:
        emb = clip.encode_images(frames[::frame_step])
        if task == "t2v":
            text_emb, cut = clip.encode_texts([clip_text(row["caption"], row["emotion"], text_rule)])
            entry["clip"], entry["text_truncated"] = clip_score(emb, text_emb[0]), cut[0]
        elif sd_reference == "first-frame":
            entry["sd"] = sd_score(emb)
        else:
            first = next(iter_frames(real_video)).array
            entry["sd"] = sd_score(emb, clip.encode_images(first[None])[0])
    features = None
    if video_features is not None:
        features = (np.asarray(video_features(read_frames(real_video))).reshape(-1),
                    np.asarray(video_features(frames)).reshape(-1))
    return entry, features


def _classify(per_clip: list[dict[str, Any]], video_of: Callable[[dict[str, Any]], Any],
              classifier: OrderedClassifier, batch_size: int, key: str, error_key: str) -> None:
    """Set each entry's ``key`` to the classifier's emotion for ``video_of(entry)``; a batch that fails is
    retried clip by clip, failures stay null with the reason under ``error_key``."""
    for start in tqdm(range(0, len(per_clip), batch_size), desc=f"EA classifier ({key})", unit="batch"):
        batch = per_clip[start:start + batch_size]
        try:
            labels = argmax_emotions(classifier.predict_proba([video_of(c) for c in batch]))
        except (MediaError, ValueError):
            labels = []
            for c in batch:
                try:
                    labels.extend(argmax_emotions(classifier.predict_proba([video_of(c)])))
                except (MediaError, ValueError) as exc:
                    log.warning("%s (%s): classifier failed (%s); left out of EA", c["clip_id"], key, exc)
                    c[error_key] = str(exc)
                    labels.append(None)
        for c, label in zip(batch, labels):
            if label is None and error_key not in c:
                log.warning("%s (%s): the classifier gave no emotion; left out of EA", c["clip_id"], key)
                c[error_key] = "no emotion in the classifier's answer"
            c[key] = label


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, Mapping):
        value = value["value"]
    return format(value, spec)


def format_table(result: Mapping[str, Any]) -> str:
    """The paper's Table 3 layout (FVD, CLIP or SD, Flicker, EA-2, EA-8), one row per group."""
    second = "CLIP↑" if result["task"] == "t2v" else "SD↑"
    key = "clip" if result["task"] == "t2v" else "sd"
    header = ["Task", "Group", "N", "FVD↓", second, "Flicker↓", "EA-2↑", "EA-8↑"]
    rows = [("overall", result["overall"])] + [(f"source={k}", v) for k, v in result["per_source"].items()] + \
        [(f"emotion={k}", v) for k, v in result["per_emotion"].items()]
    lines = [header] + [[result["task"].upper(), name, str(m["n"]), _fmt(m["fvd"], ".1f"), _fmt(m[key], ".4f"),
                         _fmt(m["flicker"], ".4f"), _fmt(m["ea2"], ".2f"), _fmt(m["ea8"], ".2f")]
                        for name, m in rows]
    ref = result.get("reference")
    if ref:
        lines.append(["REF", ref["name"], str(ref["n"]), "–", "–", "–", _fmt(ref["ea2"], ".2f"), _fmt(ref["ea8"], ".2f")])
    widths = [max(len(r[i]) for r in lines) for i in range(len(header))]
    text = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in lines]
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    info = result.get("classifier") or {}
    notes = list(result["notes"]) + ([f"EA classifier: {info.get('spec')} (sha256 {info.get('sha256') or 'unknown'})"]
                                     if info else [])
    return "\n".join(text + [f"note: {n}" for n in notes])


def write_result(result: Mapping[str, Any], out: str | Path) -> Path:
    """Write the evaluation JSON atomically."""
    return atomic_write_text(out, json.dumps(result, indent=1))
