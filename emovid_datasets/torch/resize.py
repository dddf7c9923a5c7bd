"""Spatial resizing plans: scale-to-cover + centre crop, scale-to-fit + pad, and aspect-ratio buckets."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

RESIZE_MODES: tuple[str, ...] = ("crop", "pad", "bucket")
Size = tuple[int, int]  # (height, width)


@dataclass(frozen=True)
class ResizePlan:
    """Scale a frame to (scaled_height, scaled_width), then crop (or pad) it to (height, width) at (top, left)."""

    scaled_height: int
    scaled_width: int
    height: int
    width: int
    top: int
    left: int
    pad: bool

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Crop or pad an already scaled (scaled_height, scaled_width, C) uint8 image; padding is black."""
        if not self.pad:
            return image[self.top:self.top + self.height, self.left:self.left + self.width]
        out = np.zeros((self.height, self.width, image.shape[2]), dtype=image.dtype)
        out[self.top:self.top + self.scaled_height, self.left:self.left + self.scaled_width] = image
        return out


def plan_resize(src_height: int, src_width: int, height: int, width: int, *, pad: bool = False) -> ResizePlan:
    """Plan for a (src_height, src_width) frame: cover (height, width) and centre-crop, or fit and centre-pad."""
    pick = min if pad else max
    scale = pick(height / src_height, width / src_width)
    scaled_h = max(1, round(src_height * scale))
    scaled_w = max(1, round(src_width * scale))
    if pad:
        scaled_h, scaled_w = min(scaled_h, height), min(scaled_w, width)
        return ResizePlan(scaled_h, scaled_w, height, width, (height - scaled_h) // 2, (width - scaled_w) // 2, True)
    scaled_h, scaled_w = max(scaled_h, height), max(scaled_w, width)
    return ResizePlan(scaled_h, scaled_w, height, width, (scaled_h - height) // 2, (scaled_w - width) // 2, False)


def default_buckets(height: int, width: int, multiple: int = 16) -> list[Size]:
    """(height, width), its transpose and a square of about the same area (a multiple of ``multiple``: what the
    model's latent patches need), without repeats."""
    side = max(multiple, round(math.sqrt(height * width) / multiple) * multiple)
    return list(dict.fromkeys([(height, width), (width, height), (side, side)]))


def nearest_bucket(src_height: int, src_width: int, buckets: Sequence[Size]) -> Size:
    """The bucket whose aspect ratio is closest to the frame's (in log space, so 2:1 and 1:2 are symmetric)."""
    ratio = math.log(src_width / src_height)
    return min(buckets, key=lambda hw: abs(math.log(hw[1] / hw[0]) - ratio))


def check_buckets(buckets: Optional[Sequence[Size]], height: int, width: int) -> list[Size]:
    """Validated (height, width) buckets; `default_buckets(height, width)` when none are given."""
    if buckets is None:
        return default_buckets(height, width)
    out = [(int(h), int(w)) for h, w in buckets]
    if not out or any(h < 1 or w < 1 for h, w in out):
        raise ValueError(f"buckets must be a non-empty list of positive (height, width) pairs, got {buckets!r}")
    return out
