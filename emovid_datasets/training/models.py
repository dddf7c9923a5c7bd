"""Load a Wan diffusers pipeline (local folder or Hub id), or build a tiny one: the real classes, random weights.

Wan2.1 has one transformer. Wan2.2 A14B (T2V and I2V) has two experts: ``transformer`` denoises the noise levels
s >= ``boundary_ratio`` (high noise), ``transformer_2`` those below (low noise), as diffusers' pipelines pick them
(timestep 1000 s against 1000 x boundary_ratio). Wan2.2 TI2V-5B has one transformer, a 48-channel VAE of
4x16x16 compression and ``expand_timesteps`` (its i2v puts the clean first frame into the latents).

`tiny` (alias `tiny-wan`), `tiny-wan22` (two experts), `tiny-wan22-ti2v` and `tiny-cogvideox` need no
download: the T5 text encoders and their Unigram tokenizer are built in code, and the weights come from a
fixed seed, so training and generation with ``--model tiny`` share one base model.
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping, Optional, Union

import torch

TASKS = ("t2v", "i2v")
TINY = "tiny"
TINY_WAN = "tiny-wan"  # the same model as TINY, named for the benchmark runner's family table
TINY_WAN22 = "tiny-wan22"  # Wan2.2 A14B's architecture: two experts split at boundary_ratio
TINY_TI2V = "tiny-wan22-ti2v"  # Wan2.2 TI2V-5B's architecture: 48-channel VAE, expand_timesteps
TINY_COGVIDEOX = "tiny-cogvideox"
TINY_WANS = (TINY, TINY_WAN, TINY_WAN22, TINY_TI2V)
# Wan2.2 A14B's boundaries (model_index.json of Wan-AI/Wan2.2-{T2V,I2V}-A14B-Diffusers); the tiny model uses them
BOUNDARY_RATIOS = {"t2v": 0.875, "i2v": 0.9}
EXPERTS = ("high", "low")  # Wan2.2's transformer (high noise) and transformer_2 (low noise)
EXPERT_COMPONENTS = {"high": "transformer", "low": "transformer_2"}
TEXT_LEN = 512  # Wan's text context; the I2V attention takes everything before the last 512 tokens as image
TINY_SEED = 0
# Words the tiny tokenizer knows whole; anything else falls back to single characters.
_TINY_WORDS = (
    "a", "an", "the", "is", "in", "of", "and", "with", "video", "clip", "colour", "emotion", "animation",
    "movie", "sticker", "amusement", "awe", "contentment", "excitement", "anger", "disgust", "fear", "sadness",
    "cat", "dog", "runs", "walks", "smiles", "cries", "dark", "bright", "red", "blue", "green",
)

WanPipelines = Union["diffusers.WanPipeline", "diffusers.WanImageToVideoPipeline"]  # noqa: F821


def check_task(task: str) -> str:
    """Return ``task`` if it is ``t2v`` or ``i2v``; raise ValueError otherwise."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task


def tiny_tokenizer() -> Any:
    """A small T5 (Unigram) tokenizer with Wan's special-token layout, built in code."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [("\u2581" + w, -1.0 - i * 0.01) for i, w in enumerate(_TINY_WORDS)]
    pieces += [(c, -40.0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'\"-"]
    pieces += [("\u2581", -45.0)]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=TEXT_LEN)


def _tiny_wan_transformer(in_channels: int, out_channels: int, image_dim: Optional[int] = None) -> Any:
    """A Wan transformer of diffusers' test size (2 layers, 2 heads of 12); ``image_dim`` adds Wan2.1 I2V's image k/v."""
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=in_channels,
        out_channels=out_channels, text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, image_dim=image_dim,
        added_kv_proj_dim=24 if image_dim else None)


def build_tiny(task: str = "t2v", *, seed: int = TINY_SEED, model: str = TINY) -> WanPipelines:
    """The real Wan pipeline classes with tiny configs and seeded random weights (diffusers' test sizes).

    ``model`` picks the architecture: `TINY` / `TINY_WAN` (Wan2.1), `TINY_WAN22` (Wan2.2 A14B: two experts,
    no CLIP, boundary 0.875 t2v / 0.9 i2v) or `TINY_TI2V` (Wan2.2 TI2V-5B: one transformer, z_dim 48 VAE).
    """
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanPipeline,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    check_task(task)
    if model not in TINY_WANS:
        raise ValueError(f"unknown tiny Wan model {model!r}; expected one of {', '.join(TINY_WANS)}")
    i2v = task == "i2v"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = tiny_tokenizer()
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=len(tokenizer) + 8, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, is_encoder_decoder=False, dropout_rate=0.0)).eval()
        if model == TINY_TI2V:  # diffusers' Wan2.2 5B test VAE: residual blocks, 2x2 patches, 16x spatial
            vae = AutoencoderKLWan(base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True,
                                   patch_size=2, latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
                                   dim_mult=[1, 1, 1, 1], num_res_blocks=1, scale_factor_spatial=16,
                                   scale_factor_temporal=4, temperal_downsample=[False, True, True]).eval()
        else:
            vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                   temperal_downsample=[False, True, True]).eval()
        z_dim = vae.config.z_dim
        # Wan2.1 and A14B i2v take noise + 4 mask + z_dim condition channels; TI2V fuses the image into the latents
        in_channels = 2 * z_dim + 4 if i2v and model != TINY_TI2V else z_dim
        clip = i2v and model in (TINY, TINY_WAN)  # only Wan2.1 I2V has a CLIP image encoder
        transformer = _tiny_wan_transformer(in_channels, z_dim, image_dim=4 if clip else None)
        scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
        parts = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                     transformer=transformer)
        if model == TINY_WAN22:
            parts.update(transformer_2=_tiny_wan_transformer(in_channels, z_dim), boundary_ratio=BOUNDARY_RATIOS[task])
        elif model == TINY_TI2V:
            parts.update(expand_timesteps=True)
        if not i2v:
            return WanPipeline(**parts)
        if not clip:
            return WanImageToVideoPipeline(**parts)
        image_encoder = CLIPVisionModel(CLIPVisionConfig(
            hidden_size=4, projection_dim=4, num_hidden_layers=2, num_attention_heads=2, image_size=32,
            intermediate_size=16, patch_size=4)).eval()
        image_processor = CLIPImageProcessor(crop_size=32, size=32)
        return WanImageToVideoPipeline(image_encoder=image_encoder, image_processor=image_processor, **parts)


def build_tiny_cogvideox(task: str = "t2v", *, seed: int = TINY_SEED) -> Any:
    """The real CogVideoX pipeline classes with tiny configs and seeded random weights (RoPE, as CogVideoX-5B)."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXPipeline,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    check_task(task)
    i2v = task == "i2v"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = tiny_tokenizer()
        text_encoder = T5EncoderModel(T5Config(
            vocab_size=len(tokenizer) + 8, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, dropout_rate=0.0)).eval()
        blocks = 4  # 3 spatial downsamplings: 8x, as the real VAE
        vae = AutoencoderKLCogVideoX(
            down_block_types=("CogVideoXDownBlock3D",) * blocks, up_block_types=("CogVideoXUpBlock3D",) * blocks,
            block_out_channels=(8,) * blocks, latent_channels=4, layers_per_block=1, norm_num_groups=2,
            temporal_compression_ratio=4).eval()
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=2, attention_head_dim=16, in_channels=8 if i2v else 4, out_channels=4,
            time_embed_dim=2, text_embed_dim=32, num_layers=1, sample_width=4, sample_height=4, sample_frames=9,
            patch_size=2, temporal_compression_ratio=4, use_rotary_positional_embeddings=True).eval()
        scheduler = CogVideoXDDIMScheduler(beta_schedule="scaled_linear", prediction_type="v_prediction",
                                           rescale_betas_zero_snr=True, timestep_spacing="trailing",
                                           set_alpha_to_one=True, clip_sample=False)
        cls = CogVideoXImageToVideoPipeline if i2v else CogVideoXPipeline
        return cls(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                   scheduler=scheduler)


def cast_transformer(transformer: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Cast a Wan transformer to ``dtype`` but keep its norms/time embedding in fp32, as from_pretrained does."""
    keep = set(transformer._keep_in_fp32_modules or ())
    for name, module in transformer.named_modules():
        for tensors in (module._parameters, module._buffers):
            for key, value in tensors.items():
                wanted = torch.float32 if keep & set(f"{name}.{key}".split(".")) else dtype
                if value is not None and value.is_floating_point() and value.dtype != wanted:
                    value.data = value.data.to(wanted)
    return transformer


def load_pipeline(model: str, task: str = "t2v", *, dtype: torch.dtype = torch.float32) -> WanPipelines:
    """A Wan2.1 or Wan2.2 pipeline for ``task`` from a tiny name (`TINY_WANS`), a local diffusers folder or a Hub id.

    The transformers (both experts of Wan2.2 A14B) and the text encoder get ``dtype``; the VAE and CLIP image
    encoder stay fp32 as Wan recommends. Raises ValueError when the model does not fit the task (for Wan2.1:
    16 input channels t2v, 36 i2v).
    """
    from diffusers import WanImageToVideoPipeline, WanPipeline

    check_task(task)
    if model in TINY_WANS:
        pipe = build_tiny(task, model=model)
        if dtype != torch.float32:
            pipe.text_encoder.to(dtype)
            for transformer in experts_of(pipe).values():
                cast_transformer(transformer, dtype)
    else:
        cls = WanImageToVideoPipeline if task == "i2v" else WanPipeline
        dtypes = {"transformer": dtype, "transformer_2": dtype, "text_encoder": dtype, "default": torch.float32}
        try:
            pipe = cls.from_pretrained(model, dtype=dtypes)
        except (OSError, EnvironmentError) as exc:
            raise ValueError(f"{model}: cannot load a Wan diffusers model ({exc})") from exc
    channels = pipe.transformer.config.in_channels
    z_dim = pipe.vae.config.z_dim
    expected = 2 * z_dim + 4 if task == "i2v" and not pipe.config.expand_timesteps else z_dim
    if channels != expected:
        raise ValueError(f"{model}: transformer takes {channels} input channels, a {task} model takes {expected}")
    return pipe


def experts_of(pipe: WanPipelines) -> dict[str, torch.nn.Module]:
    """The pipeline's denoisers by expert: ``{"high": transformer, "low": transformer_2}`` for Wan2.2 A14B,
    ``{"high": transformer}`` for a single-transformer Wan (it denoises every level)."""
    found = {"high": pipe.transformer, "low": getattr(pipe, "transformer_2", None)}
    return {name: module for name, module in found.items() if module is not None}


def size_multiple(pipe: WanPipelines) -> int:
    """What heights and widths must be multiples of: VAE stride x patch (16 for Wan2.1 and A14B, 32 for TI2V-5B)."""
    return pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]


def size_multiple_of(model: str) -> int:
    """`size_multiple` of ``model`` read from its VAE and transformer configs, without loading weights (a tiny
    model is built: it is small), so that the training options can be checked before anything loads."""
    if model in TINY_WANS:
        return size_multiple(build_tiny("t2v", model=model))
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    def setting(cls: type, subfolder: str, name: str) -> Any:
        try:
            config = cls.load_config(model, subfolder=subfolder)
        except (OSError, EnvironmentError) as exc:
            raise ValueError(f"{model}: cannot read the Wan {subfolder} config ({exc})") from exc
        # a key missing from config.json takes the class's default, as from_pretrained does
        return config.get(name, inspect.signature(cls.__init__).parameters[name].default)

    return int(setting(AutoencoderKLWan, "vae", "scale_factor_spatial")) * \
        int(setting(WanTransformer3DModel, "transformer", "patch_size")[1])


class Experts(torch.nn.Module):
    """The Wan2.2 experts a run trains, each on the noise levels diffusers gives it: high s >= boundary, low s < boundary.

    One forward takes each expert's own transformer inputs, so data-parallel wrappers see a single call.
    """

    def __init__(self, experts: Mapping[str, torch.nn.Module], boundary: float) -> None:
        super().__init__()
        unknown = sorted(set(experts) - set(EXPERTS))
        if unknown or not experts:
            raise ValueError(f"experts must be some of {', '.join(EXPERTS)}, got {unknown or 'none'}")
        if not 0 < boundary < 1:
            raise ValueError(f"the expert boundary ratio must lie strictly between 0 and 1, got {boundary}")
        self.experts = torch.nn.ModuleDict({name: experts[name] for name in EXPERTS if name in experts})
        self.boundary = float(boundary)

    def enable_gradient_checkpointing(self) -> None:
        """Turn on gradient checkpointing in every expert."""
        for module in self.experts.values():
            module.enable_gradient_checkpointing()

    def forward(self, inputs: Mapping[str, Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Each named expert's prediction for its own keyword inputs (the transformer's forward arguments)."""
        return {name: self.experts[name](**kwargs, return_dict=False)[0] for name, kwargs in inputs.items()}


def trainable_transformer(pipe: WanPipelines, expert: Optional[str] = None,
                          boundary_ratio: Optional[float] = None) -> torch.nn.Module:
    """What a LoRA run trains: the transformer of a one-transformer Wan, or `Experts` of a Wan2.2 A14B pipeline.

    ``expert`` is ``high``, ``low`` or ``both`` (None: both); ``boundary_ratio`` (None: the pipeline's own
    ``boundary_ratio`` from model_index.json) splits their noise levels. Both are errors for a one-transformer model.
    """
    experts = experts_of(pipe)
    if expert not in (None, "both", *EXPERTS):
        raise ValueError(f"unknown expert {expert!r}; expected high, low or both")
    if len(experts) == 1:
        if expert is not None or boundary_ratio is not None:
            raise ValueError("--expert and --boundary-ratio need a two-expert Wan2.2 A14B model; this one has a "
                             "single transformer")
        return pipe.transformer
    boundary = pipe.config.boundary_ratio if boundary_ratio is None else boundary_ratio
    if boundary is None:
        raise ValueError("this two-expert model sets no boundary_ratio in its model_index.json; pass --boundary-ratio")
    chosen = EXPERTS if expert in (None, "both") else (expert,)
    return Experts({name: experts[name] for name in chosen}, boundary)
