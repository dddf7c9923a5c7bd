"""Validation during training: short videos from the current LoRA, scored for emotion, at step 0 and every N steps.

At each validation step the main process renders every validation prompt with a fixed seed per prompt (the
same at every step, so steps compare), writes ``OUTPUT/samples/step-N/<name>.mp4`` and ``.gif``, and scores
them as `emovid evaluate` does: EA-8 / EA-2 with the dataset's evaluator (``DATASET/evaluator/``), flicker,
and CLIP with ``--validation-clip-model``. One row per step and prompt goes to ``OUTPUT/validation.csv``,
the step's means to TensorBoard (``validation/*``), and ``OUTPUT/samples/index.html`` shows the GIFs with
their scores. Step 0 (before training) is the baseline that `Validator.summary` compares the last step with.

Prompts: ``--validation-prompts`` (``EMOTION: caption`` gets the paper's emotion sentence appended and is
scored against EMOTION; other text is rendered as given and not EA-scored); by default the first
``--validation-per-emotion`` benchmark clips per emotion of the training dataset (their benchmark prompts,
`evaluation.generation.benchmark_clips`), or `BUILTIN_CAPTIONS` when it has no benchmark split.
"""

from __future__ import annotations

import csv
import html
import io
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ..atomic import atomic_write_text
from ..evaluation.evaluate import clip_text
from ..evaluation.evaluator import EVALUATOR_DIR
from ..evaluation.generation import BenchmarkClip, benchmark_clips, clip_seed
from ..evaluation.metrics import argmax_emotions, clip_score, ea_scores, flicker
from ..media import MediaError, Mp4Writer, iter_frames, read_frames, write_gif
from ..taxonomy import EMOTIONS, emotion_prompt, valence_of
from .families import Recommended, call_pipeline
from .models import experts_of

log = logging.getLogger(__name__)
SAMPLES_DIR = "samples"
CSV_FILE = "validation.csv"
GUIDANCE = 5.0  # Wan's default guidance scale
FIELDS = ("step", "sample", "emotion", "predicted", "ea8", "ea2", "flicker", "clip", "seed", "prompt")
# Used when the training dataset has no benchmark split: generic captions, two per emotion.
BUILTIN_CAPTIONS = {
    "amusement": ("A person laughs at a joke with friends.", "A cartoon dog slips on a banana peel."),
    "awe": ("A vast mountain range at sunrise seen from above.", "A person gazes up at a towering waterfall."),
    "contentment": ("A cat naps in a patch of sunlight.", "A person sips tea by a quiet window."),
    "excitement": ("Fans jump and cheer as their team scores.", "A child runs to open a birthday present."),
    "anger": ("A man shouts and slams his fist on a table.", "A cartoon character fumes with a red face."),
    "disgust": ("A person recoils from a spoiled meal.", "A woman wrinkles her nose at a foul smell."),
    "fear": ("A person backs away from a dark doorway.", "A character trembles during a thunderstorm."),
    "sadness": ("A person sits alone in the rain.", "A cartoon bunny cries over a broken toy."),
}


@dataclass(frozen=True)
class ValidationPrompt:
    """One validation video: its file name, the prompt, the emotion it is scored against, its seed."""

    name: str
    prompt: str
    caption: str
    emotion: Optional[str]
    seed: int
    clip: Optional[BenchmarkClip] = None


def parse_prompt(value: str) -> tuple[str, Optional[str]]:
    """``"EMOTION: caption"`` -> (caption, EMOTION); any other text -> (text, None)."""
    head, sep, tail = value.partition(":")
    if sep and head.strip().lower() in EMOTIONS:
        return tail.strip(), head.strip().lower()
    return value.strip(), None


def validation_prompts(data: str, config: str, given: Optional[Sequence[str]], per_emotion: int,
                       sources: Optional[Sequence[str]], seed: int) -> list[ValidationPrompt]:
    """The prompts of a run: ``given``, else benchmark prompts of ``data`` per emotion, else the built-in ones."""
    if given:
        parsed = [parse_prompt(v) for v in given]
        return [ValidationPrompt(f"{i:02d}-{emotion or 'prompt'}", emotion_prompt(caption, emotion) if emotion
                                 else caption, caption, emotion, clip_seed(f"validation/{i}", seed))
                for i, (caption, emotion) in enumerate(parsed)]
    try:
        clips = benchmark_clips(data, config)
    except (ValueError, FileNotFoundError) as exc:
        log.info("validation: no benchmark split in %s (%s); using the built-in prompts", data, exc)
        clips = []
    if sources and any(c.source in sources for c in clips):
        clips = [c for c in clips if c.source in sources]
    if clips:
        chosen = [c for e in EMOTIONS for c in [c for c in clips if c.emotion == e][:per_emotion]]
        return [ValidationPrompt(c.clip_id, c.prompt, c.dataset[c.index].get("caption") or "", c.emotion,
                                 clip_seed(c.clip_id, seed), c) for c in chosen]
    return [ValidationPrompt(f"{e}-{k}", emotion_prompt(caption, e), caption, e, clip_seed(f"{e}-{k}", seed))
            for e in EMOTIONS for k, caption in enumerate(BUILTIN_CAPTIONS[e][:per_emotion])]


def _mean(values: Sequence[Any]) -> Optional[float]:
    present = [float(v) for v in values if v not in (None, "")]
    return sum(present) / len(present) if present else None


def step_scores(rows: Sequence[dict[str, Any]]) -> dict[str, Optional[float]]:
    """A step's EA-8 / EA-2 (percent, over the EA-scored prompts) and mean flicker and CLIP."""
    scored = [r for r in rows if r["emotion"] and r["predicted"]]
    ea = ea_scores([r["predicted"] for r in scored], [r["emotion"] for r in scored]) if scored else None
    return {"ea8": ea["ea8"]["value"] if ea else None, "ea2": ea["ea2"]["value"] if ea else None,
            "flicker": _mean([r["flicker"] for r in rows]), "clip": _mean([r["clip"] for r in rows])}


def _fmt(value: Optional[float], spec: str) -> str:
    return "–" if value is None else format(value, spec)


class Validator:
    """Renders and scores the validation prompts with the pipeline being trained; `due` on every process.

    ``rows`` are the training rows: for i2v without benchmark clips, their first frames condition the prompts.
    """

    def __init__(self, cfg: Any, pipe: Any, accelerator: Any, output: Path, resumed_at: Optional[int],
                 rows: Any, tensorboard: bool) -> None:
        self.cfg, self.pipe, self.accelerator, self.tensorboard = cfg, pipe, accelerator, tensorboard
        self.samples, self.csv = output / SAMPLES_DIR, output / CSV_FILE
        self.main = accelerator.is_main_process
        self.rows: list[dict[str, Any]] = []
        if not self.main:
            return
        from ..evaluation.extractors import ClipEncoder, load_classifier

        self.prompts = validation_prompts(cfg.data, cfg.config, cfg.validation_prompts, cfg.validation_per_emotion,
                                          cfg.sources, cfg.seed)
        self.train_rows = rows
        evaluator = Path(cfg.data) / EVALUATOR_DIR
        self.classifier = load_classifier(str(evaluator)) if evaluator.is_dir() else None
        if self.classifier is None:
            log.warning("validation: %s has no %s/ (a local dataset's EA evaluator); EA-8 and EA-2 stay empty",
                        cfg.data, EVALUATOR_DIR)
        self.clip = ClipEncoder.load(cfg.validation_clip_model, str(accelerator.device)) \
            if cfg.validation_clip_model else None
        if not tensorboard:
            log.info("validation: tensorboard is not installed; scores go to %s only", self.csv)
        if resumed_at is not None and self.csv.is_file():
            with self.csv.open(newline="") as f:
                self.rows = [r for r in (dict(r, step=int(r["step"])) for r in csv.DictReader(f))
                             if r["step"] <= resumed_at]
        self._drop_stale_samples()
        self._write_csv()
        if self.rows:
            self._write_html()
        log.info("validation: %d prompts every %d steps, %d frames, %d denoising steps", len(self.prompts),
                 cfg.validate_every, cfg.validation_frames, cfg.validation_steps)

    def _drop_stale_samples(self) -> None:
        """Remove ``samples/step-N/`` folders whose rows are not kept: steps past the resumed checkpoint (a killed
        run validated them with a LoRA this run replaces) or, on a fresh run, any earlier run's."""
        kept = {f"step-{r['step']}" for r in self.rows}
        for folder in self.samples.glob("step-*") if self.samples.is_dir() else ():
            if folder.is_dir() and folder.name not in kept:
                shutil.rmtree(folder)

    def due(self, step: int, last: bool = False) -> None:
        """Validate at ``step`` when it is 0, a multiple of --validate-every or the ``last`` one (and not yet
        done); the main process renders, the others wait for it at a barrier."""
        if not (step % self.cfg.validate_every == 0 or last):
            return
        if self.main and step not in {r["step"] for r in self.rows}:
            self._validate(step)
        self.accelerator.wait_for_everyone()

    def _image(self, i: int, prompt: ValidationPrompt) -> Any:
        """The i2v condition image of ``prompt``: its benchmark clip's first frame, else a training clip's."""
        from PIL import Image

        video = prompt.clip.video() if prompt.clip is not None else self.train_rows[i % len(self.train_rows)]["video"]
        return Image.fromarray(next(iter_frames(video)).array)

    @torch.no_grad()
    def _render(self, step: int) -> list[tuple[ValidationPrompt, Path]]:
        """Every prompt through the pipeline at its seed; the MP4s (a GIF beside each)."""
        cfg, device = self.cfg, self.accelerator.device
        rec = Recommended(num_frames=cfg.validation_frames, height=cfg.height, width=cfg.width,
                          steps=cfg.validation_steps, guidance=GUIDANCE, fps=cfg.fps)
        moved = {name: next(getattr(self.pipe, name).parameters()).device
                 for name in ("text_encoder", "vae", "image_encoder") if getattr(self.pipe, name, None) is not None}
        for name in moved:
            getattr(self.pipe, name).to(device)
        experts = list(experts_of(self.pipe).values())
        training = [e.training for e in experts]
        for expert in experts:
            expert.eval()
        self.pipe.set_progress_bar_config(disable=True)
        folder = self.samples / f"step-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        try:
            for i, prompt in enumerate(self.prompts):
                image = self._image(i, prompt) if cfg.task == "i2v" else None
                with self.accelerator.autocast():
                    frames = call_pipeline(self.pipe, rec, prompt=prompt.prompt, image=image,
                                           generator=torch.Generator(device).manual_seed(prompt.seed))
                path = folder / f"{prompt.name}.mp4"
                with Mp4Writer(path, width=frames.shape[2], height=frames.shape[1], fps=cfg.fps) as writer:
                    for frame in frames:
                        writer.write_frame(frame)
                write_gif(path.with_suffix(".gif"), frames, cfg.fps)
                written.append((prompt, path))
        finally:
            for expert, mode in zip(experts, training):
                expert.train(mode)
            for name, where in moved.items():
                getattr(self.pipe, name).to(where)
        return written

    def _predicted(self, paths: Sequence[Path]) -> list[Optional[str]]:
        """The evaluator's emotion for each saved MP4 (None without an evaluator or where it fails)."""
        if self.classifier is None:
            return [None] * len(paths)
        try:
            return argmax_emotions(self.classifier.predict_proba([p.read_bytes() for p in paths]))
        except (MediaError, ValueError) as exc:
            log.warning("validation: the evaluator failed on %s (%s); EA left empty", paths[0].parent, exc)
            return [None] * len(paths)

    def _validate(self, step: int) -> None:
        try:
            written = self._render(step)
        except torch.OutOfMemoryError:
            # Rendering needs the text encoder and VAE on the accelerator beside the model being trained: a run
            # that fits for training may not fit here. Training goes on; this step has no validation.
            shutil.rmtree(self.samples / f"step-{step}", ignore_errors=True)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            log.error("validation at step %d skipped: out of accelerator memory while rendering; training goes on "
                      "(lower --validation-frames or --height/--width, or validate less often)", step)
            return
        predicted = self._predicted([path for _, path in written])
        rows = []
        for (prompt, path), label in zip(written, predicted):
            frames = read_frames(path)  # scored as `emovid evaluate` scores: the decoded file
            clip = None
            if self.clip is not None:
                text = clip_text(prompt.caption, prompt.emotion) if prompt.emotion else prompt.caption
                text_emb, _ = self.clip.encode_texts([text])
                clip = clip_score(self.clip.encode_images(frames), text_emb[0])
            hit = prompt.emotion and label
            rows.append({"step": step, "sample": prompt.name, "emotion": prompt.emotion or "", "predicted": label or "",
                         "ea8": int(label == prompt.emotion) if hit else "",
                         "ea2": int(valence_of(label) == valence_of(prompt.emotion)) if hit else "",
                         "flicker": flicker(frames), "clip": "" if clip is None else clip, "seed": prompt.seed,
                         "prompt": prompt.prompt})
        self.rows.extend(rows)
        self._write_csv()
        scores = step_scores(rows)
        if self.tensorboard:
            self.accelerator.log({f"validation/{k}": v for k, v in scores.items() if v is not None}, step=step)
        self._write_html()
        log.info("validation at step %d: EA-8 %s%%, EA-2 %s%%, flicker %s, CLIP %s (%s)", step,
                 _fmt(scores["ea8"], ".1f"), _fmt(scores["ea2"], ".1f"), _fmt(scores["flicker"], ".4f"),
                 _fmt(scores["clip"], ".4f"), self.samples / f"step-{step}")

    def _write_csv(self) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.csv, out.getvalue())

    def _by_step(self) -> dict[int, list[dict[str, Any]]]:
        steps: dict[int, list[dict[str, Any]]] = {}
        for row in self.rows:
            steps.setdefault(row["step"], []).append(row)
        return steps

    def _write_html(self) -> None:
        parts = ["<!doctype html><meta charset='utf-8'><title>validation samples</title>",
                 "<style>body{font-family:sans-serif}figure{display:inline-block;margin:4px;font-size:12px}"
                 "img{width:160px}</style><h1>Validation samples</h1>"]
        for step, rows in sorted(self._by_step().items()):
            s = step_scores(rows)
            parts.append(f"<h2>step {step}{' (baseline)' if step == 0 else ''}: EA-8 {_fmt(s['ea8'], '.1f')}%, "
                         f"EA-2 {_fmt(s['ea2'], '.1f')}%, flicker {_fmt(s['flicker'], '.4f')}, "
                         f"CLIP {_fmt(s['clip'], '.4f')}</h2>")
            for r in rows:
                clip = f", CLIP {float(r['clip']):.4f}" if r["clip"] not in (None, "") else ""
                parts.append(f"<figure><img src='step-{step}/{html.escape(r['sample'])}.gif' "
                             f"title='{html.escape(r['prompt'])}'><figcaption>{html.escape(r['sample'])}<br>"
                             f"{html.escape(r['emotion'] or '–')} → {html.escape(r['predicted'] or '–')}<br>"
                             f"flicker {float(r['flicker']):.4f}{clip}</figcaption></figure>")
        atomic_write_text(self.samples / "index.html", "\n".join(parts) + "\n")

    def summary(self) -> Optional[str]:
        """How EA moved from the first validated step (step 0, the baseline) to the last; None before two steps."""
        if not self.main:
            return None
        steps = self._by_step()
        if len(steps) < 2:
            return None
        first, last = min(steps), max(steps)
        a, b = step_scores(steps[first]), step_scores(steps[last])
        moves = [f"{name} {a[key]:.1f}% -> {b[key]:.1f}% ({b[key] - a[key]:+.1f})"
                 for key, name in (("ea8", "EA-8"), ("ea2", "EA-2")) if a[key] is not None and b[key] is not None]
        if not moves:
            return f"validation: no EA scores (no evaluator) from step {first} to step {last}"
        return f"validation EA from step {first} to step {last}: " + ", ".join(moves)
