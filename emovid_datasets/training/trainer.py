"""Train a Wan2.1 LoRA on EmoVid with accelerate: precompute a latent cache, then flow-matching steps.

Output folder: ``pytorch_lora_weights.safetensors`` (diffusers), ``lora_comfyui.safetensors`` (ComfyUI /
original Wan keys; for Wan2.2 A14B one of each per trained expert, ``*_high_noise`` / ``*_low_noise``, see
`models.Experts`), ``training_config.json``, ``loss.csv`` + ``loss.jsonl`` (one row per optimiser step),
``checkpoints/step-NNNNNNNN/`` (adapter, optimiser, LR scheduler, data position) and ``cache/`` (a folder per
bucket). Each clip trains at the bucket of `TrainConfig.bucket_rule` its height, width and duration give.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Iterator, Optional

import torch

from ..atomic import atomic_write_text
from ..records import read_json_file
from ..torch.batching import Bucket
from .cache import BucketCache, encode_batch, fill_cache
from .checkpoints import LossLog, resume_point, save_checkpoint
from .config import CONFIG_FILE, TrainConfig
from .data import adapter_clips, clip_buckets, epoch_batches, epoch_order, load_rows
from .lora import COMFYUI_FILE, add_lora, load_lora_state, save_comfyui_lora, save_diffusers_lora
from .models import TEXT_LEN, load_pipeline, size_multiple_of, trainable_transformer
from .objective import FlowMatchObjective, sample_seeds, training_loss
from .validation import Validator

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a run did: the last optimiser step, the losses it logged, and where the LoRA went."""

    global_step: int
    losses: list[float] = field(default_factory=list)
    resumed_from: Optional[int] = None
    lora_path: Optional[Path] = None
    comfyui_path: Optional[Path] = None
    validation: Optional[str] = None  # how EA moved from step 0 (`validation.Validator.summary`)


def _weight_dtype(mixed_precision: str) -> torch.dtype:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)


class _Batches:
    """Encoded training batches of one bucket each, for one epoch from a row position, cached or decoded on the fly."""

    def __init__(self, cfg: TrainConfig, rows, buckets: list[Bucket], pipe, cache: Optional[BucketCache],
                 device: torch.device, rank: int, world: int) -> None:
        self.cfg, self.rows, self.pipe, self.cache = cfg, rows, pipe, cache
        self.device, self.rank, self.world = device, rank, world
        ids = rows["clip_id"]
        # the selected rows that were encoded (a shared cache folder may hold other selections too)
        self.kept = [i for i, c in enumerate(ids) if cache.has(c)] if cache is not None else list(range(len(rows)))
        self.ids = [ids[i] for i in self.kept]
        self.buckets = [buckets[i] for i in self.kept]

    def size(self) -> int:
        return len(self.kept)

    def plan(self, epoch: int) -> list[list[int]]:
        """The global batches of ``epoch``, as positions in the kept rows, the same on every process."""
        return epoch_batches(epoch_order(self.size(), self.cfg.seed, epoch), self.buckets, self.cfg.batch_size,
                             self.world)

    def epoch(self, epoch: int, start: int) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """Yield (rows in the global batch, this process's encoded share) for ``epoch`` after its first ``start`` rows."""
        size, consumed = self.cfg.batch_size, 0
        for chunk in self.plan(epoch):
            consumed += len(chunk)
            if consumed > start:
                yield len(chunk), self._encoded(chunk[self.rank * size:(self.rank + 1) * size], epoch)

    def _encoded(self, indices: list[int], epoch: int) -> dict[str, torch.Tensor]:
        if self.cache is not None:
            items = [self.cache.load(self.ids[i]) for i in indices]
            return {k: torch.stack([it[k] for it in items]).to(self.device) for k in items[0]}
        clips = adapter_clips(self.rows.select([self.kept[i] for i in indices]), self.buckets[indices[0]],
                              fps=self.cfg.fps, prompt=self.cfg.prompt)
        samples = list(clips)
        if not samples:
            log.warning("no decodable clip in rows %s of epoch %d; batch skipped", indices, epoch)
            return {}
        batch = {"video": torch.stack([s["video"] for s in samples]), "prompt": [s["prompt"] for s in samples],
                 "first_frame": torch.stack([s["first_frame"] for s in samples])}
        encoded = encode_batch(self.pipe, batch, self.cfg.task, self.device, TEXT_LEN)
        encoded.pop("prompt_lens")
        return encoded


def _all_have_a_batch(accelerator: Any, has_batch: bool, state: dict) -> bool:
    """Whether every process has a batch this micro-step; when one has none (no decodable clip, --no-cache),
    all skip it together, because data-parallel processes must run each forward and backward together."""
    if accelerator.num_processes == 1:
        return has_batch
    everyone = bool(accelerator.gather(torch.tensor([has_batch], device=accelerator.device)).all())
    if has_batch and not everyone:
        log.warning("micro-step %d skipped: another process had no decodable clip", state["micro_step"])
    return everyone


def _stream(batches: _Batches, state: dict) -> Iterator[dict[str, torch.Tensor]]:
    """Batches epoch after epoch from the saved position, keeping ``state``'s epoch and row position current."""
    while True:
        for rows, batch in batches.epoch(state["epoch"], state["position"]):
            state["position"] += rows
            yield batch
        state["epoch"] += 1
        state["position"] = 0


def _build_cache(cfg: TrainConfig, pipe, rows, buckets: list[Bucket], output: Path, device: torch.device,
                 dtype: torch.dtype, accelerator: Any) -> BucketCache:
    """Encode the clips not yet cached, at their ``buckets``, each process every N-th of them (N processes),
    then check the result together.

    The cache folder must be one all processes see (one machine, or a shared file system).
    """
    settings = {"model": cfg.model, "task": cfg.task, "fps": cfg.fps, "prompt": cfg.prompt, "text_len": TEXT_LEN,
                "data": cfg.data, "config": cfg.config, "split": cfg.split, "dtype": str(dtype)}
    ids = rows["clip_id"]
    cache = BucketCache(cfg.cache_dir or output / "cache", settings, dict(zip(ids, buckets)))
    todo = [i for i, clip_id in enumerate(ids) if not cache.has(clip_id)]
    accelerator.wait_for_everyone()  # all agree on the to-do list before anyone writes, so the shares cover it
    mine = todo[accelerator.process_index::accelerator.num_processes]
    if mine:
        by_bucket: dict[Bucket, list[int]] = {}
        for i in mine:
            by_bucket.setdefault(buckets[i], []).append(i)
        clips = chain.from_iterable(adapter_clips(rows.select(indices), bucket, fps=cfg.fps, prompt=cfg.prompt)
                                    for bucket, indices in by_bucket.items())
        fill_cache(pipe, clips, cache, cfg.task, device, dtype, total=len(mine))
    accelerator.wait_for_everyone()
    cached = len(cache.clip_ids())
    if cached < len(rows) and accelerator.is_main_process:
        log.warning("%d of %d clips could not be decoded and are left out of training", len(rows) - cached, len(rows))
    if cached == 0:
        raise ValueError(f"{cfg.data}: no clip could be encoded; nothing to train on")
    return cache


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or resume) a LoRA training; returns the last step and this run's per-step losses."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import set_seed
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params
    from tqdm.auto import tqdm

    cfg.validate(size_multiple_of(cfg.model))
    output = Path(cfg.output)
    output.mkdir(parents=True, exist_ok=True)
    resume_from = resume_point(cfg, output)
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    accelerator = Accelerator(mixed_precision=cfg.mixed_precision,
                              gradient_accumulation_steps=cfg.gradient_accumulation,
                              log_with="tensorboard" if tensorboard else None, project_dir=str(output / "logs"))
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise RuntimeError(f"launched as {launched} processes (WORLD_SIZE) but accelerate set up "
                           f"{accelerator.num_processes}: each would train alone on the same rows. Without GPUs "
                           "set ACCELERATE_USE_CPU=1 (or use `accelerate launch --cpu`) for multi-process CPU training")
    set_seed(cfg.seed)
    device, dtype = accelerator.device, _weight_dtype(cfg.mixed_precision)

    pipe = load_pipeline(cfg.model, cfg.task, dtype=dtype)
    transformer = trainable_transformer(pipe, cfg.expert, cfg.boundary_ratio).requires_grad_(False)
    for name in ("text_encoder", "vae", "image_encoder"):
        if getattr(pipe, name, None) is not None:
            getattr(pipe, name).requires_grad_(False).to(device)
    rows = load_rows(cfg.data, cfg.config, cfg.split, cfg.sources)
    if cfg.limit:
        rows = rows.select(range(min(cfg.limit, len(rows))))
    buckets = clip_buckets(rows, cfg.bucket_rule(), cfg.fps)
    cache = None
    if not cfg.no_cache:
        cache = _build_cache(cfg, pipe, rows, buckets, output, device, dtype, accelerator)
        for name in ("text_encoder", "vae", "image_encoder"):  # the encoders are done: free the accelerator
            if getattr(pipe, name, None) is not None:
                getattr(pipe, name).to("cpu")

    add_lora(transformer, cfg.rank, cfg.alpha, image_kv=cfg.image_kv)
    if cfg.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.to(device)
    if dtype != torch.float32:
        cast_training_params(transformer, dtype=torch.float32)
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    batches = _Batches(cfg, rows, buckets, pipe, cache, device, accelerator.process_index, accelerator.num_processes)
    per_bucket = {str(b): n for b, n in sorted(Counter(batches.buckets).items())}
    log.info("%d clips in %d buckets (frames x height x width): %s", batches.size(), len(per_bucket), per_bucket)
    per_epoch = len(batches.plan(0))  # the same every epoch: each bucket fills the same number of batches
    total = cfg.epochs * per_epoch // cfg.gradient_accumulation
    total = min(total, cfg.max_steps) if cfg.max_steps else total
    if per_epoch < 1 or total < 1:
        raise ValueError(f"{batches.size()} clips in {len(per_bucket)} buckets x {cfg.epochs} epochs give no "
                         f"optimiser step with batch size {cfg.batch_size} x {accelerator.num_processes} processes "
                         f"and --gradient-accumulation {cfg.gradient_accumulation} (with several processes a "
                         "bucket's incomplete batch is left out)")
    scheduler = get_scheduler(cfg.lr_scheduler, optimizer, num_warmup_steps=cfg.lr_warmup_steps,
                              num_training_steps=total)
    transformer, optimizer = accelerator.prepare(transformer, optimizer)

    state = {"global_step": 0, "micro_step": 0, "epoch": 0, "position": 0}
    if resume_from is not None:
        from safetensors.torch import load_file

        load_lora_state(accelerator.unwrap_model(transformer), load_file(str(resume_from / "adapter.safetensors")))
        optimizer.load_state_dict(torch.load(resume_from / "optimizer.pt", map_location=device, weights_only=True))
        scheduler.load_state_dict(torch.load(resume_from / "scheduler.pt", weights_only=True))
        state.update(read_json_file(resume_from / "state.json"))
        log.info("resumed from %s: step %d, epoch %d, row %d", resume_from, state["global_step"], state["epoch"],
                 state["position"])
    finished = state["global_step"] >= total  # resumed from the last checkpoint of a run that had ended
    if accelerator.is_main_process:
        config = dataclasses.asdict(cfg)
        config.update(total_steps=total, clips=batches.size(), processes=accelerator.num_processes,
                      bucket_clips=per_bucket)
        atomic_write_text(output / CONFIG_FILE, json.dumps(config, indent=2))
    loss_log = LossLog(output, state["global_step"] if resume_from else None) if accelerator.is_main_process else None
    if tensorboard:
        accelerator.init_trackers("emovid-lora", config={k: v for k, v in dataclasses.asdict(cfg).items()
                                                         if isinstance(v, (int, float, str, bool))})
    validator = None
    if cfg.validate_every:
        validator = Validator(cfg, pipe, accelerator, output, state["global_step"] if resume_from else None, rows,
                              tensorboard)
        # step 0: the baseline; a finished run resumed: its last step, in case the kill came before that validation
        validator.due(state["global_step"], last=finished)

    objective = FlowMatchObjective(cfg.timestep_sampling, cfg.shift)
    result = TrainResult(global_step=state["global_step"], resumed_from=state["global_step"] if resume_from else None)
    progress = tqdm(total=total, initial=state["global_step"], desc="training LoRA", unit="step",
                    disable=not accelerator.is_main_process)
    transformer.train()
    window: list[float] = []
    sigmas_seen: list[float] = []
    skipped_in_a_row = 0
    started = time.perf_counter()
    if finished:
        log.info("%s is at step %d of %d: nothing left to train", resume_from, state["global_step"], total)
    for batch in () if finished else _stream(batches, state):
        state["micro_step"] += 1
        if not _all_have_a_batch(accelerator, bool(batch), state):
            skipped_in_a_row += 1  # not a step: the run goes on into the next rows until it has made `total`
            if skipped_in_a_row >= per_epoch:
                raise ValueError(f"{cfg.data}: a whole epoch of batches without a decodable clip; nothing to train on")
            continue
        skipped_in_a_row = 0
        with accelerator.accumulate(transformer):
            seeds = sample_seeds(cfg.seed, state["micro_step"], accelerator.process_index * cfg.batch_size,
                                 len(batch["latents"]))
            loss, sigmas = training_loss(transformer, objective, batch, cfg.task, seeds)
            accelerator.backward(loss)
            window.append(accelerator.gather(loss.detach()).mean().item())
            sigmas_seen.append(accelerator.gather(sigmas.mean().to(device)).mean().item())
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad()
        if not accelerator.sync_gradients:
            continue
        scheduler.step()
        state["global_step"] += 1
        step_loss = sum(window) / len(window)
        row = {"step": state["global_step"], "epoch": state["epoch"], "loss": step_loss,
               "lr": scheduler.get_last_lr()[0], "sigma": sum(sigmas_seen) / len(sigmas_seen),
               "seconds": round(time.perf_counter() - started, 3)}
        window, sigmas_seen = [], []
        result.losses.append(step_loss)
        if loss_log is not None:
            loss_log.append(row)
        if tensorboard:
            accelerator.log({"loss": step_loss, "lr": row["lr"]}, step=state["global_step"])
        progress.update(1)
        progress.set_postfix(loss=f"{step_loss:.4f}", epoch=state["epoch"])
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"loss became {step_loss} at step {state['global_step']}; "
                                     "lower --lr or use --mixed-precision bf16 instead of fp16")
        done = state["global_step"] >= total
        if accelerator.is_main_process and (done or state["global_step"] % cfg.checkpoint_every == 0):
            at_end = state["position"] >= batches.size()
            saved = dict(state, epoch=state["epoch"] + at_end, position=0 if at_end else state["position"])
            save_checkpoint(output, accelerator.unwrap_model(transformer), optimizer, scheduler, saved,
                            cfg.keep_checkpoints)
        if validator is not None:
            validator.due(state["global_step"], last=done)
        if done:
            break
    progress.close()
    accelerator.wait_for_everyone()
    result.global_step = state["global_step"]
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(transformer)
        result.lora_path = save_diffusers_lora(final, output)
        result.comfyui_path = save_comfyui_lora(final, output / COMFYUI_FILE)
        result.validation = validator.summary() if validator is not None else None
        log.info("trained %d steps; LoRA in %s (ComfyUI keys in %s)%s", result.global_step, result.lora_path,
                 result.comfyui_path, f"; {result.validation}" if result.validation else "")
    accelerator.end_training()
    # accelerate's state is a per-process singleton: clear it so the next train() in this process (a notebook,
    # the tests) may choose another precision or accumulation. The distributed process group is kept.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return result
