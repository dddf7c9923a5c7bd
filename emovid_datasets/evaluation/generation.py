"""`emovid benchmark generate`: render every benchmark clip's prompt (and for i2v its first frame) with one model.

The folder convention, which `emovid evaluate --generated NAME=DIR` reads:

- ``DIR/<clip_id>.mp4``: one video per benchmark clip, named by the clip's id; any length, size or frame
  rate (evaluate scores what it finds and lists the clips without a video);
- ``DIR/generation.json``: how they were made: model, its revision (requested and resolved commit),
  family and pipeline class, LoRAs, settings, the seed rule and the benchmark.

Prompts are the benchmark's: the clip's caption followed by the paper's emotion sentence
(`taxonomy.emotion_prompt`, as `emovid-build splits` writes them to ``benchmark.jsonl``). For i2v the
condition image is the clip's first frame, decoded with PyAV in display order as a player shows it.
Each clip's noise seed is `clip_seed` of its id, so a rerun, or a run split over processes, gives the
same video. Clips already in DIR are skipped; videos are written atomically (a killed run leaves only a
hidden temporary, which the next run removes). Under ``torchrun`` or ``accelerate launch`` (RANK,
WORLD_SIZE, LOCAL_RANK), process r renders the clips at positions i with i % WORLD_SIZE == r, on
cuda:LOCAL_RANK.

Models outside diffusers (VideoCrafter-V2, DynamiCrafter): ``--prompts-out FILE`` writes FILE, one JSON
object per line (``clip_id``, ``source``, ``emotion``, ``seed``, ``prompt``, ``first_frame``), and for i2v
each first frame as a PNG in ``FILE_STEM_first_frames/<clip_id>.png`` beside FILE. Feed those to the
model's own script and save each video as ``DIR/<clip_id>.mp4`` (H.264 MP4; convert other formats with
ffmpeg); a hand-written ``DIR/generation.json`` describing the model is welcome but not read.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from tqdm.auto import tqdm

from ..atomic import TMP_MARK, atomic_write_text
from ..media import MediaError, Mp4Writer, iter_frames
from ..records import read_json_file
from ..stats import decoded_rows
from ..taxonomy import emotion_prompt
from .options import DTYPES

log = logging.getLogger(__name__)
RECORD = "generation.json"
SEED_RULE = "first 8 bytes of sha256('<seed>/<clip_id>') as a big-endian integer, shifted right by 1"
# generation.json keys that decide the videos: a resumed run must match them all
_IDENTITY = ("model", "revision", "family", "pipeline", "task", "loras", "settings", "negative_prompt", "dtype", "seed")


@dataclass(frozen=True)
class BenchmarkClip:
    """One benchmark clip: its id, source, emotion, generation prompt, and its row in the (undecoded) split."""

    clip_id: str
    source: str
    emotion: str
    prompt: str
    dataset: Any = field(repr=False, compare=False)
    index: int = 0

    def video(self) -> Any:
        """The clip's real video as its ``{bytes, path}`` entry (read from the split when asked)."""
        return self.dataset[self.index]["video"]


@dataclass
class GenerationRun:
    """What one process did: the clip ids it wrote, skipped (already there) and could not read."""

    rank: int
    world: int
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def benchmark_clips(dataset: str, config: str = "default", split: str = "benchmark",
                    limit: Optional[int] = None) -> list[BenchmarkClip]:
    """The benchmark clips of ``dataset`` sorted by clip id (the order of ``benchmark.jsonl``), the first ``limit``."""
    from ..loading import load_emovid

    ds = load_emovid(dataset, config, split=split, decode_media=False)
    rows = list(decoded_rows(ds.remove_columns([c for c in ("video", "audio") if c in ds.column_names])))
    order = sorted(range(len(rows)), key=lambda i: str(rows[i]["clip_id"]))[:limit]
    if not order:
        raise ValueError(f"{dataset}: split {split!r} has no clips")
    return [BenchmarkClip(str(rows[i]["clip_id"]), rows[i]["source"], rows[i]["emotion"],
                          emotion_prompt(rows[i].get("caption") or "", rows[i]["emotion"]), ds, i)
            for i in order]


def clip_seed(clip_id: str, seed: int = 0) -> int:
    """The noise seed of ``clip_id`` (see `SEED_RULE`): fixed per clip, independent of order and process."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{clip_id}".encode()).digest()[:8], "big") >> 1


def first_frame(clip: BenchmarkClip) -> Any:
    """The clip's first frame as a PIL RGB image (the i2v condition image)."""
    from PIL import Image

    return Image.fromarray(next(iter_frames(clip.video())).array)


def process_share(items: Sequence[Any], rank: int, world: int) -> list[Any]:
    """The items this process takes: positions i with i % world == rank."""
    if not 0 <= rank < world:
        raise ValueError(f"RANK {rank} is outside 0..WORLD_SIZE-1 ({world})")
    return list(items[rank::world])


def distributed_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun / accelerate's environment; (0, 1, 0) without it."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        return rank, world, int(os.environ.get("LOCAL_RANK", rank))
    except ValueError as exc:
        raise ValueError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers ({exc})") from exc


def write_prompts(clips: Sequence[BenchmarkClip], path: str | os.PathLike, task: str, seed: int = 0) -> Path:
    """Write the prompts file for models outside diffusers (see the module docstring); returns its path."""
    path = Path(path)
    frames_dir = path.with_name(f"{path.stem}_first_frames")
    lines = []
    for clip in tqdm(clips, desc="prompts", unit="clip"):
        image = None
        if task == "i2v":
            image = frames_dir / f"{clip.clip_id}.png"
            frames_dir.mkdir(parents=True, exist_ok=True)
            first_frame(clip).save(image)
        lines.append(json.dumps({"clip_id": clip.clip_id, "source": clip.source, "emotion": clip.emotion,
                                 "seed": clip_seed(clip.clip_id, seed), "prompt": clip.prompt,
                                 "first_frame": str(image.resolve()) if image else None}) + "\n")
    return atomic_write_text(path, "".join(lines))


def check_record(out_dir: Path, record: Mapping[str, Any]) -> None:
    """Raise ValueError when ``out_dir`` holds videos made with other settings (its generation.json differs)."""
    path = out_dir / RECORD
    if not path.is_file():
        return
    old = read_json_file(path)
    differ = [k for k in _IDENTITY if old.get(k) != record.get(k)]
    if differ:
        raise ValueError(f"{out_dir} holds videos made with other {', '.join(differ)} ({path}); use another --out "
                         "or the same settings")


def _remove_own_leftovers(out_dir: Path, clip_ids: Sequence[str]) -> None:
    """Delete the hidden temporaries a killed run left for these clips (other processes keep theirs)."""
    for cid in clip_ids:
        for leftover in glob.glob(str(out_dir / glob.escape(f".{cid}.mp4{TMP_MARK}")) + "*"):
            Path(leftover).unlink(missing_ok=True)


def generate_benchmark(clips: Sequence[BenchmarkClip], out_dir: str | os.PathLike, *, model: str, task: str,
                       loras: Sequence[tuple[str, float]] = (), revision: Optional[str] = None,
                       overrides: Optional[Mapping[str, Any]] = None, negative_prompt: Optional[str] = None,
                       seed: int = 0, dtype: Optional[str] = None, device: Optional[str] = None,
                       benchmark: Optional[Mapping[str, Any]] = None, progress: bool = True) -> GenerationRun:
    """Render this process's share of ``clips`` into ``out_dir/<clip_id>.mp4`` (see the module docstring).

    ``overrides`` replaces the family's recommended num_frames, height, width, steps, guidance or fps
    (None values keep the recommendation); ``dtype`` is fp32, bf16 or fp16 (default: the family's).
    """
    import dataclasses

    import diffusers
    import torch

    from ..devices import default_device
    from ..training.families import call_pipeline, load_video_pipeline, model_info, settings_record
    from ..training.generate import load_loras

    rank, world, local_rank = distributed_env()
    out_dir = Path(out_dir)
    info = model_info(model, task, revision)
    rec = dataclasses.replace(info.defaults.recommended(task),
                              **{k: v for k, v in (overrides or {}).items() if v is not None})
    dtype = dtype or info.defaults.dtype
    for path, _ in loras:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: LoRA folder or file not found")
    record = {"model": info.model, "revision": {"requested": revision, "commit": info.commit}, "family": info.family,
              "pipeline": info.pipeline, "task": task,
              "loras": [{"path": str(Path(p).resolve()), "weight": w} for p, w in loras],
              "settings": settings_record(rec), "negative_prompt": negative_prompt, "dtype": dtype,
              "seed": {"base": seed, "rule": SEED_RULE}, "defaults_source": info.defaults.source,
              "benchmark": dict(benchmark or {}), "versions": {"diffusers": diffusers.__version__,
                                                               "torch": torch.__version__}}
    check_record(out_dir, record)
    run = GenerationRun(rank, world)
    mine = process_share(clips, rank, world)
    _remove_own_leftovers(out_dir, [c.clip_id for c in mine])
    done = {c.clip_id for c in mine if (out_dir / f"{c.clip_id}.mp4").exists()}
    todo = [c for c in mine if c.clip_id not in done]
    run.skipped = [c.clip_id for c in mine if c.clip_id in done]
    pipe = None
    if todo:  # loaded (and so checked against the task) before generation.json is written
        if device is None:
            device = f"cuda:{local_rank}" if world > 1 and torch.cuda.is_available() else default_device()
        pipe = load_video_pipeline(info, task, dtype=getattr(torch, DTYPES[dtype]), revision=revision)
        pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        load_loras(pipe, loras)
    out_dir.mkdir(parents=True, exist_ok=True)
    if rank == 0 and not (out_dir / RECORD).is_file():
        atomic_write_text(out_dir / RECORD, json.dumps(record, indent=1))
    label = f"generate {task}" + (f" [{rank}/{world}]" if world > 1 else "")
    for clip in tqdm(todo, desc=label, unit="video", position=rank, disable=not progress):
        try:
            image = first_frame(clip) if task == "i2v" else None
        except MediaError as exc:
            log.warning("%s: cannot read the first frame (%s); skipped", clip.clip_id, exc)
            run.failed[clip.clip_id] = str(exc)
            continue
        generator = torch.Generator(device).manual_seed(clip_seed(clip.clip_id, seed))
        frames = call_pipeline(pipe, rec, prompt=clip.prompt, image=image, negative_prompt=negative_prompt,
                               generator=generator)
        path = out_dir / f"{clip.clip_id}.mp4"
        with Mp4Writer(path, width=frames.shape[2], height=frames.shape[1], fps=rec.fps) as writer:
            for frame in frames:
                writer.write_frame(frame)
        log.info("wrote %s", path)
        run.written.append(clip.clip_id)
    return run
