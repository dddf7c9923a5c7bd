"""The EmoVid label taxonomy: Mikels' eight emotions, valence, arousal, sources and search terms.

Every other module takes class names and orders from here, so the schema, the labelling
loop, the trainer prompts and the analysis can never disagree.
"""

from __future__ import annotations

# Mikels et al. (2005) in the paper's order; this order is the ClassLabel index order.
EMOTIONS: tuple[str, ...] = (
    "amusement",
    "awe",
    "contentment",
    "excitement",
    "anger",
    "disgust",
    "fear",
    "sadness",
)
POSITIVE_EMOTIONS: frozenset[str] = frozenset(EMOTIONS[:4])

VALENCES: tuple[str, ...] = ("positive", "negative")
SOURCES: tuple[str, ...] = ("animation", "movie", "sticker")
LABEL_SOURCES: tuple[str, ...] = ("human", "model")

# Annotators may answer "no specific emotion"; it is a vote, never a dataset class.
NONE_VOTE = "none"
VOTE_CHOICES: tuple[str, ...] = EMOTIONS + (NONE_VOTE,)

# Warriner, Kuperman & Brysbaert (2013) arousal norms for the noun forms, 1-9 scale (paper Fig. 2).
AROUSAL_NORM: dict[str, float] = {
    "excitement": 6.21, "amusement": 4.82, "awe": 3.83, "contentment": 4.60,
    "anger": 5.93, "disgust": 5.00, "fear": 6.14, "sadness": 2.81,
}
# Median split of AROUSAL_NORM. The median is 4.91; disgust (5.00) sits just above it, so it is
# "high". Rule: arousal > median of the eight norms.
AROUSAL_GROUPS: tuple[str, ...] = ("high", "low")

# Search terms for the sticker crawl: the eight emotion words plus EmoSet-style synonyms.
STICKER_QUERIES: dict[str, tuple[str, ...]] = {
    "amusement": ("amusement", "amused", "funny", "laughing", "lol", "hilarious"),
    "awe": ("awe", "amazed", "wow", "astonished", "mind blown", "wonder"),
    "contentment": ("contentment", "content", "relaxed", "peaceful", "cozy", "satisfied"),
    "excitement": ("excitement", "excited", "hyped", "thrilled", "yay", "celebrate"),
    "anger": ("anger", "angry", "furious", "rage", "mad", "annoyed"),
    "disgust": ("disgust", "disgusted", "gross", "eww", "yuck", "nauseous"),
    "fear": ("fear", "scared", "afraid", "terrified", "horror", "panic"),
    "sadness": ("sadness", "sad", "crying", "heartbroken", "tears", "depressed"),
}


def check_emotion(name: str) -> str:
    """Return ``name`` normalised to a known emotion, or raise ValueError naming the choices."""
    key = str(name).strip().lower()
    if key not in EMOTIONS:
        raise ValueError(f"unknown emotion {name!r}; expected one of {', '.join(EMOTIONS)}")
    return key


def valence_of(emotion: str) -> str:
    """'positive' or 'negative' for a Mikels emotion (EA-2cls and the `valence` column use this)."""
    return "positive" if check_emotion(emotion) in POSITIVE_EMOTIONS else "negative"


def arousal_of(emotion: str) -> str:
    """'high' or 'low' by a median split of the Warriner arousal norms."""
    values = sorted(AROUSAL_NORM.values())
    median = (values[3] + values[4]) / 2
    high, low = AROUSAL_GROUPS
    return high if AROUSAL_NORM[check_emotion(emotion)] > median else low


def emotion_sentence(emotion: str) -> str:
    """The sentence the paper appends to captions for benchmark and training prompts."""
    return f'The video is in the "{check_emotion(emotion)}" emotion.'


def emotion_prompt(caption: str, emotion: str) -> str:
    """Caption followed by the paper's emotion sentence, e.g. for Wan2.1 prompts."""
    caption = (caption or "").strip()
    return f"{caption} {emotion_sentence(emotion)}".strip()
