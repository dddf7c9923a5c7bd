"""Step time and peak memory of one Wan2.1 LoRA training step (the cached phase: transformer only).

    .venv/bin/python benchmarks/train_step.py --model tiny --num-frames 9 --height 32 --width 32
    python benchmarks/train_step.py --model 1.3b --num-frames 81 --height 480 --width 832 \
        --mixed-precision bf16 --gradient-checkpointing            # on a GPU; random weights, real architecture

MODEL is ``tiny`` (emovid's built-in), ``1.3b`` / ``14b`` (Wan2.1 T2V configs with random weights; ``14b``
with ``--task i2v`` is the I2V-14B-480P config), or a diffusers folder / Hub id (its transformer is loaded).
Inputs are random tensors of the shapes the latent cache holds (16-channel latents at 1/4 time and 1/8
space, 512 text tokens, for i2v the 20-channel condition and 257 CLIP tokens). The step is the trainer's:
`training_loss` (DiffSynth timestep sampling), backward, AdamW on the LoRA parameters.
Baseline, same process and inputs: a no-grad forward pass of the same model; the ratio is step / forward.
Peak memory: torch.cuda.max_memory_allocated on a GPU, the process's peak RSS on a CPU.
With ``--validation-prompts P`` it also times a no-grad forward at the validation shape (``--validation-frames``,
the same height and width) and prints the transformer time of one `--validate-every` round: P prompts x
``--validation-steps`` x 2 forward passes (diffusers' Wan runs the conditional and unconditional passes
apart), without text encoding and VAE decoding.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from typing import Callable

import torch

from emovid_datasets.training.lora import add_lora
from emovid_datasets.training.models import cast_transformer
from emovid_datasets.training.objective import FlowMatchObjective, training_loss

# Wan2.1 transformer configs (diffusers names), from the released models' config.json.
WAN_CONFIGS = {
    "1.3b": dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30, text_dim=4096,
                 freq_dim=256, in_channels=16, out_channels=16, patch_size=(1, 2, 2), cross_attn_norm=True,
                 qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024),
    "14b": dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, num_layers=40, text_dim=4096,
                freq_dim=256, in_channels=16, out_channels=16, patch_size=(1, 2, 2), cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024),
}
I2V_EXTRA = dict(in_channels=36, image_dim=1280, added_kv_proj_dim=5120)
CLIP_TOKENS = 257


def build_transformer(model: str, task: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The transformer to time: tiny, a real config with random weights, or loaded from MODEL."""
    from diffusers import WanTransformer3DModel

    if model == "tiny":
        from emovid_datasets.training.models import load_pipeline

        return load_pipeline("tiny", task, dtype=dtype).transformer.to(device)
    if model in WAN_CONFIGS:
        config = dict(WAN_CONFIGS[model], **(I2V_EXTRA if task == "i2v" else {}))
        if task == "i2v" and model == "1.3b":
            sys.exit("there is no Wan2.1 I2V 1.3B model; use --task t2v or --model 14b")
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # initialise in the target dtype: the 14B model never exists in fp32
        try:
            with torch.device(device):
                transformer = WanTransformer3DModel(**config)
        finally:
            torch.set_default_dtype(default)
        return cast_transformer(transformer, dtype)
    return WanTransformer3DModel.from_pretrained(model, subfolder="transformer", dtype=dtype).to(device)


def random_batch(transformer: torch.nn.Module, task: str, frames: int, height: int, width: int,
                 device: torch.device) -> dict[str, torch.Tensor]:
    """Cache-shaped random inputs for one clip."""
    cfg = transformer.config
    latent = (1, 16, (frames - 1) // 4 + 1, height // 8, width // 8)
    batch = {"latents": torch.randn(latent, device=device),
             "prompt_embeds": torch.randn(1, 512, cfg.text_dim, device=device)}
    if task == "i2v":
        batch["y"] = torch.randn(1, 20, *latent[2:], device=device)
        tokens = CLIP_TOKENS if cfg.image_dim == 1280 else 65
        batch["image_embeds"] = torch.randn(1, tokens, cfg.image_dim, device=device)
    return batch


def timed(fn: Callable[[], None], device: torch.device, warmup: int, repeat: int) -> float:
    """Median seconds of ``fn`` after ``warmup`` calls (synchronising the GPU)."""
    times = []
    for i in range(warmup + repeat):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--task", default="t2v", choices=("t2v", "i2v"))
    parser.add_argument("--num-frames", type=int, default=9)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--rank", type=int, default=32)
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16"))
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's choice)")
    parser.add_argument("--validation-prompts", type=int, help="also estimate a validation round of this many prompts")
    parser.add_argument("--validation-frames", type=int, default=17)
    parser.add_argument("--validation-steps", type=int, default=10)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if (args.num_frames - 1) % 4 or (args.validation_frames - 1) % 4 or args.height % 16 or args.width % 16:
        sys.exit("--num-frames and --validation-frames must be 4k+1 and --height/--width multiples of 16")

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.mixed_precision == "bf16" else torch.float32
    transformer = build_transformer(args.model, args.task, device, dtype).requires_grad_(False)
    base_params = sum(p.numel() for p in transformer.parameters())
    add_lora(transformer, args.rank, args.rank)
    if dtype != torch.float32:
        from diffusers.training_utils import cast_training_params

        cast_training_params(transformer, dtype=torch.float32)
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    objective = FlowMatchObjective()
    batch = random_batch(transformer, args.task, args.num_frames, args.height, args.width, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)
    seeds = iter(range(10**9))

    def forward(inputs: dict[str, torch.Tensor] = batch) -> None:
        with torch.no_grad(), autocast:
            training_loss(transformer, objective, inputs, args.task, next(seeds))

    def step() -> None:
        with autocast:
            loss, _ = training_loss(transformer, objective, batch, args.task, next(seeds))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    transformer.train()
    forward_s = timed(forward, device, args.warmup, args.repeat)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    step_s = timed(step, device, args.warmup, args.repeat)
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB GPU (max allocated)"
        name = torch.cuda.get_device_name(device)
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB CPU (process peak RSS)"
        name = f"CPU, {torch.get_num_threads()} threads"
    tokens = ((args.num_frames - 1) // 4 + 1) * (args.height // 16) * (args.width // 16)
    print(f"model {args.model} ({args.task}), {base_params:,} base + {sum(p.numel() for p in params):,} "
          f"LoRA (rank {args.rank}) parameters; {args.num_frames}x{args.height}x{args.width} -> {tokens} tokens; "
          f"{'bf16' if dtype == torch.bfloat16 else 'fp32'} weights, "
          f"checkpointing {'on' if args.gradient_checkpointing else 'off'}; {name}")
    print(f"baseline no-grad forward: {forward_s * 1000:.1f} ms")
    print(f"training step (forward + backward + AdamW): {step_s * 1000:.1f} ms = {step_s / forward_s:.2f}x the forward")
    print(f"peak memory: {peak}")
    if args.validation_prompts:
        small = random_batch(transformer, args.task, args.validation_frames, args.height, args.width, device)
        transformer.eval()
        pass_s = timed(lambda: forward(small), device, args.warmup, args.repeat)
        passes = args.validation_prompts * args.validation_steps * 2
        print(f"validation round: {args.validation_prompts} prompts x {args.validation_steps} steps x 2 (guidance) = "
              f"{passes} forward passes at {args.validation_frames}x{args.height}x{args.width}, "
              f"{pass_s * 1000:.1f} ms each: {passes * pass_s:.1f} s (transformer only) = "
              f"{passes * pass_s / step_s:.0f} training steps")


if __name__ == "__main__":
    main()
