"""Matplotlib figures of the analysis, drawn from the stats dict and returned as PNG bytes."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..taxonomy import EMOTIONS, SOURCES  # noqa: E402


def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=90)
    plt.close(fig)
    return out.getvalue()


def emotion_distribution(stats: dict[str, Any]) -> bytes:
    """Fig. 3: clips per emotion, one group of bars per source."""
    counts = stats["composition"]["emotions"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(EMOTIONS))
    for i, source in enumerate(SOURCES):
        ax.bar(x + (i - 1) * 0.27, [counts[source][e] for e in EMOTIONS], width=0.27, label=source)
    ax.set_xticks(x, EMOTIONS, rotation=30)
    ax.set_ylabel("clips")
    ax.legend()
    return _png(fig)


def positive_ratio(stats: dict[str, Any]) -> bytes:
    """Fig. 5: positive-to-total ratio per colourfulness and brightness bin."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for attr, bins in stats["colour"]["positive_ratio"].items():
        pts = [(b["bin"], b["ratio"]) for b in bins if b["ratio"] is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=attr)
    ax.set_xlim(-0.05, 1.05)
    ax.set_xlabel("bin (one decimal)")
    ax.set_ylabel("positive / total")
    ax.set_ylim(0, 1)
    ax.legend()
    return _png(fig)


def colour_means(stats: dict[str, Any]) -> bytes:
    """Mean colourfulness and brightness per emotion."""
    means = stats["colour"]["groups"]["emotion"]["means"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    x = np.arange(len(EMOTIONS))
    for i, attr in enumerate(("colorfulness", "brightness")):
        ax.bar(x + (i - 0.5) * 0.4, [means[e][attr] or 0.0 for e in EMOTIONS], width=0.4, label=attr)
    ax.set_xticks(x, EMOTIONS, rotation=30)
    ax.set_ylim(0, 1)
    ax.legend()
    return _png(fig)


def transition_heatmap(stats: dict[str, Any]) -> bytes:
    """The smoothed transition matrix P(next | current) as an annotated heatmap."""
    matrix = np.asarray(stats["transitions"]["smoothed"])
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=max(matrix.max(), 1e-9))
    ax.set_xticks(range(len(EMOTIONS)), EMOTIONS, rotation=45, ha="right")
    ax.set_yticks(range(len(EMOTIONS)), EMOTIONS)
    ax.set_xlabel("next clip")
    ax.set_ylabel("current clip")
    for i in range(len(EMOTIONS)):
        for j in range(len(EMOTIONS)):
            ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if matrix[i, j] < matrix.max() / 2 else "black")
    fig.colorbar(image, ax=ax, fraction=0.046)
    return _png(fig)


PLOTS = {
    "emotion_distribution": ("Emotion distribution per source (Fig. 3)", emotion_distribution),
    "colour_means": ("Mean colourfulness and brightness per emotion", colour_means),
    "positive_ratio": ("Positive-to-total ratio per colour bin (Fig. 5)", positive_ratio),
    "transition_heatmap": ("Emotion transitions across consecutive movie clips", transition_heatmap),
}
