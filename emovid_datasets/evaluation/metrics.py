"""Benchmark metrics on arrays: Fréchet distance, flicker, SD and CLIP scores, EA accuracies with intervals.

Model-free: feature extraction lives in `extractors`, matching and reporting in `evaluate`.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Optional, Sequence

import numpy as np
from scipy import stats as sps

from ..taxonomy import EMOTIONS, valence_of


class SmallSampleWarning(UserWarning):
    """Fewer samples than feature dimensions: the covariance is rank-deficient and FD is biased upward."""


def gaussian_stats(features: np.ndarray, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of (N, d) features; ``ddof=1`` as `np.cov` (pytorch-fid), ``ddof=0`` as StyleGAN-V."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need an (N >= 2, d) feature matrix, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=ddof).reshape(x.shape[1], x.shape[1])


def frechet_from_stats(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr A + Tr B - 2 Tr((A B)^1/2), the trace term via the symmetric A^1/2 B A^1/2 (eigh).

    Negative eigenvalues from round-off are clipped to 0 (the tf-gan `trace_sqrt_product` route).
    """
    w, u = np.linalg.eigh(cov_a)
    root_a = (u * np.sqrt(np.clip(w, 0, None))) @ u.T
    inner = root_a @ cov_b @ root_a
    lam = np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0, None)
    diff = np.asarray(mu_a) - np.asarray(mu_b)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(lam).sum())


def frechet_distance(real: np.ndarray, generated: np.ndarray, ddof: int = 1) -> float:
    """Fréchet distance between Gaussian fits of two (N, d) feature sets (FVD when the features are I3D's).

    Warns with `SmallSampleWarning` when either N is below d: the value is then biased upward and
    noisy, and only comparable with FVDs of the same N, backbone, frame count and resolution.
    """
    stats_real, stats_generated = gaussian_stats(real, ddof), gaussian_stats(generated, ddof)
    for name, x in (("real", np.asarray(real)), ("generated", np.asarray(generated))):
        if x.shape[0] < x.shape[1]:
            warnings.warn(f"FVD: {x.shape[0]} {name} samples < {x.shape[1]} feature dims; the covariance is "
                          "rank-deficient and the distance biased upward", SmallSampleWarning, stacklevel=2)
    return frechet_from_stats(*stats_real, *stats_generated)


def flicker(frames: Iterable[np.ndarray]) -> float:
    """mean_t mean|I_{t+1} - I_t| / 255 over pixels and channels (uint8 frames); 1 minus VBench's score.

    Lower is better; motion counts as flicker (no static filter, as the paper's values imply).
    """
    total, pairs, previous = 0.0, 0, None
    for frame in frames:
        current = np.asarray(frame, dtype=np.int16)
        if previous is not None:
            total += float(np.abs(current - previous).mean())
            pairs += 1
        previous = current
    if not pairs:
        raise ValueError("flicker needs at least two frames")
    return total / pairs / 255.0


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def sd_score(frame_embeddings: np.ndarray, reference_embedding: np.ndarray | None = None) -> float:
    """Mean cosine between each frame embedding and a reference embedding.

    Without a reference the first frame is the reference and frames 1..T-1 are scored (the
    trivial cos(frame_0, frame_0) = 1 is left out); with a reference (e.g. the I2V conditioning
    image) every frame is scored.
    """
    frames = _unit(frame_embeddings)
    if reference_embedding is None:
        if len(frames) < 2:
            raise ValueError("SD score against the first frame needs at least two frames")
        reference, frames = frames[0], frames[1:]
    else:
        reference = _unit(np.asarray(reference_embedding).reshape(-1))
    return float((frames @ reference).mean())


def clip_score(frame_embeddings: np.ndarray, text_embedding: np.ndarray) -> float:
    """Mean over frames of the raw cosine between frame and text embeddings (no 2.5x or 100x scaling, no clamp)."""
    return float((_unit(frame_embeddings) @ _unit(np.asarray(text_embedding).reshape(-1))).mean())


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (as fractions); (nan, nan) when n = 0."""
    if n == 0:
        return math.nan, math.nan
    z = float(sps.norm.ppf(0.5 + level / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _accuracy(hits: Sequence[bool], level: float) -> dict[str, Any]:
    k, n = int(sum(hits)), len(hits)
    low, high = wilson_interval(k, n, level)
    return {"value": 100.0 * k / n if n else None, "correct": k, "n": n,
            "ci_low": 100.0 * low if n else None, "ci_high": 100.0 * high if n else None}


def ea_scores(predicted: Sequence[str], targets: Sequence[str], level: float = 0.95) -> dict[str, Any]:
    """EA-8cls (top-1 over the 8 emotions) and EA-2cls (valence of prediction == valence of target).

    Values in percent, as in Table 3, with Wilson ``level`` intervals.
    """
    if len(predicted) != len(targets):
        raise ValueError(f"{len(predicted)} predictions for {len(targets)} targets")
    return {
        "ea8": _accuracy([p == t for p, t in zip(predicted, targets)], level),
        "ea2": _accuracy([valence_of(p) == valence_of(t) for p, t in zip(predicted, targets)], level),
        "interval": f"Wilson {level:.0%}",
    }


def argmax_emotions(probabilities: np.ndarray) -> list[Optional[str]]:
    """The emotion name of each row's largest probability (columns in EMOTIONS order); None for a row with
    no probability mass, which is how a classifier says it could not answer (e.g. an unparsable VLM reply)."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(EMOTIONS):
        raise ValueError(f"classifier output must be (N, {len(EMOTIONS)}), got {probabilities.shape}")
    return [EMOTIONS[i] if row.sum() > 0 else None for i, row in zip(probabilities.argmax(axis=1), probabilities)]
