"""Fine-tune a video-language model as EmoVid's labeller, the paper's way: on the human-labelled clips.

The route is the classification recipe of the Qwen-VL fine-tuning folder: the chat VLM reads a clip's
sampled frames with the emotion question, its last hidden states are pooled, and a linear head over
the eight emotions gives logits. LoRA (`peft`) adapts the model; the head trains from scratch. The
targets are each clip's vote distribution (soft targets), examples are weighted so every emotion
counts the same, and a temperature fitted on a held-out split stratified by source and emotion makes
the probabilities calibrated. The folder it writes (`FineTunedVLMLabeller.load`) holds the adapter,
the head and ``labeller.json`` (base model, settings, training and held-out clip ids, metrics).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from tqdm.auto import tqdm

from ..atomic import atomic_write_text
from ..media import MediaError, MediaSource, sample_frames
from ..records import read_json_file
from ..taxonomy import EMOTIONS
from .labeller import Prediction, argmax_predictions, emotion_question
from .quality import balanced_weights, fit_temperature, labeller_metrics, softmax, stratified_holdout, vote_target
from .tiny import TINY, TINY_FRAME_PIXELS, build_tiny_vlm
from .vlm import load_vlm, video_message, vlm_inputs

log = logging.getLogger("emovid")
FORMAT = "emovid-vlm-labeller"
FORMAT_VERSION = 1
METADATA_FILE = "labeller.json"
ADAPTER_DIR = "adapter"
HEAD_FILE = "head.safetensors"
BASE_DIR = "base"  # only for `--vlm tiny`: the randomly initialised base model travels with its adapter
POOLING = ("mean", "last")


@dataclass
class FinetuneSettings:
    """Every option of `emovid-build annotate finetune`; the CLI takes its flags, defaults and help from here."""

    num_frames: int = field(default=8, metadata={"help": "frames sampled evenly per clip"})
    frame_size: int = field(default=448, metadata={"help": "frames are resized to SIZE x SIZE pixels"})
    epochs: int = field(default=3, metadata={"help": "passes over the training clips"})
    lr: float = field(default=1e-4, metadata={"help": "learning rate of the LoRA weights"})
    head_lr: float = field(default=1e-3, metadata={"help": "learning rate of the classification head"})
    lora_rank: int = field(default=16, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha (scale = alpha / rank)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA branch"})
    lora_targets: str = field(default="all-linear", metadata={
        "help": "peft target_modules: 'all-linear' or comma-separated module names (e.g. q_proj,v_proj)"})
    head_dropout: float = field(default=0.1, metadata={"help": "dropout before the classification head"})
    pooling: str = field(default="mean", metadata={
        "help": "last hidden states pooled over all tokens (mean) or taken at the last token (last)",
        "choices": POOLING})
    batch_size: int = field(default=2, metadata={"help": "clips per forward pass"})
    gradient_accumulation: int = field(default=8, metadata={"help": "forward passes per optimiser step"})
    holdout: float = field(default=0.2, metadata={
        "help": "share of each (source, emotion) cell held out for calibration and metrics"})
    soft_targets: bool = field(default=True, metadata={"help": "train on the vote distribution, not the majority"})
    balance: bool = field(default=True, metadata={"help": "weight examples so every emotion counts the same"})
    seed: int = field(default=0, metadata={"help": "split, initialisation and shuffling seed"})
    device: Optional[str] = field(default=None, metadata={"help": "torch device (default: cuda when available)"})
    dtype: str = field(default="float32", metadata={
        "help": "dtype of the base model: float32, bfloat16 or float16 (the head stays float32)"})
    revision: Optional[str] = field(default=None, metadata={"help": "hub revision of the base model"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow the model's own code (e.g. NVILA)"})


def settings_from(values: Mapping[str, Any]) -> FinetuneSettings:
    """`FinetuneSettings` from a mapping (a config section); an unknown key is an error naming it."""
    names = {f.name for f in dataclasses.fields(FinetuneSettings)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown labeller setting(s) {unknown}; expected some of {sorted(names)}")
    return FinetuneSettings(**values)


class VideoEmotionClassifier:
    """A chat VLM with LoRA adapters and a linear head over EMOTIONS on its pooled last hidden states."""

    def __init__(self, processor: Any, vlm: Any, head: Any, pooling: str) -> None:
        if pooling not in POOLING:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLING}")
        self.processor, self.vlm, self.head, self.pooling = processor, vlm, head, pooling
        self.backbone = getattr(vlm.get_base_model() if hasattr(vlm, "get_base_model") else vlm, "model")
        self.question = video_message(emotion_question())

    @property
    def device(self) -> Any:
        """Where the head (and so the model) sits."""
        return next(self.head.parameters()).device

    def logits(self, frames: Sequence[np.ndarray]) -> Any:
        """(B, 8) float32 logits for a batch of (T, H, W, 3) uint8 frame stacks."""
        inputs = vlm_inputs(self.processor, [self.question] * len(frames), frames).to(self.device)
        hidden = self.backbone(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "mean":
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        else:  # the processor pads on the left, so the last position is every sequence's last token
            pooled = hidden[:, -1]
        return self.head(pooled.float())

    def train(self, mode: bool = True) -> None:
        """Dropout on (training) or off (labelling) in the VLM and the head."""
        self.vlm.train(mode)
        self.head.train(mode)


def _hidden_size(vlm: Any) -> int:
    config = vlm.config.get_text_config() if hasattr(vlm.config, "get_text_config") else vlm.config
    return int(config.hidden_size)


def _frame_size(settings: FinetuneSettings, base: str) -> int:
    # The tiny model's processor takes exactly 56x56 frames.
    return int(TINY_FRAME_PIXELS ** 0.5) if base == TINY else settings.frame_size


class FrameCache:
    """Sampled frames per clip, decoded once and kept while they fit in ``budget_bytes`` (decoded again after)."""

    def __init__(self, num_frames: int, size: int, budget_bytes: int = 4 << 30) -> None:
        self.num_frames, self.size, self.budget = num_frames, size, budget_bytes
        self._frames: dict[str, np.ndarray] = {}
        self._bytes = 0

    def get(self, clip_id: str, video: MediaSource) -> np.ndarray:
        """The clip's (T, size, size, 3) frames."""
        if clip_id in self._frames:
            return self._frames[clip_id]
        frames = sample_frames(video, self.num_frames, width=self.size, height=self.size)
        if self._bytes + frames.nbytes <= self.budget:
            self._frames[clip_id] = frames
            self._bytes += frames.nbytes
        return frames


def _readable(rows: Sequence[Mapping[str, Any]], cache: FrameCache, progress: bool) -> list[Mapping[str, Any]]:
    kept = []
    for row in tqdm(rows, desc="labeller frames", unit="clip", disable=not progress):
        try:
            cache.get(str(row["clip_id"]), row["video_path"])
        except (MediaError, OSError) as exc:
            log.warning("annotate finetune: %s left out: %s", row["clip_id"], exc)
            continue
        kept.append(row)
    return kept


def training_targets(rows: Sequence[Mapping[str, Any]], settings: FinetuneSettings) -> np.ndarray:
    """(N, 8) targets: each clip's vote shares (soft targets), or one-hot on its majority label."""
    if settings.soft_targets:
        return np.stack([vote_target(r) for r in rows])
    return np.eye(len(EMOTIONS))[[EMOTIONS.index(r["emotion"]) for r in rows]]


def soft_cross_entropy(logits: Any, targets: Any, weights: Any, *, denominator: float) -> Any:
    """sum_i w_i * CE(targets_i, softmax(logits_i)) / denominator (the cross-entropy against a distribution)."""
    import torch

    per_clip = -(targets * torch.log_softmax(logits, dim=-1)).sum(dim=-1)
    return (weights * per_clip).sum() / denominator


def _new_classifier(base: str, settings: FinetuneSettings, out_dir: Path) -> tuple[VideoEmotionClassifier, str]:
    """The base VLM (for ``tiny``: built into OUT/base) with fresh LoRA adapters and a fresh head."""
    import torch
    from peft import LoraConfig, get_peft_model

    source = base
    if base == TINY:
        source = str(build_tiny_vlm(out_dir / BASE_DIR, seed=settings.seed))
    torch.manual_seed(settings.seed)
    processor, vlm = load_vlm(source, device=settings.device, dtype=settings.dtype,
                              trust_remote_code=settings.trust_remote_code, revision=settings.revision)
    targets = settings.lora_targets if settings.lora_targets == "all-linear" else settings.lora_targets.split(",")
    vlm = get_peft_model(vlm, LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha,
                                         lora_dropout=settings.lora_dropout, target_modules=targets))
    head = torch.nn.Sequential(torch.nn.Dropout(settings.head_dropout),
                               torch.nn.Linear(_hidden_size(vlm), len(EMOTIONS))).to(vlm.device)
    revision = getattr(vlm.config, "_commit_hash", None) or settings.revision
    return VideoEmotionClassifier(processor, vlm, head, settings.pooling), revision


def _predict_logits(model: VideoEmotionClassifier, rows: Sequence[Mapping[str, Any]], cache: FrameCache,
                    batch_size: int) -> np.ndarray:
    import torch

    model.train(False)
    out = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            frames = [cache.get(str(r["clip_id"]), r["video_path"]) for r in batch]
            out.append(model.logits(frames).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(EMOTIONS)))


def finetune_labeller(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike, base_model: str,
                      settings: FinetuneSettings = FinetuneSettings(), *, progress: bool = True,
                      on_step: Optional[Callable[[int, float], None]] = None) -> dict[str, Any]:
    """Fine-tune ``base_model`` on the human-labelled ``rows`` and save the labeller to ``out_dir``.

    ``rows`` need ``clip_id``, ``video_path``, ``emotion`` and ``source`` (``human_votes`` and
    ``human_annotators`` for soft targets and per-annotator kappas). Returns the ``labeller.json`` record.
    """
    import torch
    from safetensors.torch import save_file

    started = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    human = [r for r in rows if r.get("label_source") == "human" and r.get("emotion")]
    size = _frame_size(settings, base_model)
    cache = FrameCache(settings.num_frames, size)
    human = _readable(human, cache, progress)
    if len({r["emotion"] for r in human}) < 2:
        raise ValueError("need readable human labels of at least two emotions to fine-tune a labeller; "
                         "run `annotate import` first")
    by_id = {str(r["clip_id"]): r for r in human}
    train_ids, held_ids = stratified_holdout(human, settings.holdout, settings.seed)
    train, held = [by_id[c] for c in train_ids], [by_id[c] for c in held_ids]
    model, revision = _new_classifier(base_model, settings, out_dir)
    targets = torch.tensor(training_targets(train, settings), dtype=torch.float32)
    weights = torch.tensor(balanced_weights([r["emotion"] for r in train]) if settings.balance
                           else np.ones(len(train)), dtype=torch.float32)
    trainable = [p for p in model.vlm.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW([{"params": trainable, "lr": settings.lr},
                                   {"params": model.head.parameters(), "lr": settings.head_lr}], weight_decay=0.0)
    generator = torch.Generator().manual_seed(settings.seed)
    micro = max(1, settings.batch_size)
    per_epoch = -(-len(train) // micro)
    steps = -(-per_epoch * settings.epochs // max(1, settings.gradient_accumulation))
    log.info("annotate finetune: %s on %d human-labelled clips (%d held out), %d epochs, %d optimiser steps",
             base_model, len(train), len(held), settings.epochs, steps)
    bar = tqdm(total=steps, desc="labeller finetune", unit="step", disable=not progress)
    step, pending, losses, step_times = 0, 0, [], []
    tick = time.monotonic()
    model.train(True)
    for epoch in range(settings.epochs):
        order = torch.randperm(len(train), generator=generator).tolist()
        for start in range(0, len(order), micro):
            idx = order[start:start + micro]
            frames = [cache.get(str(train[i]["clip_id"]), train[i]["video_path"]) for i in idx]
            logits = model.logits(frames)
            # Each clip's weighted loss counts equally whatever the batch split: divide by the accumulation total.
            denominator = micro * max(1, settings.gradient_accumulation)
            loss = soft_cross_entropy(logits, targets[idx].to(logits.device), weights[idx].to(logits.device),
                                      denominator=denominator)
            loss.backward()
            losses.append(float(loss.detach()) * denominator / len(idx))  # this batch's mean weighted loss
            pending += 1
            last = start + micro >= len(order)
            if pending == settings.gradient_accumulation or (last and epoch == settings.epochs - 1):
                optimiser.step()
                optimiser.zero_grad(set_to_none=True)
                pending, step = 0, step + 1
                now = time.monotonic()
                step_times.append(now - tick)
                tick = now
                bar.update()
                bar.set_postfix(loss=f"{np.mean(losses[-settings.gradient_accumulation:]):.3f}")
                if on_step is not None:
                    on_step(step, losses[-1])
    bar.close()

    raw_logits = _predict_logits(model, held, cache, micro)
    # Calibrated against the human majority label: the confidence is then the chance that the label is right.
    majority = np.eye(len(EMOTIONS))[[EMOTIONS.index(r["emotion"]) for r in held]]
    temperature = fit_temperature(raw_logits, majority) if held else 1.0
    metrics = labeller_metrics(held, softmax(raw_logits, temperature), train_labels=[r["emotion"] for r in train],
                               raw_proba=softmax(raw_logits))
    metrics.update(train_clips=len(train), temperature=temperature, final_loss=float(np.mean(losses[-per_epoch:])),
                   seconds=time.monotonic() - started, seconds_per_step=float(np.mean(step_times)) if step_times else None)
    model.vlm.save_pretrained(out_dir / ADAPTER_DIR)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, str(out_dir / HEAD_FILE))
    record = {"format": FORMAT, "format_version": FORMAT_VERSION, "base_model": base_model,
              "base_model_revision": revision, "base_in_folder": base_model == TINY, "emotions": list(EMOTIONS),
              "settings": dataclasses.asdict(settings), "frame_size": size, "temperature": temperature,
              "train_clip_ids": train_ids, "held_out_clip_ids": held_ids, "metrics": metrics}
    atomic_write_text(out_dir / METADATA_FILE, json.dumps(record, indent=2))
    log.info("annotate finetune: held-out accuracy %s on %d clips (majority-class chance %s), macro-F1 %s, ECE %s -> "
             "%s after calibration (T=%.2f); saved to %s", _pct(metrics["heldout_accuracy"]), len(held),
             _pct(metrics["chance_accuracy"]), _pct(metrics["macro_f1"]), _pct(metrics["ece_before_calibration"]),
             _pct(metrics["ece_after_calibration"]), temperature, out_dir)
    return record


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class FineTunedVLMLabeller:
    """A labeller folder written by `finetune_labeller`: calibrated probabilities over EMOTIONS per clip."""

    name = "vlm-finetuned"

    def __init__(self, model: VideoEmotionClassifier, record: dict[str, Any], folder: Path, *,
                 batch_size: int = 4) -> None:
        self.model, self.record, self.folder, self.batch_size = model, record, folder, max(1, batch_size)
        self.temperature = float(record["temperature"])
        self.cache = FrameCache(record["settings"]["num_frames"], int(record["frame_size"]), budget_bytes=0)

    @property
    def train_clip_ids(self) -> list[str]:
        """Every clip the labeller has seen: trained on, or used to fit its temperature."""
        return list(self.record["train_clip_ids"]) + list(self.record["held_out_clip_ids"])

    @classmethod
    def load(cls, folder: str | os.PathLike, *, device: Optional[str] = None, batch_size: int = 4) -> "FineTunedVLMLabeller":
        """Load base model, adapter and head; checks the format and the emotion order."""
        import torch
        from peft import PeftModel
        from safetensors.torch import load_file

        folder = Path(folder)
        record = read_json_file(folder / METADATA_FILE)
        if record.get("format") != FORMAT or record.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: format {record.get('format')} v{record.get('format_version')} is not "
                             f"{FORMAT} v{FORMAT_VERSION}; fine-tune again with `emovid-build annotate finetune`")
        if record.get("emotions") != list(EMOTIONS):
            raise ValueError(f"{folder}: trained for other emotions than {list(EMOTIONS)}")
        settings = settings_from(record["settings"])
        if device:
            settings.device = device
        base = str(folder / BASE_DIR) if record.get("base_in_folder") else record["base_model"]
        processor, vlm = load_vlm(base, device=settings.device, dtype=settings.dtype,
                                  trust_remote_code=settings.trust_remote_code,
                                  revision=None if record.get("base_in_folder") else record.get("base_model_revision"))
        vlm = PeftModel.from_pretrained(vlm, str(folder / ADAPTER_DIR))
        head = torch.nn.Sequential(torch.nn.Dropout(settings.head_dropout),
                                   torch.nn.Linear(_hidden_size(vlm), len(EMOTIONS)))
        head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        model = VideoEmotionClassifier(processor, vlm, head.to(vlm.device), settings.pooling)
        model.train(False)
        return cls(model, record, folder, batch_size=batch_size)

    def predict_proba(self, videos: Sequence[MediaSource]) -> np.ndarray:
        """(N, 8) calibrated probabilities in EMOTIONS order."""
        rows = [{"clip_id": f"#{i}", "video_path": v} for i, v in enumerate(videos)]
        return softmax(_predict_logits(self.model, rows, self.cache, self.batch_size), self.temperature)

    def predict(self, videos: Sequence[MediaSource]) -> list[Optional[str]]:
        """The most likely emotion per clip."""
        return [p.emotion for p in self.label(videos)]

    def label(self, videos: Sequence[MediaSource]) -> list[Prediction]:
        """The most likely emotion per clip with its calibrated probability (the label's confidence)."""
        return argmax_predictions(self.predict_proba(videos))
