"""Wan2.1 LoRA training on EmoVid (diffusers + peft + accelerate) and emotion-conditioned generation.

Names load on first use, so `emovid --help` does not import torch: ``from emovid_datasets.training import train``.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "config", "TrainResult": "trainer", "train": "trainer",
    "GenerateResult": "generate", "generate": "generate", "parse_lora": "generate",
    "DIFFSYNTH_TARGETS": "lora", "IMAGE_KV_TARGETS": "lora", "add_lora": "lora",
    "save_comfyui_lora": "lora", "save_diffusers_lora": "lora",
    "TASKS": "models", "TINY": "models", "build_tiny": "models", "load_pipeline": "models",
    "FlowMatchObjective": "objective", "LatentCache": "cache",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
