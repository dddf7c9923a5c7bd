"""Generate an emotion-conditioned video (and optionally a GIF sticker) with Wan2.1 and mixed LoRAs."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..devices import default_device
from ..media import Mp4Writer, write_gif
from ..taxonomy import emotion_prompt
from .models import load_pipeline

log = logging.getLogger(__name__)


@dataclass
class GenerateResult:
    """The files written, the prompt used, and the frames as uint8 (F, H, W, 3)."""

    video: Path
    gif: Optional[Path]
    prompt: str
    frames: np.ndarray


def parse_lora(spec: str) -> tuple[str, float]:
    """``DIR[:weight]`` or ``FILE[:weight]`` -> (path, weight); the weight defaults to 1.0."""
    path, sep, weight = spec.rpartition(":")
    if sep and path:
        try:
            return path, float(weight)
        except ValueError:
            pass
    return spec, 1.0


def load_loras(pipe: Any, loras: Sequence[tuple[str, float]]) -> list[str]:
    """Load each (path, weight) LoRA as its own adapter and activate them all with their weights."""
    names = []
    for i, (path, _) in enumerate(loras):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: LoRA folder or file not found")
        name = f"lora_{i}"
        pipe.load_lora_weights(path, adapter_name=name)
        names.append(name)
    if names:
        pipe.set_adapters(names, [weight for _, weight in loras])
    return names


def generate(model: str, prompt: str, output: Union[str, os.PathLike], *, loras: Sequence[tuple[str, float]] = (),
             emotion: Optional[str] = None, image: Optional[str] = None, num_frames: int = 81, height: int = 480,
             width: int = 832, steps: int = 50, guidance: float = 5.0, negative_prompt: Optional[str] = None,
             seed: int = 0, fps: float = 16, sticker: bool = False, dtype: torch.dtype = torch.float32,
             device: Optional[str] = None) -> GenerateResult:
    """Render ``prompt`` (plus the paper's emotion sentence when ``emotion`` is given) to an MP4.

    ``image`` makes it image-to-video from that first frame; ``sticker`` also writes ``output`` as a GIF.
    """
    from PIL import Image

    if emotion:
        prompt = emotion_prompt(prompt, emotion)
    first_frame = None
    if image is not None:
        try:
            first_frame = Image.open(image).convert("RGB")
        except OSError as exc:
            raise ValueError(f"{image}: cannot read the first frame ({exc})") from exc
    pipe = load_pipeline(model, "i2v" if image is not None else "t2v", dtype=dtype)
    device = device or default_device()
    pipe.to(device)
    load_loras(pipe, loras)
    extra = {"image": first_frame} if first_frame is not None else {}
    result = pipe(prompt=prompt, negative_prompt=negative_prompt, num_frames=num_frames, height=height,
                  width=width, num_inference_steps=steps, guidance_scale=guidance, output_type="np",
                  generator=torch.Generator(device).manual_seed(seed), **extra)
    frames = (np.clip(result.frames[0], 0, 1) * 255).round().astype(np.uint8)
    output = Path(output)
    with Mp4Writer(output, width=frames.shape[2], height=frames.shape[1], fps=fps) as writer:
        for frame in frames:
            writer.write_frame(frame)
    gif = write_gif(output.with_suffix(".gif"), frames, fps) if sticker else None
    log.info("wrote %s (%d frames, %dx%d)%s for prompt %r", output, len(frames), frames.shape[2], frames.shape[1],
             f" and {gif}" if gif else "", prompt)
    return GenerateResult(video=output, gif=gif, prompt=prompt, frames=frames)
