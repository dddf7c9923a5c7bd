"""Any diffusers video pipeline: its family's recommended settings (`FAMILIES`), loading, and one call.

A model is a diffusers folder or Hub id whose ``model_index.json`` names a pipeline class with a
text-to-video (``prompt``) or image-to-video (``prompt`` and ``image``) call, or one of the tiny random
models (`models.TINY_WAN`, `models.TINY_WAN22`, `models.TINY_TI2V`, `models.TINY_COGVIDEOX`). Its family
is read from ``model_index.json`` before any weights load; a pipeline class outside the table gets the
defaults of its own call signature.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Optional

import numpy as np

from .models import (
    TINY,
    TINY_COGVIDEOX,
    TINY_TI2V,
    TINY_WAN,
    TINY_WAN22,
    build_tiny_cogvideox,
    check_task,
    load_pipeline,
)

log = logging.getLogger(__name__)
GENERIC = "generic"


@dataclass(frozen=True)
class Recommended:
    """One task's recommended call: frames, size, denoising steps, guidance, the fps to write, extra arguments."""

    num_frames: Optional[int]
    height: Optional[int]
    width: Optional[int]
    steps: Optional[int]
    guidance: Optional[float]
    fps: float
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Family:
    """A model family: recommended settings per task, the dtype it runs in, what stays fp32, and where it is from."""

    t2v: Recommended
    i2v: Recommended
    source: str
    dtype: str = "bf16"
    fp32_parts: tuple[str, ...] = ()
    vae_tiling: bool = False

    def recommended(self, task: str) -> Recommended:
        """The settings for ``task`` (t2v or i2v)."""
        return self.t2v if check_task(task) == "t2v" else self.i2v


_WAN21_SOURCE = "Wan2.1 generate.py: 50 steps t2v / 40 i2v, guide 5.0, 81 frames at 16 fps; 480P (832x480)"
# The one table of per-family defaults: what each model's authors (or diffusers' examples) recommend.
FAMILIES: dict[str, Family] = {
    "wan2.1": Family(Recommended(81, 480, 832, 50, 5.0, 16), Recommended(81, 480, 832, 40, 5.0, 16), _WAN21_SOURCE,
                     fp32_parts=("vae", "image_encoder")),
    "wan2.2": Family(Recommended(81, 720, 1280, 40, 4.0, 16, {"guidance_scale_2": 3.0}),
                     Recommended(81, 720, 1280, 40, 3.5, 16),
                     "Wan2.2 A14B (diffusers examples): 720P, 40 steps, guide 4.0/3.0 t2v, 3.5 i2v, 16 fps",
                     fp32_parts=("vae", "image_encoder")),
    "wan2.2-ti2v": Family(Recommended(121, 704, 1280, 50, 5.0, 24), Recommended(121, 704, 1280, 50, 5.0, 24),
                          "Wan2.2 TI2V-5B: 1280x704, 121 frames at 24 fps, 50 steps, guide 5.0", fp32_parts=("vae",)),
    "cogvideox": Family(Recommended(49, 480, 720, 50, 6.0, 8), Recommended(49, 480, 720, 50, 6.0, 8),
                        "CogVideoX-2b/5b(-I2V) model cards: 720x480, 49 frames at 8 fps, 50 steps, guidance 6"),
    "cogvideox1.5": Family(Recommended(81, 768, 1360, 50, 6.0, 16), Recommended(81, 768, 1360, 50, 6.0, 16),
                           "CogVideoX1.5-5B(-I2V) model cards: 1360x768, 81 frames at 16 fps, 50 steps, guidance 6"),
    "hunyuanvideo": Family(Recommended(129, 720, 1280, 50, 6.0, 24), Recommended(129, 720, 1280, 50, 6.0, 24),
                           "HunyuanVideo(-I2V): 1280x720, 129 frames at 24 fps, 50 steps, embedded guidance 6; "
                           "VAE tiling as diffusers' example", vae_tiling=True),
    "ltx": Family(Recommended(161, 480, 704, 50, 3.0, 24), Recommended(161, 480, 704, 50, 3.0, 24),
                  "LTX-Video (diffusers examples): 704x480, 161 frames at 24 fps, 50 steps, guidance 3"),
    TINY_WAN: Family(Recommended(9, 32, 32, 2, 5.0, 16), Recommended(9, 32, 32, 2, 5.0, 16),
                     "tiny random Wan2.1 (offline tests)", dtype="fp32"),
    TINY_WAN22: Family(Recommended(9, 32, 32, 4, 4.0, 16, {"guidance_scale_2": 3.0}), Recommended(9, 32, 32, 4, 3.5, 16),
                       "tiny random Wan2.2 A14B, two experts (offline tests); 4 steps, two for each expert",
                       dtype="fp32"),
    TINY_TI2V: Family(Recommended(9, 32, 32, 2, 5.0, 24), Recommended(9, 32, 32, 2, 5.0, 24),
                      "tiny random Wan2.2 TI2V-5B (offline tests)", dtype="fp32"),
    TINY_COGVIDEOX: Family(Recommended(9, 32, 32, 2, 6.0, 8), Recommended(9, 32, 32, 2, 6.0, 8),
                           "tiny random CogVideoX (offline tests)", dtype="fp32"),
}
_CLASS_FAMILIES = {
    "WanPipeline": "wan", "WanImageToVideoPipeline": "wan",
    "CogVideoXPipeline": "cogvideox", "CogVideoXImageToVideoPipeline": "cogvideox",
    "HunyuanVideoPipeline": "hunyuanvideo", "HunyuanVideoImageToVideoPipeline": "hunyuanvideo",
    "LTXPipeline": "ltx", "LTXImageToVideoPipeline": "ltx",
}
_WAN_CLASSES = ("WanPipeline", "WanImageToVideoPipeline")
_TINY_CLASSES = {TINY_WAN: _WAN_CLASSES, TINY_WAN22: _WAN_CLASSES, TINY_TI2V: _WAN_CLASSES,
                 TINY_COGVIDEOX: ("CogVideoXPipeline", "CogVideoXImageToVideoPipeline")}


@dataclass(frozen=True)
class ModelInfo:
    """What is known of a model before its weights load: family, pipeline class, resolved Hub commit."""

    model: str
    family: str
    pipeline: str
    commit: Optional[str]
    defaults: Family


def tiny_name(model: str) -> Optional[str]:
    """The canonical tiny model name for ``model`` (``tiny`` is ``tiny-wan``), or None for a real model."""
    if model in (TINY, TINY_WAN):
        return TINY_WAN
    return model if model in _TINY_CLASSES else None


def _generic_family(cls_name: str) -> Family:
    """Defaults from the pipeline class's own call signature (None where it has none); 16 fps."""
    import diffusers

    params = inspect.signature(getattr(diffusers, cls_name).__call__).parameters

    def default(name: str) -> Any:
        value = params[name].default if name in params else None
        return None if value is inspect.Parameter.empty else value

    rec = Recommended(default("num_frames"), default("height"), default("width"), default("num_inference_steps"),
                      default("guidance_scale"), 16)
    return Family(rec, rec, f"{cls_name}.__call__ defaults (not in the family table); 16 fps")


def model_info(model: str, task: str, revision: Optional[str] = None) -> ModelInfo:
    """Family and pipeline class of ``model`` from its ``model_index.json`` (nothing but configs is read)."""
    import diffusers

    tiny = tiny_name(model)
    if tiny:
        return ModelInfo(tiny, tiny, _TINY_CLASSES[tiny][check_task(task) == "i2v"], None, FAMILIES[tiny])
    try:
        config, commit = diffusers.DiffusionPipeline.load_config(model, revision=revision, return_commit_hash=True)
    except (OSError, EnvironmentError, ValueError) as exc:
        raise ValueError(f"{model}: cannot read a diffusers model_index.json ({exc})") from exc
    cls_name = str(config.get("_class_name"))
    if not isinstance(getattr(diffusers, cls_name, None), type):
        raise ValueError(f"{model}: pipeline class {cls_name!r} is not in diffusers {diffusers.__version__}")
    family = _CLASS_FAMILIES.get(cls_name, GENERIC)
    if family == "wan":
        if config.get("expand_timesteps"):
            family = "wan2.2-ti2v"
            if check_task(task) == "i2v":  # TI2V-5B's one folder (a WanPipeline) serves i2v too, in the i2v class
                cls_name = "WanImageToVideoPipeline"
        else:
            family = "wan2.2" if (config.get("transformer_2") or [None])[0] else "wan2.1"
    elif family == "cogvideox":
        transformer = diffusers.CogVideoXTransformer3DModel.load_config(model, subfolder="transformer",
                                                                        revision=revision)
        family = "cogvideox1.5" if transformer.get("patch_size_t") else "cogvideox"
    defaults = FAMILIES.get(family) or _generic_family(cls_name)
    return ModelInfo(model, family, cls_name, commit, defaults)


def check_pipeline_task(pipe: Any, task: str, model: str) -> None:
    """Raise ValueError unless ``pipe``'s call fits ``task``: i2v takes an ``image``; t2v does not require one."""
    params = inspect.signature(pipe.__call__).parameters
    if "prompt" not in params:
        raise ValueError(f"{model}: {type(pipe).__name__} takes no prompt; not a text/image-to-video pipeline")
    image = params.get("image")
    if check_task(task) == "i2v" and image is None:
        raise ValueError(f"{model}: {type(pipe).__name__} is a text-to-video pipeline; --task i2v needs an "
                         "image-to-video model")
    if task == "t2v" and image is not None and image.default is inspect.Parameter.empty:
        raise ValueError(f"{model}: {type(pipe).__name__} needs an image; use --task i2v or a text-to-video model")


def load_video_pipeline(info: ModelInfo, task: str, *, dtype: Any, revision: Optional[str] = None) -> Any:
    """The pipeline of ``info`` for ``task`` in ``dtype`` (its family's ``fp32_parts`` stay fp32)."""
    import diffusers
    import torch

    if info.family in (TINY_WAN, TINY_WAN22, TINY_TI2V):
        pipe = load_pipeline(info.family, task, dtype=dtype)
    elif info.family == TINY_COGVIDEOX:
        pipe = build_tiny_cogvideox(task).to(dtype=dtype)
    else:
        dtypes = {"default": dtype, **{part: torch.float32 for part in info.defaults.fp32_parts}}
        try:
            pipe = getattr(diffusers, info.pipeline).from_pretrained(info.model, revision=revision, dtype=dtypes)
        except (OSError, EnvironmentError) as exc:
            raise ValueError(f"{info.model}: cannot load the diffusers pipeline ({exc})") from exc
    check_pipeline_task(pipe, task, info.model)
    if info.defaults.vae_tiling:
        pipe.vae.enable_tiling()
    return pipe


def settings_record(rec: Recommended) -> dict[str, Any]:
    """``rec`` as a JSON-ready dict."""
    return {**asdict(rec), "extra": dict(rec.extra)}


def call_pipeline(pipe: Any, rec: Recommended, *, prompt: str, generator: Any, image: Any = None,
                  negative_prompt: Optional[str] = None) -> np.ndarray:
    """Run one generation with ``rec``'s settings; the frames as uint8 (F, H, W, 3).

    Arguments the pipeline's call does not take are left out (with a debug line); None means its own default.
    """
    wanted = {"prompt": prompt, "negative_prompt": negative_prompt, "image": image, "num_frames": rec.num_frames,
              "height": rec.height, "width": rec.width, "num_inference_steps": rec.steps,
              "guidance_scale": rec.guidance, "frame_rate": rec.fps, "generator": generator, "output_type": "np",
              **rec.extra}
    params = inspect.signature(pipe.__call__).parameters
    dropped = sorted(k for k, v in wanted.items() if v is not None and k not in params)
    if dropped:
        log.debug("%s does not take %s; left out", type(pipe).__name__, ", ".join(dropped))
    frames = pipe(**{k: v for k, v in wanted.items() if v is not None and k in params}).frames[0]
    if isinstance(frames, list) and frames and hasattr(frames[0], "convert"):  # PIL frames
        return np.stack([np.asarray(f.convert("RGB")) for f in frames])
    frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
    return frames
