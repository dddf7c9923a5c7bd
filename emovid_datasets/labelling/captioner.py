"""Captioners: the `Captioner` interface, the offline `FactualCaptioner` and a `transformers` `VLMCaptioner`.

EmoVid's captions come from NVILA-8B-Video. Offline, `FactualCaptioner` states only what the
pipeline measured (source, duration, sound, brightness, colourfulness, dominant hue, motion, and a
sticker's title and tags), so a caption never claims content nobody checked.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Optional, Protocol, Sequence, runtime_checkable

from ..builder import is_missing
from ..color import color_attributes
from ..media import probe, sample_frames
from .features import motion_features
from .vlm import Generate, TransformersVLM, ask_about_videos, video_message

# A clip as the caption stage sees it: a manifest row with `video_path` and whatever was measured.
Clip = Mapping[str, Any]

SOURCE_NOUNS = {"animation": "animated clip", "movie": "film clip", "sticker": "animated sticker"}
# Hue names by upper bound in degrees.
HUE_NAMES: tuple[tuple[float, str], ...] = (
    (15, "red"), (45, "orange"), (70, "yellow"), (160, "green"), (200, "cyan"), (260, "blue"),
    (290, "purple"), (335, "magenta"), (361, "red"),
)


@runtime_checkable
class Captioner(Protocol):
    """Anything that writes one caption per clip."""

    name: str

    def caption(self, clips: Sequence[Clip]) -> list[str]:
        """One caption per clip, in order."""


def hue_name(hue: float) -> str:
    """A colour word for a hue in degrees."""
    return next(name for bound, name in HUE_NAMES if hue % 360 < bound)


def _level(value: float, words: tuple[str, str, str], low: float, high: float) -> str:
    return words[0] if value < low else words[1] if value < high else words[2]


class FactualCaptioner:
    """Writes a caption from measurements only; measures what the manifest row lacks from the clip itself."""

    name = "factual"

    def __init__(self, *, num_frames: int = 8) -> None:
        self.num_frames = num_frames

    def measurements(self, clip: Clip) -> dict[str, Any]:
        """Duration, sound, brightness, colourfulness, hue and motion of a clip (row values win over measuring,
        so a clip through the `attributes` stage is not decoded again)."""
        video = clip["video_path"]
        values = {k: clip.get(k) for k in ("duration", "has_audio", "brightness_raw", "colorfulness_raw", "hue_raw")}
        for key in ("brightness", "colorfulness", "hue"):
            if is_missing(values[f"{key}_raw"]):
                values[f"{key}_raw"] = clip.get(key)
        if is_missing(values["duration"]) or is_missing(values["has_audio"]):
            info = probe(video, decode_check=False)
            values["duration"], values["has_audio"] = info.duration, info.has_audio
        if any(is_missing(values[k]) for k in ("brightness_raw", "colorfulness_raw", "hue_raw")):
            values.update({k: v for k, v in color_attributes(video).items() if k in values})
        values["motion"] = clip.get("motion")  # measured by the `attributes` stage
        if is_missing(values["motion"]):
            values["motion"] = motion_features(sample_frames(video, self.num_frames, width=64, height=48))["motion"]
        return values

    def describe(self, clip: Clip) -> str:
        """The caption of one clip."""
        m = self.measurements(clip)
        noun = SOURCE_NOUNS.get(str(clip.get("source")), "video clip")
        sound = "with sound" if m["has_audio"] else "without sound"
        parts = [f"A {float(m['duration']):.1f}-second {noun} {sound}."]
        if clip.get("source") == "sticker":
            title = str(clip.get("title") or "").strip()
            tags = clip.get("tags") or []
            tags = [str(t).strip() for t in (re.split(r"[;,|]", tags) if isinstance(tags, str) else tags)
                    if str(t).strip()]
            if title:
                parts.append(f'Its title is "{title}".')
            if tags:
                parts.append(f"It is tagged {', '.join(tags[:8])}.")
        light = _level(float(m["brightness_raw"]), ("dark", "moderately lit", "bright"), 0.35, 0.65)
        sat = float(m["colorfulness_raw"])
        if sat < 0.15:
            parts.append(f"The picture is {light} with muted, nearly grey colours")
        else:
            vivid = _level(sat, ("muted", "moderately colourful", "vivid"), 0.15, 0.5)
            parts.append(f"The picture is {light} and {vivid}, mostly {hue_name(float(m['hue_raw']))}")
        motion = _level(float(m["motion"]), ("almost no motion", "some motion", "a lot of motion"), 0.02, 0.08)
        parts[-1] += f", with {motion}."
        return " ".join(parts)

    def caption(self, clips: Sequence[Clip]) -> list[str]:
        """One factual caption per clip (see `describe`)."""
        return [self.describe(c) for c in clips]


CAPTION_PROMPT = ("Describe this video in two or three sentences: what happens, the setting, and the mood "
                  "it conveys. Answer with the description only.")
_PREFIX = re.compile(r"^\s*(?:caption|description|answer)\s*:\s*", re.IGNORECASE)


def clean_caption(answer: str) -> str:
    """A VLM's answer as a one-paragraph caption (label prefixes, wrapping quotes and extra spaces removed)."""
    text = " ".join(_PREFIX.sub("", answer or "").split())
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text


class VLMCaptioner:
    """Captions clips with a chat VLM on `transformers` (the paper used NVILA-8B-Video)."""

    name = "vlm"

    def __init__(self, model: str, *, generate: Optional[Generate] = None, prompt: str = CAPTION_PROMPT,
                 num_frames: int = 8, frame_size: Optional[tuple[int, int]] = (448, 448),
                 max_new_tokens: int = 96, trust_remote_code: bool = False) -> None:
        self.model_id = model
        self.generate = generate or TransformersVLM(model, trust_remote_code=trust_remote_code)
        self.prompt = prompt
        self.num_frames = num_frames
        self.frame_size = frame_size
        self.max_new_tokens = max_new_tokens

    def caption(self, clips: Sequence[Clip]) -> list[str]:
        """One generation call for the whole batch; ValueError when the model returns an empty caption."""
        replies = ask_about_videos(self.generate, [c["video_path"] for c in clips], video_message(self.prompt),
                                   num_frames=self.num_frames, frame_size=self.frame_size,
                                   max_new_tokens=self.max_new_tokens)
        captions = [clean_caption(r) for r in replies]
        empty = [c.get("clip_id") for c, text in zip(clips, captions) if not text]
        if empty:
            raise ValueError(f"VLM returned an empty caption for {', '.join(map(str, empty))}")
        return captions
