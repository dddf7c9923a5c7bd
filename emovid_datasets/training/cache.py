"""The precompute phase: encode clips once (VAE latents, text, I2V conditioning) into a resumable cache.

One safetensors per clip, written atomically, in a folder named after the settings that shaped it (the
clip's bucket among them), so a rerun skips what is there and a change of model, task or bucket never reuses
stale latents. Latents are
the VAE posterior mode, normalised with the VAE's latents_mean/std (x0 as Wan and DiffSynth-Studio train
on it). Text embeddings are stored trimmed and zero-padded on load.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union
from urllib.parse import quote, unquote

import torch

from ..atomic import atomic_path, atomic_write_text
from ..torch.batching import Bucket
from .models import TEXT_LEN, WanPipelines

log = logging.getLogger(__name__)


def frames_to_pil(frames: torch.Tensor) -> list:
    """(B, C, H, W) tensors in [-1, 1] -> PIL images, the input Wan's CLIP processor takes at inference."""
    from PIL import Image

    pixels = ((frames.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [Image.fromarray(p.permute(1, 2, 0).cpu().numpy()) for p in pixels]


def _normalisers(vae: torch.nn.Module, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (1, vae.config.z_dim, 1, 1, 1)
    mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32, device=device).view(shape)
    std = torch.tensor(vae.config.latents_std, dtype=torch.float32, device=device).view(shape)
    return mean, std


def prompt_lengths(pipe: WanPipelines, prompts: list[str], text_len: int = TEXT_LEN) -> list[int]:
    """Tokens per prompt as the pipeline encodes it (cleaned, with </s>, truncated to ``text_len``)."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    masks = pipe.tokenizer([prompt_clean(p) for p in prompts], padding="max_length", max_length=text_len,
                           truncation=True, add_special_tokens=True).attention_mask
    return [int(sum(m)) for m in masks]


@torch.no_grad()
def encode_batch(pipe: WanPipelines, batch: Mapping[str, Any], task: str, device: torch.device,
                 text_len: int = TEXT_LEN) -> dict[str, torch.Tensor]:
    """Encode an adapter batch (``video`` (B,C,T,H,W) in [-1,1], ``prompt``, ``first_frame``) for training.

    Returns ``latents`` (normalised posterior mode, x0), ``prompt_embeds`` (B, text_len, D) and
    ``prompt_lens``; for i2v also ``y`` (4 mask + 16 first-frame channels; TI2V-5B: its clean first latent
    frame) and, where the model has a CLIP image encoder (Wan2.1 I2V), ``image_embeds``.
    """
    vae = pipe.vae
    video = batch["video"].to(device, vae.dtype)
    mean, std = _normalisers(vae, device)
    out = {"latents": (vae.encode(video).latent_dist.mode().float() - mean) / std}
    prompts = list(batch["prompt"])
    embeds, _ = pipe.encode_prompt(prompt=prompts, do_classifier_free_guidance=False,
                                   max_sequence_length=text_len, device=device)
    out["prompt_embeds"] = embeds
    out["prompt_lens"] = torch.tensor(prompt_lengths(pipe, prompts, text_len))
    if task == "i2v":
        first = batch["first_frame"].to(device, torch.float32)
        _, frames, height, width = video.shape[1:]
        # the pipeline's own conditioning (first frame + zeros, posterior mode, mask); it takes one image a call
        out["y"] = torch.cat([pipe.prepare_latents(image[None], 1, vae.config.z_dim, height, width, frames,
                                                   torch.float32, device, torch.Generator(device).manual_seed(0))[1]
                              for image in first])
        if getattr(pipe, "image_encoder", None) is not None:
            out["image_embeds"] = pipe.encode_image(frames_to_pil(first), device)
    return out


def pad_prompt(embeds: torch.Tensor, text_len: int = TEXT_LEN) -> torch.Tensor:
    """Zero-pad trimmed (L, D) text embeddings to (text_len, D), exactly as the Wan pipelines do."""
    return torch.cat([embeds, embeds.new_zeros(text_len - embeds.shape[0], embeds.shape[1])])


class LatentCache:
    """A folder of per-clip safetensors for one (model, task, frames, size, text length) setting."""

    def __init__(self, root: Union[str, os.PathLike], settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:10]
        label = f"{settings['task']}-{settings['num_frames']}x{settings['height']}x{settings['width']}"
        self.dir = Path(root) / f"{label}-{digest}"
        self.dir.mkdir(parents=True, exist_ok=True)
        if not (self.dir / "settings.json").exists():
            atomic_write_text(self.dir / "settings.json", json.dumps(self.settings, indent=2, sort_keys=True))
        self.text_len = int(settings.get("text_len", TEXT_LEN))

    def path(self, clip_id: str) -> Path:
        """Where ``clip_id``'s encoded tensors live (the id is URL-quoted, so any id is a safe file name)."""
        return self.dir / f"{quote(clip_id, safe='')}.safetensors"

    def has(self, clip_id: str) -> bool:
        """Whether ``clip_id`` is already encoded."""
        return self.path(clip_id).exists()

    def clip_ids(self) -> list[str]:
        """Cached clip ids, sorted (the training order is a seeded permutation of this list)."""
        return sorted(unquote(p.name[: -len(".safetensors")]) for p in self.dir.glob("*.safetensors")
                      if not p.name.startswith("."))

    def write(self, clip_id: str, tensors: Mapping[str, torch.Tensor], prompt: str, dtype: torch.dtype) -> Path:
        """Store one clip's tensors (cast to ``dtype``) atomically."""
        from safetensors.torch import save_file

        data = {k: v.detach().to("cpu", dtype).contiguous() for k, v in tensors.items()}
        with atomic_path(self.path(clip_id)) as tmp:
            save_file(data, str(tmp), metadata={"clip_id": clip_id, "prompt": prompt})
        return self.path(clip_id)

    def load(self, clip_id: str) -> dict[str, torch.Tensor]:
        """One clip's tensors in fp32, text padded to the cache's text length."""
        from safetensors.torch import load_file

        data = {k: v.float() for k, v in load_file(str(self.path(clip_id))).items()}
        data["prompt_embeds"] = pad_prompt(data["prompt_embeds"], self.text_len)
        return data


class BucketCache:
    """Latent caches keyed by bucket: each clip's tensors live in the `LatentCache` folder of its bucket's shape."""

    def __init__(self, root: Union[str, os.PathLike], settings: Mapping[str, Any],
                 buckets: Mapping[str, Bucket]) -> None:
        self.root = Path(root)
        self.bucket_of = dict(buckets)
        self.caches = {bucket: LatentCache(root, {**settings, "num_frames": bucket.frames, "height": bucket.height,
                                                  "width": bucket.width})
                       for bucket in dict.fromkeys(self.bucket_of.values())}
        self.text_len = int(settings.get("text_len", TEXT_LEN))

    def has(self, clip_id: str) -> bool:
        """Whether ``clip_id`` is already encoded at its bucket's shape."""
        return self.caches[self.bucket_of[clip_id]].has(clip_id)

    def clip_ids(self) -> list[str]:
        """The clips of this selection that are encoded, sorted."""
        return sorted(c for c in self.bucket_of if self.has(c))

    def write(self, clip_id: str, tensors: Mapping[str, torch.Tensor], prompt: str, dtype: torch.dtype) -> Path:
        """Store one clip's tensors in its bucket's folder (see `LatentCache.write`)."""
        return self.caches[self.bucket_of[clip_id]].write(clip_id, tensors, prompt, dtype)

    def load(self, clip_id: str) -> dict[str, torch.Tensor]:
        """One clip's tensors from its bucket's folder (see `LatentCache.load`)."""
        return self.caches[self.bucket_of[clip_id]].load(clip_id)


def fill_cache(pipe: WanPipelines, clips: Iterable[Mapping[str, Any]], cache: BucketCache, task: str,
               device: torch.device, dtype: torch.dtype = torch.float32, total: Optional[int] = None) -> int:
    """Encode every clip from ``clips`` (adapter samples, one at a time) not yet in ``cache``; returns how many."""
    from tqdm.auto import tqdm

    written = 0
    for sample in tqdm(clips, total=total, desc="caching latents", unit="clip"):
        clip_id = sample["clip_id"]
        if cache.has(clip_id):
            continue
        batch = {"video": sample["video"][None], "prompt": [sample["prompt"]]}
        if task == "i2v":
            batch["first_frame"] = sample["first_frame"][None]
        encoded = encode_batch(pipe, batch, task, device, cache.text_len)
        length = int(encoded.pop("prompt_lens")[0])
        tensors = {k: v[0] for k, v in encoded.items()}
        tensors["prompt_embeds"] = tensors["prompt_embeds"][:length]
        cache.write(clip_id, tensors, sample["prompt"], dtype)
        written += 1
    log.info("cache %s: %d clips encoded, %d cached in all", cache.root, written, len(cache.clip_ids()))
    return written
