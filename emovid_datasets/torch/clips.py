"""`EmoVidClips`: EmoVid rows -> video diffusion training tensors (Wan convention), streamed, sharded, resumable.

Rows come from a `datasets.Dataset` or `IterableDataset` of any EmoVid config. Media stay
embedded bytes (cast to ``decode=False``) and are decoded with PyAV inside the iterating
process, so DataLoader workers never share a decoder. Frames stay uint8 until the final
conversion to float in [-1, 1].
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Iterator, Optional, Sequence, Union

import av
import datasets
import numpy as np
import torch
from datasets.distributed import split_dataset_by_node
from torch.utils.data import IterableDataset

from emovid_datasets.loading import without_media_decoding
from emovid_datasets.media import MediaError, decode_audio
from emovid_datasets.taxonomy import valence_of

from .batching import BucketRule
from .decoding import Window, decode_window, require_torchcodec, torchcodec_window
from .prompts import check_prompt, format_prompt
from .resize import RESIZE_MODES, ResizePlan, Size, check_buckets, plan_resize
from .sampling import (
    SHORT_CLIP_POLICIES,
    WINDOWS,
    check_choice,
    check_num_frames,
    fill_short,
    target_times,
    window_offset,
)

log = logging.getLogger("emovid.torch")

DECODERS: tuple[str, ...] = ("pyav", "torchcodec")
MAX_MAP_STYLE_SHARDS = 16
NAME_COLUMNS: tuple[str, ...] = ("emotion", "valence", "source")
USED_COLUMNS: tuple[str, ...] = ("clip_id", "source", "video", "audio", "caption", "emotion", "valence", "duration")
DECODE_ERRORS = (MediaError, av.FFmpegError, OSError, RuntimeError)
AnyRows = Union[datasets.Dataset, datasets.IterableDataset]


def node_rank_and_world_size(rank: Optional[int] = None, world_size: Optional[int] = None) -> tuple[int, int]:
    """(rank, world_size): the arguments, else torch.distributed when initialised, else the RANK / WORLD_SIZE
    environment variables that torchrun and accelerate set, else (0, 1)."""
    if rank is None or world_size is None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            found = torch.distributed.get_rank(), torch.distributed.get_world_size()
        else:
            found = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        rank = found[0] if rank is None else rank
        world_size = found[1] if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return rank, world_size


def to_video_tensor(frames: Sequence[np.ndarray], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """T uint8 (H, W, C) frames -> a (C, T, H, W) tensor: float32 in [-1, 1], or uint8 as decoded.

    Converted frame by frame in NumPy (single-threaded, cache-friendly, exact at 0 and 255), which
    beats torch's multi-threaded ops when DataLoader workers or other processes share the cores.
    """
    height, width, channels = frames[0].shape
    out = np.empty((channels, len(frames), height, width), dtype=np.uint8 if dtype == torch.uint8 else np.float32)
    for i, frame in enumerate(frames):
        slab = out[:, i]
        if dtype == torch.uint8:
            slab[...] = frame.transpose(2, 0, 1)
        else:
            np.divide(frame.transpose(2, 0, 1), np.float32(127.5), out=slab)
            slab -= 1.0
    return torch.from_numpy(out)


def to_model_range(video: torch.Tensor) -> torch.Tensor:
    """uint8 pixels (from ``video_dtype=torch.uint8``) -> float32 in [-1, 1], e.g. on the GPU after ``.to(device)``."""
    return video.to(torch.float32).div_(127.5).sub_(1.0)


class EmoVidClips(IterableDataset):
    """EmoVid rows as dicts of training tensors for a video diffusion trainer.

    Each sample: ``video`` (3, num_frames, H, W) float32 in [-1, 1] (or uint8 with ``video_dtype=torch.uint8``:
    4x less to pass from workers; convert with `to_model_range` on the GPU); ``first_frame`` (3, H, W);
    ``prompt``; ``emotion``, ``valence``, ``source`` (names); ``clip_id``; and with
    ``with_audio=True`` ``audio`` (audio_channels, round(num_frames * audio_rate / fps)) float32,
    time-aligned with the video (zeros for a clip without audio, e.g. stickers).

    Time: output frame i shows the source frame on screen at ``offset + i / fps`` by the clip's
    real timestamps. ``window="start"`` takes offset 0; ``"random"`` draws it per clip from
    (seed, epoch, clip_id) -- call `set_epoch`. A clip shorter than ``num_frames / fps`` is
    handled by ``short_clips``: "loop" repeats the resampled frames from the start (audio loops
    with it), "hold" repeats the last frame (audio padded with silence), "drop" skips the clip
    (counted in ``dropped``).
    Space: ``resize="crop"`` scales to cover (height, width) and centre-crops; ``"pad"`` scales to
    fit and centre-pads with black (-1); ``"bucket"`` crops to the bucket of ``buckets``
    ((height, width) pairs; default (height, width), (width, height) and a square of similar
    area) nearest in aspect ratio -- batch those with `BucketBatcher`.
    Parallelism: DataLoader workers each read whole, distinct shards (`datasets`' own assignment;
    a map-style Dataset is first cut into ``num_shards`` shards, default min(rows, 16)). With
    world_size > 1 (arguments, torch.distributed, or env RANK / WORLD_SIZE) the rows are split
    by `split_dataset_by_node`; pass ``split_by_node=False`` if you split them yourself.
    Resume: `state_dict` / `load_state_dict` (used by torchdata's StatefulDataLoader) resume
    exactly, except that rows held in a `datasets` shuffle buffer at the checkpoint are lost.
    Decoding: ``decoder_threads=1`` (default) decodes and converts single-threaded, as suits DataLoader
    workers; 0 lets PyAV pick (in-process use on idle cores, large frames).
    A row whose media cannot be decoded is skipped with a warning naming its clip_id and
    counted in ``skipped`` (counts live in the process that iterates: each worker has its own).
    """

    def __init__(
        self,
        dataset: AnyRows,
        *,
        num_frames: int = 81,
        fps: float = 16,
        height: int = 480,
        width: int = 832,
        resize: str = "crop",
        prompt: str = "caption+emotion",
        with_audio: bool = False,
        decode: str = "pyav",
        buckets: Optional[Sequence[Size]] = None,
        short_clips: str = "loop",
        window: str = "start",
        seed: int = 0,
        audio_rate: int = 16000,
        audio_channels: int = 1,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        split_by_node: bool = True,
        num_shards: Optional[int] = None,
        video_dtype: torch.dtype = torch.float32,
        decoder_threads: int = 1,
    ) -> None:
        self.num_frames = check_num_frames(num_frames)
        if fps <= 0 or height < 1 or width < 1:
            raise ValueError(f"fps, height and width must be positive, got {fps}, {height}, {width}")
        self.fps, self.height, self.width = float(fps), int(height), int(width)
        self.resize = check_choice("resize", resize, RESIZE_MODES)
        self.buckets = check_buckets(buckets, self.height, self.width) if resize == "bucket" else None
        self.bucket_rule = BucketRule(tuple(self.buckets), (self.num_frames,)) if self.buckets else None
        self.prompt = check_prompt(prompt)
        self.short_clips = check_choice("short_clips", short_clips, SHORT_CLIP_POLICIES)
        self.window = check_choice("window", window, WINDOWS)
        self.decode = check_choice("decode", decode, DECODERS)
        if decode == "torchcodec":
            require_torchcodec()
        if audio_channels not in (1, 2):
            raise ValueError(f"audio_channels must be 1 or 2, got {audio_channels}")
        self.with_audio, self.audio_rate, self.audio_channels = with_audio, int(audio_rate), audio_channels
        if video_dtype not in (torch.float32, torch.uint8):
            raise ValueError(f"video_dtype must be torch.float32 or torch.uint8, got {video_dtype}")
        self.seed, self.video_dtype = seed, video_dtype
        self.decoder_threads = decoder_threads
        self.rank, self.world_size = node_rank_and_world_size(rank, world_size)
        self.skipped = 0
        self.dropped = 0
        self._rows = self._prepare(dataset, split_by_node=split_by_node, num_shards=num_shards)
        self._features = self._rows.features or {}

    def _prepare(self, dataset: AnyRows, *, split_by_node: bool, num_shards: Optional[int]) -> datasets.IterableDataset:
        if not isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
            raise TypeError(f"EmoVidClips needs one split (a datasets.Dataset or IterableDataset), "
                            f"got {type(dataset).__name__}; e.g. pass dataset['train']")
        if dataset.column_names:
            wanted = [c for c in USED_COLUMNS if c in dataset.column_names and (self.with_audio or c != "audio")]
            dataset = dataset.select_columns(wanted)
        dataset = without_media_decoding(dataset, keep_video_decoding=self.decode == "torchcodec")
        split = split_by_node and self.world_size > 1
        if isinstance(dataset, datasets.Dataset):
            if split:
                dataset = split_dataset_by_node(dataset, self.rank, self.world_size)
            shards = num_shards or max(1, min(len(dataset), MAX_MAP_STYLE_SHARDS))
            return dataset.to_iterable_dataset(num_shards=shards)
        return split_dataset_by_node(dataset, self.rank, self.world_size) if split else dataset

    @property
    def num_shards(self) -> int:
        """Shards of this node's rows: use at most this many DataLoader workers."""
        return self._rows.num_shards

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self._rows.epoch
        for row in self._rows:
            sample = self._sample(row, epoch)
            if sample is not None:
                yield sample

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle a shuffled dataset and redraw random windows (works with persistent workers)."""
        self._rows.set_epoch(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Position in this process's rows plus its skip/drop counts (StatefulDataLoader calls it per worker)."""
        return {"rows": self._rows.state_dict(), "skipped": self.skipped, "dropped": self.dropped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume after the last row of ``state``; the next iteration starts there."""
        self._rows.load_state_dict(state["rows"])
        self.skipped, self.dropped = state["skipped"], state["dropped"]

    def _sample(self, row: dict[str, Any], epoch: int) -> Optional[dict[str, Any]]:
        clip_id = str(row.get("clip_id"))
        names = self._names(row)
        offset = window_offset(row.get("duration"), self.num_frames, self.fps, window=self.window,
                               seed=self.seed, epoch=epoch, clip_id=clip_id)
        try:
            window = self._decode_video(row.get("video"), target_times(self.num_frames, self.fps, offset), offset)
            frames = fill_short(window.frames, self.num_frames, self.short_clips)
            if frames is None:
                self.dropped += 1
                log.debug("dropped clip %s: %d of %d frames at %g fps (short_clips='drop')",
                          clip_id, len(window.frames), self.num_frames, self.fps)
                return None
            audio = self._audio(row.get("audio"), offset, len(window.frames)) if self.with_audio else None
        except DECODE_ERRORS as exc:
            self.skipped += 1
            log.warning("skipped clip %s: cannot decode its media (%s); %d skipped so far in this process",
                        clip_id, exc, self.skipped)
            return None
        video = to_video_tensor(frames, self.video_dtype)
        sample = {
            "video": video,
            "first_frame": to_video_tensor(frames[:1], self.video_dtype)[:, 0],  # cheaper than cloning a strided view
            "prompt": format_prompt(self.prompt, caption=row.get("caption") or "", clip_id=clip_id, **names),
            **names,
            "clip_id": clip_id,
        }
        if audio is not None:
            sample["audio"] = audio
        return sample

    def _names(self, row: dict[str, Any]) -> dict[str, str]:
        names = {}
        for column in NAME_COLUMNS:
            value = row.get(column)
            feature = self._features.get(column)
            if isinstance(feature, datasets.ClassLabel) and isinstance(value, int):
                value = feature.int2str(value)
            names[column] = value
        if names["valence"] is None and names["emotion"] is not None:
            names["valence"] = valence_of(names["emotion"])
        return names

    def _plan_for(self, src_height: int, src_width: int) -> ResizePlan:
        if self.resize == "bucket":
            height, width = self.bucket_rule.size_for(src_height, src_width)
        else:
            height, width = self.height, self.width
        return plan_resize(src_height, src_width, height, width, pad=self.resize == "pad")

    def _decode_video(self, video: Any, times: list[float], offset: float) -> Window:
        if not video:
            raise MediaError("the row has no video")
        if self.decode == "torchcodec":
            return torchcodec_window(video, times, self._plan_for)
        return decode_window(video, times, self._plan_for, seek=offset > 0, threads=self.decoder_threads)

    def _audio(self, src: Optional[dict], offset: float, available: int) -> torch.Tensor:
        """The sound under the video window; zeros when the clip has none; looped with a looped short clip."""
        samples = round(self.num_frames * self.audio_rate / self.fps)
        if not src or not (src.get("bytes") or src.get("path")):
            return torch.zeros((self.audio_channels, samples), dtype=torch.float32)
        wave = decode_audio(src, sample_rate=self.audio_rate, channels=self.audio_channels)
        start = round(offset * self.audio_rate)
        segment = wave[:, start:start + samples]
        if segment.shape[1] < samples and self.short_clips == "loop" and 0 < available < self.num_frames:
            period = min(segment.shape[1], round(available * self.audio_rate / self.fps))
            if period > 0:
                segment = np.tile(segment[:, :period], math.ceil(samples / period))[:, :samples]
        segment = np.pad(segment, ((0, 0), (0, samples - segment.shape[1])))
        return torch.from_numpy(np.ascontiguousarray(segment, dtype=np.float32))
