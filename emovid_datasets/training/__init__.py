"""Wan2.1 LoRA training on EmoVid (diffusers + peft + accelerate) and emotion-conditioned generation.

Names load on first use, so `emovid --help` does not import torch: ``from emovid_datasets.training import train``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "trainer", "TrainResult": "trainer", "train": "trainer",
    "GenerateResult": "generate", "generate": "generate", "parse_lora": "generate",
    "DIFFSYNTH_TARGETS": "lora", "IMAGE_KV_TARGETS": "lora", "add_lora": "lora",
    "save_comfyui_lora": "lora", "save_diffusers_lora": "lora",
    "TASKS": "models", "TINY": "models", "build_tiny": "models", "load_pipeline": "models",
    "FlowMatchObjective": "objective", "LatentCache": "cache",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
