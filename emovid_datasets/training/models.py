"""Load a Wan2.1 diffusers pipeline (local folder or Hub id), or build a tiny one: the real classes, random weights.

`tiny` (alias `tiny-wan`) and `tiny-cogvideox` need no download: the T5 text encoders and their Unigram
tokenizer are built in code, and the weights come from a fixed seed, so training and generation with
``--model tiny`` share one base model.
"""

from __future__ import annotations

from typing import Any, Union

import torch

TASKS = ("t2v", "i2v")
TINY = "tiny"
TINY_WAN = "tiny-wan"  # the same model as TINY, named for the benchmark runner's family table
TINY_COGVIDEOX = "tiny-cogvideox"
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


def build_tiny(task: str = "t2v", *, seed: int = TINY_SEED) -> WanPipelines:
    """The real Wan2.1 pipeline classes with tiny configs and seeded random weights (diffusers' test sizes)."""
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanPipeline,
        WanTransformer3DModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    check_task(task)
    i2v = task == "i2v"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = tiny_tokenizer()
        text_encoder = UMT5EncoderModel(UMT5Config(
            vocab_size=len(tokenizer) + 8, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, is_encoder_decoder=False, dropout_rate=0.0)).eval()
        vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True]).eval()
        transformer = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
            in_channels=36 if i2v else 16, out_channels=16, text_dim=32, freq_dim=256, ffn_dim=32,
            num_layers=2, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32,
            image_dim=4 if i2v else None, added_kv_proj_dim=24 if i2v else None)
        scheduler = FlowMatchEulerDiscreteScheduler(shift=5.0)
        parts = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                     transformer=transformer)
        if not i2v:
            return WanPipeline(**parts)
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
    """A Wan2.1 pipeline for ``task`` from ``tiny`` (or ``tiny-wan``), a local diffusers folder or a Hub id.

    The transformer and text encoder get ``dtype``; the VAE and CLIP image encoder stay fp32 as Wan
    recommends. Raises ValueError when the model does not fit the task (16 vs 36 input channels).
    """
    from diffusers import WanImageToVideoPipeline, WanPipeline

    check_task(task)
    if model in (TINY, TINY_WAN):
        pipe = build_tiny(task)
        if dtype != torch.float32:
            pipe.text_encoder.to(dtype)
            cast_transformer(pipe.transformer, dtype)
    else:
        cls = WanImageToVideoPipeline if task == "i2v" else WanPipeline
        dtypes = {"transformer": dtype, "text_encoder": dtype, "default": torch.float32}
        try:
            pipe = cls.from_pretrained(model, dtype=dtypes)
        except (OSError, EnvironmentError) as exc:
            raise ValueError(f"{model}: cannot load a Wan2.1 diffusers model ({exc})") from exc
    channels = pipe.transformer.config.in_channels
    expected = 36 if task == "i2v" else 16
    if channels != expected:
        raise ValueError(f"{model}: transformer takes {channels} input channels, a {task} model takes {expected}")
    return pipe
