"""Procedural raw material for the offline demo: animation clips, long films and GIF stickers.

Emotion is made visible the way the paper's analysis looks for it: a palette (hue,
saturation, brightness) per emotion, motion speed by arousal, a smiling or frowning face by
valence, and a sound (chord, tempo, noise) per emotion. Every clip varies around its
emotion's style, so a classifier has something to learn but not a lookup table.
Everything is deterministic given the seed.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image, ImageDraw

from emovid_datasets.media import Mp4Writer, write_gif
from emovid_datasets.taxonomy import EMOTIONS, arousal_of, valence_of

AUDIO_RATE = 16000


@dataclass(frozen=True)
class Style:
    """How an emotion looks and sounds in the demo."""

    hue: float  # degrees
    saturation: float
    brightness: float
    speed: float  # motion, cycles per second
    chord: tuple[float, ...]  # Hz
    beat: float  # notes per second
    noise: float  # noise level in the sound


STYLES: dict[str, Style] = {
    "amusement": Style(45, 0.80, 0.90, 1.2, (523.3, 659.3, 784.0), 4.0, 0.00),
    "awe": Style(255, 0.65, 0.60, 0.25, (130.8, 196.0, 261.6), 0.5, 0.00),
    "contentment": Style(110, 0.40, 0.75, 0.3, (392.0, 493.9, 587.3), 1.0, 0.00),
    "excitement": Style(320, 0.90, 0.90, 2.0, (659.3, 830.6, 987.8), 8.0, 0.02),
    "anger": Style(0, 0.90, 0.45, 1.6, (98.0, 103.8), 6.0, 0.25),
    "disgust": Style(75, 0.60, 0.45, 0.6, (233.1, 246.9), 2.0, 0.10),
    "fear": Style(195, 0.50, 0.22, 1.4, (880.0, 932.3), 10.0, 0.20),
    "sadness": Style(220, 0.15, 0.35, 0.15, (220.0, 261.6, 329.6), 0.5, 0.00),
}


@dataclass(frozen=True)
class Variation:
    """One clip's random departure from its emotion's style."""

    hue: float
    saturation: float
    brightness: float
    phase: float
    layout: int

    @classmethod
    def draw(cls, rng: np.random.Generator) -> "Variation":
        """A random variation (hue shift, size, position, phase, mouth shape) drawn from ``rng``."""
        return cls(float(rng.normal(0, 14)), float(rng.normal(0, 0.08)), float(rng.normal(0, 0.07)),
                   float(rng.uniform(0, 2 * np.pi)), int(rng.integers(0, 3)))


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb((hue % 360) / 360, float(np.clip(saturation, 0, 1)), float(np.clip(value, 0, 1)))
    return np.array([r, g, b], dtype=np.float32) * 255


def _palette(emotion: str, var: Variation) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = STYLES[emotion]
    base = _rgb(s.hue + var.hue, s.saturation + var.saturation, s.brightness + var.brightness)
    accent = _rgb(s.hue + var.hue + 30, s.saturation + var.saturation, s.brightness + var.brightness + 0.1)
    dark = _rgb(s.hue + var.hue, s.saturation + var.saturation, (s.brightness + var.brightness) * 0.55)
    return base, accent, dark


def _background(h: int, w: int, emotion: str, var: Variation, t: float) -> np.ndarray:
    """A gradient whose layout (vertical, horizontal, radial) distinguishes shots from each other."""
    base, _, dark = _palette(emotion, var)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    drift = 0.1 * np.sin(2 * np.pi * STYLES[emotion].speed * 0.2 * t + var.phase)
    if var.layout == 0:
        mix = yy / max(h - 1, 1)
    elif var.layout == 1:
        mix = xx / max(w - 1, 1)
    else:
        mix = np.hypot(yy - h / 2, xx - w / 2) / np.hypot(h / 2, w / 2)
    mix = np.clip(mix + drift, 0, 1)[..., None]
    return base * (1 - mix) + dark * mix


def face_frame(h: int, w: int, emotion: str, var: Variation, t: float) -> np.ndarray:
    """An animation-like frame: flat background and a cartoon face that smiles or frowns by valence."""
    s = STYLES[emotion]
    _, accent, dark = _palette(emotion, var)
    img = Image.fromarray(_background(h, w, emotion, var, t).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    amp = 0.18 if arousal_of(emotion) == "high" else 0.06
    cx = w / 2 + amp * w * np.sin(2 * np.pi * s.speed * t + var.phase)
    cy = h / 2 + amp * h * np.cos(2 * np.pi * s.speed * t * 0.7 + var.phase)
    r = min(h, w) * 0.3
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(c) for c in accent), outline=(20, 20, 20), width=2)
    for ex in (-0.35, 0.35):
        draw.ellipse([cx + ex * r - r * 0.1, cy - r * 0.35, cx + ex * r + r * 0.1, cy - r * 0.15], fill=(20, 20, 20))
    up = valence_of(emotion) == "positive"
    box = [cx - r * 0.45, cy - r * (0.05 if up else -0.25), cx + r * 0.45, cy + r * (0.55 if up else 0.75)]
    draw.arc(box, start=20 if up else 200, end=160 if up else 340, fill=tuple(int(c) for c in dark), width=3)
    return np.asarray(img)


def film_frame(h: int, w: int, emotion: str, var: Variation, t: float, rng: np.random.Generator) -> np.ndarray:
    """A film-like frame: a graded gradient, moving soft blobs, grain and a vignette."""
    s = STYLES[emotion]
    frame = _background(h, w, emotion, var, t)
    _, accent, _ = _palette(emotion, var)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for k in range(3):
        phase = var.phase + k * 2.1
        bx = w * (0.5 + 0.35 * np.sin(2 * np.pi * s.speed * 0.5 * t + phase))
        by = h * (0.5 + 0.3 * np.cos(2 * np.pi * s.speed * 0.4 * t + phase))
        blob = np.exp(-((xx - bx) ** 2 + (yy - by) ** 2) / (2 * (0.12 * w) ** 2))[..., None]
        frame = frame * (1 - 0.6 * blob) + accent * 0.6 * blob
    # A set piece (a lit window, a figure) whose place changes from shot to shot, as scenery does across cuts.
    s_, v_ = s.saturation + var.saturation, s.brightness + var.brightness
    x0 = int((0.1 + 0.6 * (var.phase / (2 * np.pi))) * w)
    y0 = int((0.15 + 0.4 * ((var.phase * 7) % 1)) * h)
    frame[y0:y0 + h // 3, x0:x0 + w // 4] = _rgb(s.hue + var.hue + 20, s_, min(1.0, v_ + 0.35))
    vignette = 1 - 0.35 * (np.hypot(yy - h / 2, xx - w / 2) / np.hypot(h / 2, w / 2)) ** 2
    frame = frame * vignette[..., None] + rng.normal(0, 4, size=(h, w, 1))
    return np.clip(frame, 0, 255).astype(np.uint8)


def sound(emotion: str, seconds: float, rng: np.random.Generator, rate: int = AUDIO_RATE) -> np.ndarray:
    """Mono float32 audio: the emotion's chord gated at its tempo, plus noise."""
    s = STYLES[emotion]
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in s.chord) / len(s.chord)
    gate = 0.55 + 0.45 * np.sign(np.sin(2 * np.pi * s.beat * t))
    wave = 0.25 * tone * gate + s.noise * rng.normal(0, 1, size=t.shape)
    return np.clip(wave, -1, 1).astype(np.float32)[None, :]


def write_animation_clip(path: Path, emotion: str, seconds: float, rng: np.random.Generator, *,
                         size: tuple[int, int] = (128, 96), fps: int = 12) -> Path:
    """An animation-like face clip with sound."""
    w, h = size
    var = Variation.draw(rng)
    with Mp4Writer(path, width=w, height=h, fps=fps, audio_rate=AUDIO_RATE, audio_layout="mono") as writer:
        for i in range(int(round(seconds * fps))):
            writer.write_frame(face_frame(h, w, emotion, var, i / fps))
        writer.write_audio(sound(emotion, seconds, rng))
    return path


def write_sticker(path: Path, emotion: str, seconds: float, rng: np.random.Generator, *,
                  size: int = 96, frame_ms: int = 100) -> Path:
    """An animated GIF sticker (no sound) of a bouncing face."""
    var = Variation.draw(rng)
    frames = [face_frame(size, size, emotion, var, i * frame_ms / 1000)
              for i in range(max(2, int(seconds * 1000 / frame_ms)))]
    write_gif(path, frames, fps=1000 / frame_ms)
    return path


@dataclass(frozen=True)
class Shot:
    """One shot of a generated film: where it starts (frame) and what it shows."""

    start_frame: int
    num_frames: int
    emotion: str
    fast_pan: bool = False


def film_script(rng: np.random.Generator, *, num_shots: int, fps: int, persistence: float = 0.5) -> list[Shot]:
    """Shots whose emotions follow a Markov chain: stay with ``persistence``, else drift, mostly within valence.

    Most shots last 4-8 s; about one in eight is shorter than 4 s (the segment stage drops it).
    """
    shots, start = [], 0
    emotion = str(rng.choice(EMOTIONS))
    for k in range(num_shots):
        if k:
            if rng.random() >= persistence:
                same_valence = [e for e in EMOTIONS if valence_of(e) == valence_of(emotion) and e != emotion]
                pool = same_valence if rng.random() < 0.75 else [e for e in EMOTIONS if valence_of(e) != valence_of(emotion)]
                emotion = str(rng.choice(pool))
        seconds = float(rng.uniform(1.5, 3.0)) if rng.random() < 0.12 else float(rng.uniform(4.2, 7.5))
        n = int(round(seconds * fps))
        shots.append(Shot(start, n, emotion, fast_pan=bool(rng.random() < 0.15)))
        start += n
    return shots


def write_film(path: Path, shots: list[Shot], rng: np.random.Generator, *, size: tuple[int, int] = (160, 96),
               fps: int = 24, fade_seconds: float = 1.0) -> Path:
    """A long film: the shots joined by hard cuts, fading in from black, with a sound track.

    A ``fast_pan`` shot slides its picture quickly sideways: camera motion, not a cut.
    """
    w, h = size
    with Mp4Writer(path, width=w, height=h, fps=fps, audio_rate=AUDIO_RATE, audio_layout="mono") as writer:
        for k, shot in enumerate(shots):
            var = replace(Variation.draw(rng), layout=k % 3)  # neighbouring shots never share a layout
            for i in range(shot.num_frames):
                t = i / fps
                frame = film_frame(h, w, shot.emotion, var, t, rng)
                if shot.fast_pan:
                    frame = np.roll(frame, int(i * w * 0.04), axis=1)
                frame_no = shot.start_frame + i
                if frame_no < fade_seconds * fps:
                    frame = (frame * (frame_no / (fade_seconds * fps))).astype(np.uint8)
                writer.write_frame(frame)
            writer.write_audio(sound(shot.emotion, shot.num_frames / fps, rng))
    return path


def iter_truth(shots: list[Shot], film_id: str, fps: int) -> Iterator[dict[str, Any]]:
    """Ground-truth rows for a film's shots (what the simulated annotators perceive)."""
    for k, shot in enumerate(shots):
        yield {"film_id": film_id, "shot": k, "start_frame": shot.start_frame,
               "end_frame": shot.start_frame + shot.num_frames, "start_time": shot.start_frame / fps,
               "emotion": shot.emotion}
