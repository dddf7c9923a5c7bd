"""Tiny generated clips whose colour, brightness, motion and loudness depend on their emotion.

Hue follows the emotion (45-degree steps, jittered), positive emotions are brighter, high-arousal
ones move and are louder: an "emotion is visible" world in which a labeller can beat chance.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Union

import numpy as np

from emovid_datasets.media import Mp4Writer
from emovid_datasets.taxonomy import EMOTIONS, SOURCES, arousal_of, valence_of


def write_emotion_clip(path: Union[str, Path], emotion: str, rng: np.random.Generator, *, audio: bool = True,
                       frames: int = 8, size: tuple[int, int] = (32, 24), fps: int = 8) -> Path:
    """One clip of ``emotion``: coloured background, a moving square for high arousal, a tone whose level follows arousal."""
    e = EMOTIONS.index(emotion)
    hue = ((e * 45 + rng.uniform(-12, 12)) % 360) / 360
    value = (0.8 if valence_of(emotion) == "positive" else 0.4) + rng.uniform(-0.1, 0.1)
    rgb = np.array(colorsys.hsv_to_rgb(hue, 0.7 + rng.uniform(-0.1, 0.1), value)) * 255
    moving = arousal_of(emotion) == "high"
    w, h = size
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Mp4Writer(path, width=w, height=h, fps=fps, audio_rate=8000 if audio else None,
                   audio_layout="mono") as writer:
        for i in range(frames):
            frame = np.empty((h, w, 3), dtype=np.uint8)
            frame[:] = rgb.astype(np.uint8)
            if moving:
                x = (i * 5) % (w - 8)
                frame[8:16, x:x + 8] = 255 - frame[8:16, x:x + 8]
            writer.write_frame(frame)
        if audio:
            t = np.arange(int(8000 * frames / fps)) / 8000
            level = 0.5 if moving else 0.05
            writer.write_audio((level * np.sin(2 * np.pi * 300 * t)).astype(np.float32)[None, :])
    return path


def make_emotion_rows(root: Union[str, Path], *, per_emotion: int = 8, seed: int = 0,
                      sources: tuple[str, ...] = SOURCES) -> list[dict]:
    """Manifest rows (clip_id, source, video_path, origin, true_emotion) for ``per_emotion`` clips per emotion and source."""
    rng = np.random.default_rng(seed)
    rows = []
    for source in sources:
        for emotion in EMOTIONS:
            for k in range(per_emotion):
                clip_id = f"{source}-{emotion}-{k:02d}"
                path = write_emotion_clip(Path(root) / f"{clip_id}.mp4", emotion, rng, audio=source != "sticker")
                rows.append({"clip_id": clip_id, "source": source, "video_path": str(path),
                             "origin": f"test:{clip_id}", "true_emotion": emotion})
    return rows
