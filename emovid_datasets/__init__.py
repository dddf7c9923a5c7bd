"""EmoVid: a multimodal emotion video dataset of artistic content (AAAI 2026).

Names load on first use, so importing a light submodule (``emovid_datasets.taxonomy``, the training
objective) does not pull in `datasets` or PyAV.
"""

from __future__ import annotations

from .lazy import lazy_exports

_EXPORTS = {
    "color_attributes": "color",
    "load_emovid": "loading", "without_media_decoding": "loading",
    "CONFIGS": "schema", "FEATURES": "schema", "SPLITS": "schema",
    "EMOTIONS": "taxonomy", "SOURCES": "taxonomy", "VALENCES": "taxonomy", "emotion_prompt": "taxonomy",
    "valence_of": "taxonomy",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
