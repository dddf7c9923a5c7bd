"""EmoVid: a multimodal emotion video dataset of artistic content (AAAI 2026)."""

from .color import color_attributes
from .loading import load_emovid, without_media_decoding
from .schema import CONFIGS, FEATURES, SPLITS
from .taxonomy import EMOTIONS, SOURCES, VALENCES, emotion_prompt, valence_of

__all__ = [
    "CONFIGS", "EMOTIONS", "FEATURES", "SOURCES", "SPLITS", "VALENCES",
    "color_attributes", "emotion_prompt", "load_emovid", "valence_of", "without_media_decoding",
]
__version__ = "0.1.0"
