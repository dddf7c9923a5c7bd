"""Temporal resampling by real frame timestamps: target times, clip windows and short-clip policies."""

from __future__ import annotations

import random
from typing import Optional, Sequence, TypeVar

SHORT_CLIP_POLICIES: tuple[str, ...] = ("loop", "hold", "drop")
WINDOWS: tuple[str, ...] = ("start", "random")
# Timestamps are exact rationals turned into floats; a target this close to a frame's time belongs to that frame.
TIME_EPS = 1e-6

T = TypeVar("T")


def check_num_frames(num_frames: int) -> int:
    """Return ``num_frames`` if it has the form 4k+1 (what the Wan VAE's 4x temporal compression needs)."""
    if not isinstance(num_frames, int) or num_frames < 1 or (num_frames - 1) % 4:
        raise ValueError(f"num_frames must be of the form 4k+1 (1, 5, 9, ..., 81), got {num_frames!r}")
    return num_frames


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ValueError naming the argument and the choices."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def target_times(num_frames: int, fps: float, offset: float = 0.0) -> list[float]:
    """Seconds (from the clip's first frame) at which the ``num_frames`` output frames are shown at ``fps``."""
    return [offset + i / fps for i in range(num_frames)]


def window_offset(duration: Optional[float], num_frames: int, fps: float, *, window: str, seed: int,
                  epoch: int, clip_id: str) -> float:
    """Start of the window taken from a clip: 0, or uniform over the clip for ``window="random"``.

    The random start depends only on (seed, epoch, clip_id), so it is the same in any worker
    and after resuming; a clip shorter than the window, or of unknown duration, starts at 0.
    """
    slack = (duration or 0.0) - num_frames / fps
    if window == "start" or slack <= 0:
        return 0.0
    return random.Random(f"{seed}:{epoch}:{clip_id}").uniform(0.0, slack)


def fill_short(frames: Sequence[T], num_frames: int, policy: str) -> Optional[list[T]]:
    """Extend the frames a short clip provides to ``num_frames`` by ``policy``; None when it is dropped.

    "loop" repeats the resampled frames from the first one, "hold" repeats the last frame,
    "drop" returns None (the caller skips the clip).
    """
    if len(frames) >= num_frames:
        return list(frames[:num_frames])
    if policy == "drop" or not frames:
        return None
    if policy == "loop":
        return [frames[i % len(frames)] for i in range(num_frames)]
    return list(frames) + [frames[-1]] * (num_frames - len(frames))
