"""peft LoRA on the Wan transformer (DiffSynth-Studio's targets) and its two file formats.

- diffusers: ``transformer.blocks.N.attn1.to_q.lora_A.weight`` with the adapter config in the safetensors
  metadata, so ``WanPipeline.load_lora_weights`` restores alpha even when alpha != rank;
- ComfyUI / original Wan: ``diffusion_model.blocks.N.self_attn.q.lora_A.weight`` plus a ``.alpha`` scalar per
  layer (the convention ComfyUI and diffusers' converter read).

Wan2.2 A14B's experts (`models.Experts`) get one LoRA each and one file per expert and format, named
``<file>_high_noise.safetensors`` / ``<file>_low_noise.safetensors``: the high-noise file goes into the
pipeline's ``transformer`` (``load_lora_weights(path)``), the low-noise one into ``transformer_2``
(``load_lora_weights(path, load_into_transformer_2=True)``); in ComfyUI each onto its own expert's model.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..atomic import atomic_path
from .models import EXPERTS, Experts

DIFFSYNTH_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
IMAGE_KV_TARGETS = ("add_k_proj", "add_v_proj")
DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"
COMFYUI_FILE = "lora_comfyui.safetensors"
ADAPTER = "default"

# diffusers module path (inside blocks.N.) -> original Wan / ComfyUI module path.
_TO_ORIGINAL = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o",
    "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k", "attn2.to_v": "cross_attn.v",
    "attn2.to_out.0": "cross_attn.o",
    "attn2.add_k_proj": "cross_attn.k_img", "attn2.add_v_proj": "cross_attn.v_img",
    "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
}
_KEY = re.compile(r"^(?:transformer\.)?blocks\.(\d+)\.(.+)\.(lora_[AB])\.weight$")


def expert_file(name: str, expert: str) -> str:
    """The file name of ``expert``'s LoRA: ``pytorch_lora_weights.safetensors`` -> ``..._high_noise.safetensors``."""
    if expert not in EXPERTS:
        raise ValueError(f"unknown expert {expert!r}; expected one of {', '.join(EXPERTS)}")
    path = Path(name)
    return f"{path.stem}_{expert}_noise{path.suffix}"


def expert_of_file(name: str) -> Optional[str]:
    """The expert a LoRA file name marks (``..._high_noise...`` or ``..._low_noise...``), else None."""
    found = [expert for expert in EXPERTS if f"{expert}_noise" in name.lower()]
    return found[0] if len(found) == 1 else None


def add_lora(transformer: torch.nn.Module, rank: int = 32, alpha: float = 32, *, image_kv: bool = False) -> Any:
    """Add a fresh LoRA adapter (B = 0, so the model is unchanged) on DiffSynth's targets; returns its LoraConfig.

    ``image_kv`` also adapts the I2V image key/value projections (add_k_proj/add_v_proj). `Experts` get one
    adapter per expert, all of one config (the one returned).
    """
    from peft import LoraConfig

    if isinstance(transformer, Experts):
        # every expert's random A from the same RNG state: what a run training that expert alone draws
        configs = []
        for module in transformer.experts.values():
            with torch.random.fork_rng(devices=[]):
                configs.append(add_lora(module, rank, alpha, image_kv=image_kv))
        return configs[0]
    if rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {rank}")
    targets = list(DIFFSYNTH_TARGETS)
    if image_kv:
        if transformer.config.added_kv_proj_dim is None:
            raise ValueError("image key/value LoRA needs an I2V transformer (added_kv_proj_dim is not set)")
        targets += IMAGE_KV_TARGETS
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights=True, target_modules=targets)
    transformer.add_adapter(config, adapter_name=ADAPTER)
    return config


def lora_state_dict(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors keyed like ``blocks.0.attn1.to_q.lora_A.weight`` (detached, contiguous); for `Experts`
    each expert's under its name (``high.blocks.0...``)."""
    from peft.utils import get_peft_model_state_dict

    if isinstance(transformer, Experts):
        return {f"{name}.{key}": tensor for name, module in transformer.experts.items()
                for key, tensor in lora_state_dict(module).items()}
    state = get_peft_model_state_dict(transformer, adapter_name=ADAPTER)
    return {k: v.detach().contiguous() for k, v in state.items()}


def load_lora_state(transformer: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put saved adapter tensors (``lora_state_dict`` keys) back into an adapted transformer; all must match."""
    from peft.utils import set_peft_model_state_dict

    if isinstance(transformer, Experts):
        names = {key.partition(".")[0] for key in state}
        if names != set(transformer.experts):
            raise ValueError(f"LoRA checkpoint holds experts {sorted(names)}, this run trains "
                             f"{sorted(transformer.experts)}")
        for name, module in transformer.experts.items():
            load_lora_state(module, {k.partition(".")[2]: v for k, v in state.items() if k.partition(".")[0] == name})
        return
    result = set_peft_model_state_dict(transformer, state, adapter_name=ADAPTER)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"LoRA checkpoint has keys this model lacks, e.g. {unexpected[0]}")


def adapter_metadata(transformer: torch.nn.Module) -> dict:
    """The peft config as a JSON-able dict, the metadata diffusers reads back (rank, alpha, targets)."""
    config = transformer.peft_config[ADAPTER].to_dict()
    return {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}


def save_diffusers_lora(transformer: torch.nn.Module, directory: Union[str, os.PathLike]) -> Path:
    """Write ``DIR/pytorch_lora_weights.safetensors`` for ``WanPipeline.load_lora_weights`` (atomically).

    For `Experts`, one file per expert (see `expert_file`); returns ``DIR``, which `generate.load_loras` takes.
    """
    if isinstance(transformer, Experts):
        for name, module in transformer.experts.items():
            _save_diffusers_file(module, Path(directory) / expert_file(DIFFUSERS_FILE, name))
        return Path(directory)
    return _save_diffusers_file(transformer, Path(directory) / DIFFUSERS_FILE)


def _save_diffusers_file(transformer: torch.nn.Module, final: Path) -> Path:
    """Write one transformer's adapter as a diffusers LoRA file at ``final`` (atomically)."""
    from diffusers import WanPipeline

    with atomic_path(final) as tmp:
        WanPipeline.save_lora_weights(tmp.parent, transformer_lora_layers=lora_state_dict(transformer),
                                      weight_name=tmp.name,
                                      transformer_lora_adapter_metadata=adapter_metadata(transformer))
    return final


def to_original_keys(state: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """Rename diffusers LoRA keys to the ComfyUI/original Wan layout and add one ``.alpha`` per layer."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        match = _KEY.match(key)
        if not match or match.group(2) not in _TO_ORIGINAL:
            raise ValueError(f"LoRA key {key!r} has no original Wan name")
        block, module, half = match.groups()
        base = f"diffusion_model.blocks.{block}.{_TO_ORIGINAL[module]}"
        out[f"{base}.{half}.weight"] = tensor
        out[f"{base}.alpha"] = torch.tensor(float(alpha))
    return out


def save_comfyui_lora(transformer: torch.nn.Module, path: Union[str, os.PathLike]) -> Path:
    """Write the adapter with ComfyUI/original Wan keys (``diffusion_model.blocks.N.self_attn.q...``).

    For `Experts`, one file per expert next to ``path`` (see `expert_file`); returns their folder.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if isinstance(transformer, Experts):
        for name, module in transformer.experts.items():
            save_comfyui_lora(module, path.with_name(expert_file(path.name, name)))
        return path.parent
    metadata = adapter_metadata(transformer)
    state = to_original_keys(lora_state_dict(transformer), metadata["lora_alpha"])
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "lora_rank": str(metadata["r"]),
                                             "lora_alpha": str(metadata["lora_alpha"]),
                                             "target_modules": json.dumps(metadata["target_modules"])})
    return path
