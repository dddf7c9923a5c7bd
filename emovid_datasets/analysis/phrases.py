"""Frequent 2-4 word caption phrases per emotion (paper §6: the five most frequent phrases after noise filtering).

A phrase is a run of 2-4 consecutive words inside one clause (punctuation splits clauses) that
contains no stop word; words are lowercased letters/apostrophes/hyphens. A phrase counts once per
caption (document frequency), so one repetitive caption cannot dominate. Ties sort alphabetically.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from ..taxonomy import EMOTIONS

# English function words (articles, pronouns, prepositions, conjunctions, auxiliaries, fillers). Not
# scikit-learn's list: it also drops content words that matter here ("cry", "fire", "together").
FUNCTION_WORDS: frozenset[str] = frozenset("""
a about above after again against all also am an and any are around as at be because been before being below
between both but by can could did do does doing down during each either even ever every few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself just me more
most my myself neither no nor not of off on once only or other our ours ourselves out over own same she should
so some such than that the their theirs them themselves then there these they this those through to too under
until up upon very was we were what when where which while who whom whose why will with within without would
you your yours yourself yourselves it's there's
""".split())
# Words every caption generator uses about the medium itself: noise for an emotion analysis.
CAPTION_NOISE_WORDS: frozenset[str] = frozenset({
    "video", "clip", "scene", "shows", "showing", "depicts", "features", "appears", "image", "frame", "footage",
})
STOP_WORDS: frozenset[str] = FUNCTION_WORDS | CAPTION_NOISE_WORDS

_CLAUSE = re.compile(r"[.,;:!?()\[\]\"\n]+")
_WORD = re.compile(r"[a-z][a-z'\-]*")


def caption_phrases(caption: str, min_words: int = 2, max_words: int = 4,
                    stop_words: frozenset[str] = STOP_WORDS) -> set[str]:
    """The distinct stop-word-free phrases of ``min_words``..``max_words`` consecutive words in one caption."""
    found: set[str] = set()
    for clause in _CLAUSE.split((caption or "").lower()):
        words = _WORD.findall(clause)
        for n in range(min_words, max_words + 1):
            for i in range(len(words) - n + 1):
                gram = words[i:i + n]
                if not any(w in stop_words for w in gram):
                    found.add(" ".join(gram))
    return found


def top_phrases(captions: Iterable[str], top: int = 5, **kwargs: Any) -> list[tuple[str, int]]:
    """The ``top`` phrases by the number of captions containing them, as (phrase, count)."""
    counts: Counter = Counter()
    for caption in captions:
        counts.update(caption_phrases(caption, **kwargs))
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


def phrases_by_emotion(rows: Sequence[Mapping[str, str]], top: int = 5) -> dict[str, list[dict[str, object]]]:
    """For each emotion, its ``top`` caption phrases as [{"phrase", "captions"}]."""
    return {e: [{"phrase": p, "captions": c}
                for p, c in top_phrases((r.get("caption") or "" for r in rows if r["emotion"] == e), top=top)]
            for e in EMOTIONS}
