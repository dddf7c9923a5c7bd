"""The paper's colour attributes (EmoVid Eq. 1-3): hue, colourfulness and brightness of a clip.

Pixels of every ``frame_step``-th frame (0, 20, 40, ...) are pooled and converted to HSV
(h in degrees, s and v in [0, 1]). Hue is the unweighted circular mean, rounded to an
integer degree in [0, 360); colourfulness and brightness are the means of S and V rounded
to one decimal. "Colourfulness" is mean HSV saturation, not Hasler-Suesstrunk.
Exact math on the uint8 pixels (integer counts per HSV case, float64 tables), not float32 per pixel as before (~1e-8 apart).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .media.container import MediaError, MediaSource, describe
from .media.frames import iter_frames


def rgb_to_hsv(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 RGB (..., 3) to (hue degrees [0, 360), saturation [0, 1], value [0, 1]) as float32.

    Same convention as `colorsys`: V = max, S = (max - min) / max (0 when max = 0), H = 0 when grey.
    """
    x = rgb.astype(np.float32) / 255.0
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    vmax = x.max(axis=-1)
    delta = vmax - x.min(axis=-1)
    s = np.where(vmax > 0, delta / np.where(vmax > 0, vmax, 1), 0).astype(np.float32)
    safe = np.where(delta > 0, delta, 1)
    h = np.where(
        vmax == r, ((g - b) / safe) % 6, np.where(vmax == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    h = np.where(delta > 0, h * 60.0, 0.0).astype(np.float32)
    return h, s, vmax


COLOUR_STEP = 20  # every 20th frame (0, 20, 40, ...) is measured

# A pixel's hue depends only on (r - g, g - b), each in [-255, 255]: key (r - g + 255) * 511 + (g - b + 255).
_DIFFS = 511
_HUE_KEYS = _DIFFS * _DIFFS
# Its saturation and value depend only on (max, min): key max * 256 + min.
_SV_KEYS = 256 * 256


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """float64 sin and cos of the hue of every hue key, and saturation and max of every (max, min) key."""
    rg, gb = np.meshgrid(np.arange(-255, 256), np.arange(-255, 256), indexing="ij")
    r, g, b = rg + gb, gb, np.zeros_like(gb)  # the pixel shifted by -b: same hue
    hi = np.maximum(np.maximum(r, g), b)
    delta = hi - np.minimum(np.minimum(r, g), b)
    safe = np.where(delta > 0, delta, 1)
    sextant = np.where(hi == r, (g - b) / safe, np.where(hi == g, (b - r) / safe + 2, (r - g) / safe + 4))
    radians = np.where(delta > 0, sextant * (math.pi / 3), 0.0).ravel()  # grey: hue 0
    vmax, vmin = np.divmod(np.arange(_SV_KEYS), 256)
    saturation = np.where(vmax > vmin, (vmax - vmin) / np.maximum(vmax, 1), 0.0)
    return np.sin(radians), np.cos(radians), saturation, vmax


class ColourSums:
    """Running sums of the colour attributes over the frames added so far (one pass, any frame source).

    Pixels are counted per hue key and per (max, min) key, exactly; `sin`, `cos`, `saturation` and
    `value` are the float64 sums those counts give.
    """

    def __init__(self) -> None:
        self.hue_counts = np.zeros(_HUE_KEYS, dtype=np.int64)
        self.sv_counts = np.zeros(_SV_KEYS, dtype=np.int64)
        self.pixels = self.frames = 0

    def add(self, rgb: np.ndarray) -> None:
        """Add one (H, W, 3) uint8 RGB frame."""
        if rgb.dtype != np.uint8 or rgb.shape[-1:] != (3,):
            raise ValueError(f"expected (..., 3) uint8 RGB, got {rgb.dtype} {rgb.shape}")
        r, g, b = np.ascontiguousarray(rgb.reshape(-1, 3).T)  # channel planes: contiguous is several times faster
        sv_key = np.maximum(np.maximum(r, g), b).astype(np.uint16)
        sv_key <<= 8
        sv_key |= np.minimum(np.minimum(r, g), b)
        self.sv_counts += np.bincount(sv_key, minlength=_SV_KEYS)
        hue_key = r.astype(np.int32)  # (r - g + 255) * 511 + (g - b + 255) = 511 r - 510 g - b + 255 * 512, in place
        hue_key *= 511
        hue_key -= 510 * g.astype(np.int32)
        hue_key -= b
        hue_key += 255 * 512
        self.hue_counts += np.bincount(hue_key, minlength=_HUE_KEYS)
        self.pixels += r.size
        self.frames += 1

    @property
    def sin(self) -> float:
        """Sum of sin(hue) over the pixels added."""
        return float(self.hue_counts @ _tables()[0])

    @property
    def cos(self) -> float:
        """Sum of cos(hue) over the pixels added (grey pixels have hue 0)."""
        return float(self.hue_counts @ _tables()[1])

    @property
    def saturation(self) -> float:
        """Sum of S over the pixels added."""
        return float(self.sv_counts @ _tables()[2])

    @property
    def value(self) -> float:
        """Sum of V over the pixels added."""
        return int(self.sv_counts @ _tables()[3]) / 255

    def attributes(self, what: str) -> dict[str, Any]:
        """The attributes of the frames added (see `color_attributes`); MediaError naming ``what`` if none were."""
        if self.pixels == 0:
            raise MediaError(f"{what}: no frames to measure colour on")
        hue_raw = (math.degrees(math.atan2(self.sin, self.cos)) + 360.0) % 360.0
        colorfulness_raw = self.saturation / self.pixels
        brightness_raw = int(self.sv_counts @ _tables()[3]) / (255 * self.pixels)
        return {
            "colorfulness": round(colorfulness_raw, 1),
            "brightness": round(brightness_raw, 1),
            "hue": int(round(hue_raw)) % 360,
            "colorfulness_raw": colorfulness_raw,
            "brightness_raw": brightness_raw,
            "hue_raw": hue_raw,
            "frames_sampled": self.frames,
        }


def color_attributes(video: MediaSource, frame_step: int = COLOUR_STEP) -> dict[str, Any]:
    """Colour attributes of a clip given as a path or bytes.

    Returns ``colorfulness``, ``brightness`` (1 decimal), ``hue`` (int degrees) as the paper
    defines them, their unrounded ``*_raw`` values, and ``frames_sampled``.
    """
    sums = ColourSums()
    for frame in iter_frames(video, step=frame_step):
        sums.add(frame.array)
    return sums.attributes(describe(video))
