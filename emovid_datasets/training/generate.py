"""Generate an emotion-conditioned video (and optionally a GIF sticker) with Wan (2.1 or 2.2) and mixed LoRAs."""

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
from .lora import DIFFUSERS_FILE, expert_file, expert_of_file
from .models import EXPERTS, experts_of, load_pipeline

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


def lora_sources(path: str, two_experts: bool) -> list[tuple[str, tuple[str, ...]]]:
    """Where the LoRA at ``path`` goes: (folder or file for ``load_lora_weights``, the experts it goes into).

    A folder holding per-expert files (`lora.expert_file`, as a Wan2.2 run writes) gives each file to its
    expert, and so does a file whose name marks one (``..._high_noise...``); any other LoRA goes into every
    expert. Expert LoRAs need a two-expert (Wan2.2 A14B) pipeline: a ValueError otherwise.
    """
    folder = Path(path)
    if not folder.exists():
        raise FileNotFoundError(f"{path}: LoRA folder or file not found")
    if folder.is_dir():
        marked = [(str(folder / expert_file(DIFFUSERS_FILE, e)), (e,)) for e in EXPERTS
                  if (folder / expert_file(DIFFUSERS_FILE, e)).is_file()]
    else:
        expert = expert_of_file(folder.name)
        marked = [(path, (expert,))] if expert else []
    if marked and not two_experts:
        raise ValueError(f"{path}: a Wan2.2 expert LoRA ({', '.join(e for _, (e,) in marked)} noise), but this "
                         "model has a single transformer")
    return marked or [(path, EXPERTS if two_experts else EXPERTS[:1])]


def load_loras(pipe: Any, loras: Sequence[tuple[str, float]]) -> list[str]:
    """Load each (path, weight) LoRA as its own adapter and activate them all with their weights.

    On a Wan2.2 A14B pipeline each LoRA file goes into its expert (see `lora_sources`): ``transformer`` for
    high noise, ``transformer_2`` (``load_into_transformer_2``) for low noise.
    """
    experts = experts_of(pipe)
    two_experts = len(experts) == 2
    sources = [lora_sources(path, two_experts) for path, _ in loras]  # every path checked before any loads
    names = [f"lora_{i}" for i in range(len(loras))]
    active: dict[str, tuple[list[str], list[float]]] = {e: ([], []) for e in experts}
    for name, (_, weight), targets in zip(names, loras, sources):
        for source, into in targets:
            for expert in into:
                extra = {"load_into_transformer_2": True} if expert == "low" else {}
                pipe.load_lora_weights(source, adapter_name=name, **extra)
                active[expert][0].append(name)
                active[expert][1].append(weight)
    if names and not two_experts:
        pipe.set_adapters(names, [weight for _, weight in loras])
    elif names:  # diffusers' pipeline-wide set_adapters wants every adapter in every expert
        for expert, (chosen, weights) in active.items():
            if chosen:
                experts[expert].set_adapters(chosen, weights)
    return names


def generate(model: str, prompt: str, output: Union[str, os.PathLike], *, loras: Sequence[tuple[str, float]] = (),
             emotion: Optional[str] = None, image: Optional[str] = None, num_frames: int = 81, height: int = 480,
             width: int = 832, steps: int = 50, guidance: float = 5.0, negative_prompt: Optional[str] = None,
             seed: int = 0, fps: float = 16, sticker: bool = False, dtype: torch.dtype = torch.float32,
             device: Optional[str] = None) -> GenerateResult:
    """Render ``prompt`` (plus the paper's emotion sentence when ``emotion`` is given) to an MP4.

    ``image`` makes it image-to-video from that first frame; ``sticker`` also writes ``output`` as a GIF.
    Wan2.2 A14B pipelines take each expert's LoRA file into that expert (see `load_loras`).
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
