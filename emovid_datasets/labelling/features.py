"""Cheap clip features computed from the clip itself: colour statistics, motion and audio energy.

The offline labeller and the factual captioner use them. A few evenly spaced frames are decoded
at a small size, so a feature vector costs a fraction of a second even for a long clip.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Optional, Sequence

import av
import numpy as np

from ..color import COLOUR_STEP, ColourSums, rgb_to_hsv
from ..media import MediaError, MediaSource, NoAudioStream, decode_audio, open_input, probe, sample_frames
from ..media.container import describe, video_stream
from ..media.frames import pick_evenly, sample_step
from ..media.probe import PROBE_COLUMNS

log = logging.getLogger("emovid")

HUE_BINS = 8
FEATURE_NAMES: tuple[str, ...] = (
    ("brightness", "brightness_sd", "colorfulness", "colorfulness_sd", "dark_share", "bright_share")
    + tuple(f"hue_{i * 360 // HUE_BINS}" for i in range(HUE_BINS))
    + ("red", "green", "blue", "motion", "motion_sd", "audio_rms_db", "audio_zcr", "has_audio", "duration")
)
AUDIO_RATE = 8000
SILENCE_DB = -100.0


def colour_features(frames: np.ndarray) -> dict[str, float]:
    """Brightness/saturation means and spreads, dark/bright pixel shares, a saturation-weighted hue histogram, RGB means."""
    h, s, v = rgb_to_hsv(frames)
    hist = np.bincount((h.ravel() // (360 / HUE_BINS)).astype(int) % HUE_BINS, weights=s.ravel(), minlength=HUE_BINS)
    hist = hist / max(float(s.sum()), 1e-9)
    rgb = frames.reshape(-1, 3).mean(axis=0) / 255.0
    out = {"brightness": float(v.mean()), "brightness_sd": float(v.std()), "colorfulness": float(s.mean()),
           "colorfulness_sd": float(s.std()), "dark_share": float((v < 0.25).mean()),
           "bright_share": float((v > 0.75).mean())}
    out.update({f"hue_{i * 360 // HUE_BINS}": float(x) for i, x in enumerate(hist)})
    out.update(red=float(rgb[0]), green=float(rgb[1]), blue=float(rgb[2]))
    return out


def motion_features(frames: np.ndarray) -> dict[str, float]:
    """Mean absolute difference between consecutive sampled frames (0-1) and its spread; 0 for one frame."""
    if len(frames) < 2:
        return {"motion": 0.0, "motion_sd": 0.0}
    diffs = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2, 3)) / 255.0
    return {"motion": float(diffs.mean()), "motion_sd": float(diffs.std())}


def audio_features(video: MediaSource) -> dict[str, float]:
    """RMS level in dBFS and zero-crossing rate of the sound track (silence values when there is none, and
    with a warning when there is one that does not decode, so the clip is still labelled from its picture)."""
    try:
        samples = decode_audio(video, sample_rate=AUDIO_RATE)[0]
    except NoAudioStream:
        samples = np.zeros(0, dtype=np.float32)
    except MediaError as exc:
        log.warning("%s; its sound is scored as silence", exc)
        samples = np.zeros(0, dtype=np.float32)
    if samples.size == 0:
        return {"audio_rms_db": SILENCE_DB, "audio_zcr": 0.0, "has_audio": 0.0}
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    zcr = float(np.mean(np.signbit(samples[1:]) != np.signbit(samples[:-1]))) if samples.size > 1 else 0.0
    return {"audio_rms_db": max(SILENCE_DB, 20 * np.log10(rms + 1e-10)), "audio_zcr": zcr, "has_audio": 1.0}


FEATURE_FRAMES = 8  # evenly spaced frames per clip ...
FEATURE_SIZE = (64, 48)  # ... at this size (width, height)


def _feature_vector(frames: np.ndarray, video: MediaSource, duration: float) -> np.ndarray:
    values = {**colour_features(frames), **motion_features(frames), **audio_features(video), "duration": duration}
    return np.array([values[name] for name in FEATURE_NAMES], dtype=np.float32)


def clip_features(video: MediaSource, *, num_frames: int = FEATURE_FRAMES,
                  size: tuple[int, int] = FEATURE_SIZE) -> np.ndarray:
    """The FEATURE_NAMES vector of one clip (path, bytes or {bytes, path}); MediaError if it cannot be read."""
    info = probe(video, decode_check=False)
    frames = sample_frames(video, num_frames, width=size[0], height=size[1], total_frames=info.num_frames)
    return _feature_vector(frames, video, float(info.duration))


def measure_clip(video: MediaSource) -> dict[str, Any]:
    """Everything the build measures on a clip, from one decoding pass of its picture.

    The probe values, the paper's colour attributes (`color_attributes`' frames), the label features
    (``label_features``, `clip_features`' vector) and the factual caption's ``motion``, so that the
    labeller and the captioner read them from the manifest instead of decoding the clip again. The sound
    track is decoded once for the audio features.
    """
    info = probe(video)
    step = sample_step(info.num_frames, FEATURE_FRAMES)
    colour, small = ColourSums(), []
    with open_input(video) as container:
        stream = video_stream(container, video)
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index % COLOUR_STEP == 0:
                    colour.add(frame.to_ndarray(format="rgb24"))
                if index % step == 0:
                    small.append(frame.to_ndarray(format="rgb24", width=FEATURE_SIZE[0], height=FEATURE_SIZE[1]))
        except av.FFmpegError as exc:
            raise MediaError(f"{describe(video)}: decoding failed ({exc})") from exc
    attributes = colour.attributes(describe(video))
    attributes.pop("frames_sampled")
    if not small:
        raise MediaError(f"{describe(video)}: no frames decoded")
    features = _feature_vector(pick_evenly(small, FEATURE_FRAMES), video, float(info.duration))
    return {**{k: getattr(info, k) for k in PROBE_COLUMNS}, **attributes,
            "label_features": [float(x) for x in features], "motion": float(features[FEATURE_NAMES.index("motion")])}


def stored_features(row: Mapping[str, Any]) -> Optional[np.ndarray]:
    """The ``label_features`` the attributes stage stored in a manifest row (None when it has none)."""
    values = row.get("label_features")
    if values is None or len(values) != len(FEATURE_NAMES):
        return None
    return np.asarray(values, dtype=np.float32)


def readable_features(rows: Sequence[Mapping[str, Any]], *, what: str, progress: bool = True
                      ) -> tuple[list[Mapping[str, Any]], np.ndarray]:
    """(the rows whose ``video_path`` could be read, their `clip_features` stacked); each unreadable clip is
    logged as left out of ``what`` and skipped."""
    from tqdm.auto import tqdm

    kept, features = [], []
    for row in tqdm(rows, desc=f"{what} features", unit="clip", disable=not progress):
        try:
            stored = stored_features(row)
            features.append(stored if stored is not None else clip_features(row["video_path"]))
        except (MediaError, OSError) as exc:
            log.warning("%s left out of %s: %s", row["clip_id"], what, exc)
            continue
        kept.append(row)
    return kept, (np.stack(features) if features else np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32))
