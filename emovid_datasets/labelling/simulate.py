"""Simulated annotators for the demo: noisy voters with a seeded error rate and some `none` answers.

They let the demo run the whole human-machine loop (2-of-3 rule, kappas, labeller training)
without people. Errors prefer an emotion of the same valence, as real confusions do.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..taxonomy import EMOTIONS, NONE_VOTE, check_emotion, valence_of


def simulate_votes(truth: Mapping[str, str], *, annotators: int = 3, error_rate: float = 0.2,
                   none_rate: float = 0.05, same_valence_share: float = 0.7, seed: int = 0,
                   prefix: str = "sim") -> list[dict[str, str]]:
    """Votes (clip_id, annotator, label) of ``annotators`` simulated people for ``clip_id -> true emotion``.

    Each vote is `none` with probability ``none_rate``, a wrong emotion with ``error_rate`` (of the same
    valence with ``same_valence_share``), else the truth. Same seed and inputs, same votes.
    """
    if not 0 <= error_rate + none_rate <= 1:
        raise ValueError("error_rate + none_rate must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    votes = []
    for clip_id in sorted(truth):
        true = check_emotion(truth[clip_id])
        same = [e for e in EMOTIONS if e != true and valence_of(e) == valence_of(true)]
        other = [e for e in EMOTIONS if valence_of(e) != valence_of(true)]
        for a in range(annotators):
            draw = rng.random()
            if draw < none_rate:
                label = NONE_VOTE
            elif draw < none_rate + error_rate:
                pool = same if rng.random() < same_valence_share else other
                label = pool[rng.integers(len(pool))]
            else:
                label = true
            votes.append({"clip_id": clip_id, "annotator": f"{prefix}-{a + 1}", "label": label})
    return votes
