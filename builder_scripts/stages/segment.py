"""Stage `segment`: cut long videos into shots with PySceneDetect and write each kept shot as an MP4.

Each source is decoded once with PyAV (threaded): every frame is shrunk to ~128 px and scored
by PySceneDetect 0.7's `AdaptiveDetector`s (`ConfirmedCutDetector`), and, held back only the
few frames the detector may still cut before, routed with its slice of the sound track to the
current shot's `Mp4Writer` (re-encoded, so clips are frame accurate). `detect_cuts` is the same
pass without the writing, so both always agree. Shots outside ``min_seconds..max_seconds`` go
to the rejects. Frames are decoded here rather than through PySceneDetect's `VideoStreamAv`
because the single pass needs the full frames and the audio too, and because that backend
converts every full-size frame to BGR before shrinking it (twice the CPU time on 720p video,
the same on 480p; benchmarks/segment_speed.py).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional, Sequence, Union

import av
import numpy as np
from scenedetect import AdaptiveDetector, FrameTimecode, SceneDetector

from builder_scripts.engine.executors import add_engine_arguments, with_engine
from builder_scripts.engine.manifest import read_manifest, reject
from builder_scripts.engine.runner import StageSummary, run_stage
from builder_scripts.engine.stage import FunctionStage, Outcome
from emovid_datasets.media import MediaError, Mp4Writer, open_input
from emovid_datasets.options import add_dataclass_arguments

STAGE = "segment"
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".flv",
                            ".wmv", ".3gp"})
DETECT_WIDTH = 128  # frames are shrunk by the integer factor width // 128 before scoring (the speed lever)
WINDOW = 2  # frames on each side of a candidate cut in the rolling average
ADAPTIVE_THRESHOLD = 3.0  # a cut's HSV score must be this many times its neighbours' average (PySceneDetect default)
LUMA_THRESHOLD = 2.5  # ... and its luma score this many times theirs
MIN_COLOUR_SCORE = 15.0  # PySceneDetect's AdaptiveDetector default on the HSV score
MIN_LUMA_SCORE = 8.0  # mean absolute luma change (0-255) a cut must also show
MIN_SHOT_FRAMES = 15  # PySceneDetect default: no two cuts closer than this
HOLD_BYTES = 256 * 2**20  # frames of a shot too short (so far) to keep are held in memory up to this size


@dataclass(frozen=True)
class SegmentOptions:
    """How `segment` keeps shots (the config's ``segment:`` keys and the command's options)."""

    min_seconds: float = field(default=4.0, metadata={"help": "drop shots shorter than this (seconds)"})
    max_seconds: float = field(default=30.0, metadata={"help": "drop shots longer than this (seconds)"})


class ConfirmedCutDetector(SceneDetector):
    """A cut where two `AdaptiveDetector`s agree: one on the HSV score, one on luma only.

    Both compare a frame's change with the average change of the ``WINDOW`` frames on each
    side, so camera motion (large but steady change) does not cut: its onset scores 2x. A
    fade from black fools the HSV score alone: hue and saturation of near-black pixels are
    noise and jump on the first lit frame (Big Buck Bunny frame 5: 3.9x, content 90; a
    generated fade after black: 12x), while luma rises a few levels a frame (1.7x there; a
    linear fade starts at 2x), so the luma detector must confirm at ``luma_threshold`` 2.5.
    A camera jerk is the converse (cockatoo frame 134: luma 4.1x, HSV 2.7x), vetoed by the
    HSV detector at PySceneDetect's default 3.0. The hard cuts of Big Buck Bunny score
    113-151x (HSV) and 180-209x (luma). ``min_scene_len`` frames must separate two cuts.
    """

    def __init__(self, min_scene_len: int = MIN_SHOT_FRAMES, adaptive_threshold: float = ADAPTIVE_THRESHOLD,
                 luma_threshold: float = LUMA_THRESHOLD, window_width: int = WINDOW) -> None:
        super().__init__()
        self._colour = AdaptiveDetector(adaptive_threshold, min_scene_len=0, window_width=window_width,
                                        min_content_val=MIN_COLOUR_SCORE)
        self._luma = AdaptiveDetector(luma_threshold, min_scene_len=0, window_width=window_width,
                                      min_content_val=MIN_LUMA_SCORE, luma_only=True)
        self._min_scene_len = min_scene_len
        self._last_cut: Optional[int] = None

    def process_frame(self, timecode: FrameTimecode, frame_img: np.ndarray) -> list[FrameTimecode]:
        if self._last_cut is None:
            self._last_cut = timecode.frame_num
        colour = {cut.frame_num for cut in self._colour.process_frame(timecode, frame_img)}
        cuts = []
        for cut in self._luma.process_frame(timecode, frame_img):
            if cut.frame_num in colour and cut.frame_num - self._last_cut >= self._min_scene_len:
                self._last_cut = cut.frame_num
                cuts.append(cut)
        return cuts

    @property
    def event_buffer_length(self) -> int:
        """Cuts are reported this many frames after the frame they fall on."""
        return self._colour.event_buffer_length


def detection_size(width: int, height: int) -> tuple[int, int]:
    """The size frames are scored at: shrunk by the integer factor ``width // DETECT_WIDTH``."""
    factor = max(1, int(width) // DETECT_WIDTH)
    return max(2, round(width / factor)), max(2, round(height / factor))


class ShotFrame(NamedTuple):
    """A decoded frame: its index, seconds since the first frame, pixels, and whether a new shot starts here."""

    index: int
    time: float
    frame: av.VideoFrame
    cut: bool


def frame_rate(stream: av.video.VideoStream, path: Union[str, Path]) -> Fraction:
    """The stream's nominal frame rate as a Fraction (what frame numbers and clip rates use)."""
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        raise MediaError(f"{path}: unknown frame rate")
    return Fraction(rate.numerator, rate.denominator)


def iter_shot_frames(container: av.container.InputContainer, path: Union[str, Path]) -> Iterator[ShotFrame]:
    """Decode the first video stream once and mark the frames that start a shot (never frame 0).

    Frames come out ``event_buffer_length`` frames behind decoding, once no later frame can put
    a cut before them. The detector sees a BGR copy shrunk by FFmpeg's area filter straight
    from YUV (`detection_size`).
    """
    if not container.streams.video:
        raise MediaError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    rate = frame_rate(stream, path)
    detector = ConfirmedCutDetector()
    lag = detector.event_buffer_length
    pending: deque[ShotFrame] = deque()  # decoded, but a cut may still be reported before them
    origin: Optional[float] = None
    try:
        for index, frame in enumerate(container.decode(stream)):
            if origin is None:
                origin = float(frame.time) if frame.time is not None else 0.0
                width, height = detection_size(frame.width, frame.height)
            time = float(frame.time) - origin if frame.time is not None else index / float(rate)
            pending.append(ShotFrame(index, time, frame, False))
            small = frame.to_ndarray(format="bgr24", width=width, height=height, interpolation="AREA")
            for cut in detector.process_frame(FrameTimecode(index, rate), small):
                at = cut.frame_num - pending[0].index
                pending[at] = pending[at]._replace(cut=True)
            while pending[0].index <= index - lag:
                yield pending.popleft()
    except av.FFmpegError as exc:
        raise MediaError(f"{path}: decoding failed ({exc})") from exc
    yield from pending


def detect_cuts(path: Union[str, Path]) -> list[int]:
    """Frame numbers (0-based, never 0) at which a new shot starts; see `ConfirmedCutDetector`.

    A video with a single shot gives []. Frame numbers count decoded frames (the stream's
    nominal rate), exactly as `split_shots` cuts them.
    """
    with open_input(path) as container:
        return [shot_frame.index for shot_frame in iter_shot_frames(container, path) if shot_frame.cut]


class _AudioTrack:
    """A source's sound track as float32 (channels, samples), handed out by time range.

    Decoded once, lazily, from a second demuxer on the same file, so routing audio to shots
    never depends on how the container interleaves packets. Time 0 is the first video frame:
    audio before it is dropped, a late start is padded with silence.
    """

    def __init__(self, path: Union[str, Path], video_start: float) -> None:
        self._container = open_input(path)
        stream = self._container.streams.audio[0]
        self.rate = int(stream.rate)
        self.layout = "mono" if stream.channels == 1 else "stereo"
        self.channels = 1 if self.layout == "mono" else 2
        self._chunks = self._decode(stream, video_start)
        self._pending = np.zeros((self.channels, 0), np.float32)
        self._position = 0  # sample index (from time 0) of the first pending sample

    def _decode(self, stream: av.audio.AudioStream, video_start: float) -> Iterator[np.ndarray]:
        resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
        skip: Optional[int] = None  # samples to drop (> 0) or silence to insert (< 0) before the first one
        try:
            for frame in self._container.decode(stream):
                if skip is None:
                    start = float(frame.time) if frame.time is not None else video_start
                    skip = round((video_start - start) * self.rate)
                    if skip < 0:
                        yield np.zeros((self.channels, -skip), np.float32)
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray()
                    if skip > 0:
                        chunk, skip = chunk[:, skip:], max(0, skip - chunk.shape[1])
                    yield chunk
            for out in resampler.resample(None):
                yield out.to_ndarray()
        except av.FFmpegError as exc:
            raise MediaError(f"{self._container.name}: audio decoding failed ({exc})") from exc

    def take(self, until: float) -> np.ndarray:
        """The samples from the previous call's end up to time ``until`` (silence past the track's end)."""
        end = round(until * self.rate)
        missing = end - self._position - self._pending.shape[1]
        chunks = [self._pending]
        while missing > 0:
            chunk = next(self._chunks, None)
            if chunk is None:
                chunk = np.zeros((self.channels, missing), np.float32)
            chunks.append(chunk)
            missing -= chunk.shape[1]
        pending = np.concatenate(chunks, axis=1) if len(chunks) > 1 else self._pending
        count = max(0, end - self._position)
        out, self._pending = pending[:, :count], pending[:, count:]
        self._position += count
        return out

    def close(self) -> None:
        self._chunks.close()
        self._container.close()


class _ShotDropped(Exception):
    """Passed into an Mp4Writer's exit to make it delete its partial file instead of publishing it."""


class _ShotCutter:
    """Routes decoded frames and audio of one source to the current shot and finishes shots at cuts.

    A shot's frames are held in memory until it is long enough to keep (or HOLD_BYTES is
    reached), so shots shorter than ``min_seconds`` usually cost no encoding; a shot is
    abandoned as soon as it runs past ``max_seconds``.
    """

    def __init__(self, parent: str, clips_dir: Path, *, rate: Fraction, width: int, height: int,
                 audio: Optional[_AudioTrack], min_seconds: float, max_seconds: float) -> None:
        self.parent, self.clips_dir = parent, clips_dir
        self.rate, self.width, self.height = rate, width, height
        self.audio, self.min_seconds, self.max_seconds = audio, min_seconds, max_seconds
        self.hold_frames = max(1, HOLD_BYTES // max(1, width * height * 3 // 2))
        self.rows: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []
        self._index = -1
        self._start(0, 0.0)

    def clip_id(self, index: int) -> str:
        return f"{self.parent}-shot{index:03d}"

    def _start(self, frame: int, time: float) -> None:
        self._index += 1
        self.start_frame, self.start_time = frame, time
        self.frames = 0
        self.held: list[tuple[av.VideoFrame, Optional[np.ndarray]]] = []
        self.writer: Optional[Mp4Writer] = None
        self.too_long = False

    def _open_writer(self) -> None:
        self.writer = Mp4Writer(
            self.clips_dir / f"{self.clip_id(self._index)}.mp4", width=self.width, height=self.height,
            fps=self.rate, audio_rate=self.audio.rate if self.audio else None,
            audio_layout=self.audio.layout if self.audio else "stereo").__enter__()
        for frame, sound in self.held:
            self._write(frame, sound)
        self.held = []

    def _write(self, frame: av.VideoFrame, sound: Optional[np.ndarray]) -> None:
        assert self.writer is not None
        self.writer.write_frame(frame)
        if sound is not None and sound.shape[1]:
            self.writer.write_audio(sound)

    def add(self, frame: av.VideoFrame, time: float) -> None:
        """Append the next frame (shown at ``time`` seconds) to the current shot."""
        self.frames += 1
        # taken even for a dropped shot, to keep the sound track in step with the frames
        sound = self.audio.take(self.start_time + self.frames / self.rate) if self.audio else None
        if self.too_long:
            return
        if time - self.start_time > self.max_seconds:
            self.too_long = True
            self.held = []
            self._drop_writer()
        elif self.writer is not None:
            self._write(frame, sound)
        else:
            self.held.append((frame, sound))
            if self.frames >= self.min_seconds * self.rate or len(self.held) >= self.hold_frames:
                self._open_writer()

    def cut(self, frame: int, time: float) -> None:
        """End the current shot before ``frame`` (shown at ``time``) and start the next one there."""
        self.finish(frame, time)
        self._start(frame, time)

    def finish(self, end_frame: int, end_time: float) -> None:
        """End the current shot at ``end_frame`` (exclusive, shown at ``end_time``): keep it or reject it."""
        sound = self.audio.take(end_time) if self.audio else None
        duration = end_time - self.start_time
        clip_id = self.clip_id(self._index)
        reason = None
        if duration < self.min_seconds:
            reason = f"shot {self._index} lasts {duration:.2f} s < {self.min_seconds:g} s"
        elif duration > self.max_seconds:
            reason = f"shot {self._index} lasts {duration:.2f} s > {self.max_seconds:g} s"
        if reason:
            self._drop_writer()
            self.held = []
            self.rejects.append(reject(STAGE, reason, clip_id=clip_id, input_id=self.parent))
            return
        if self.writer is None:
            self._open_writer()
        writer, self.writer = self.writer, None
        if sound is not None and sound.shape[1]:
            writer.write_audio(sound)
        writer.__exit__(None, None, None)  # publishes the MP4 atomically
        self.rows.append({
            "clip_id": clip_id, "video_path": str(writer.path), "parent_id": self.parent,
            "shot_index": self._index, "start_frame": self.start_frame, "end_frame": end_frame,
            "start_time": round(self.start_time, 6), "end_time": round(end_time, 6),
        })

    def _drop_writer(self) -> None:
        """Close the current shot's writer, if any, without publishing its file."""
        writer, self.writer = self.writer, None
        if writer is not None:
            error = _ShotDropped()
            writer.__exit__(_ShotDropped, error, None)  # Mp4Writer deletes the partial MP4 on error

    def abort(self) -> None:
        """Drop the shot in progress and delete the clips already written (the source is rejected whole)."""
        self._drop_writer()
        for row in self.rows:
            Path(row["video_path"]).unlink(missing_ok=True)


def split_shots(path: Union[str, Path], clips_dir: Union[str, Path], parent: str, *,
                min_seconds: float = SegmentOptions.min_seconds,
                max_seconds: float = SegmentOptions.max_seconds) -> Outcome:
    """Cut one video into shots in a single decoding pass; kept shots become ``clips_dir/<parent>-shotNNN.mp4``.

    Rows give the shot's frames (end exclusive) and seconds in the source; shots dropped for
    length are rejects. On a decoding error the clips already written are deleted and the
    error (a MediaError naming the file) propagates.
    """
    with contextlib.ExitStack() as stack:
        container = stack.enter_context(open_input(path))
        frames = iter_shot_frames(container, path)
        first = next(frames, None)
        if first is None:
            raise MediaError(f"{path}: no decodable video frame")
        rate = frame_rate(container.streams.video[0], path)
        audio = None
        if container.streams.audio:
            origin = float(first.frame.time) if first.frame.time is not None else 0.0
            audio = stack.enter_context(contextlib.closing(_AudioTrack(path, origin)))
        cutter = _ShotCutter(parent, Path(clips_dir), rate=rate, width=first.frame.width,
                             height=first.frame.height, audio=audio, min_seconds=min_seconds,
                             max_seconds=max_seconds)
        try:
            for index, time, frame, cut in itertools.chain([first], frames):
                if cut:
                    cutter.cut(index, time)
                cutter.add(frame, time)
            cutter.finish(index + 1, time + 1 / float(rate))
        except BaseException:
            cutter.abort()
            raise
    return Outcome(rows=cutter.rows, rejects=cutter.rejects)


def _segment_one(item: dict[str, Any], *, clips_dir: str, min_seconds: float, max_seconds: float) -> Outcome:
    outcome = split_shots(item["video_path"], clips_dir, str(item["clip_id"]), min_seconds=min_seconds,
                          max_seconds=max_seconds)
    carried = {k: v for k, v in item.items() if k not in ("clip_id", "video_path")}
    outcome.rows = [{**row, **carried} for row in outcome.rows]
    return outcome


def run_segment(videos: Sequence[dict[str, Any]], out_dir: Union[str, Path], *,
                min_seconds: float = SegmentOptions.min_seconds, max_seconds: float = SegmentOptions.max_seconds,
                workers: int = 1, progress: bool = True) -> StageSummary:
    """Cut every source video (dicts with ``clip_id``, ``video_path`` and metadata to carry) into shots.

    Writes ``out_dir/clips/<clip_id>-shotNNN.mp4`` and one manifest row per kept shot; resumable
    (the manifest is checkpointed after every source, so a killed run redoes at most the
    sources in flight, overwriting their clips).
    """
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"need 0 < min_seconds <= max_seconds, got {min_seconds} and {max_seconds}")
    clips_dir = Path(out_dir) / "clips"
    work = FunctionStage(STAGE, functools.partial(_segment_one, clips_dir=str(clips_dir), min_seconds=min_seconds,
                                                  max_seconds=max_seconds))
    return run_stage(work, list(videos), out_dir, workers=workers, checkpoint_every=1, progress=progress)


def collect_videos(paths: Sequence[Union[str, Path]]) -> list[dict[str, Any]]:
    """Inputs from the command line: video files, folders of videos (scanned recursively; ids from
    file stems), or stage folders whose ``manifest.parquet`` lists ``clip_id`` + ``video_path``."""
    items: list[dict[str, Any]] = []
    for path in map(Path, paths):
        if path.is_dir() and (path / "manifest.parquet").exists():
            items.extend(read_manifest(path))
        elif path.is_dir():
            items.extend({"clip_id": p.stem, "video_path": str(p)} for p in sorted(path.rglob("*"))
                         if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            items.append({"clip_id": path.stem, "video_path": str(path)})
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    seen: dict[str, str] = {}
    for item in items:
        clip_id = str(item["clip_id"])
        if clip_id in seen:
            raise ValueError(f"two inputs share the id {clip_id!r}: {seen[clip_id]} and {item['video_path']}")
        seen[clip_id] = str(item["video_path"])
    return items


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser(STAGE, help="cut long videos into shots (PySceneDetect) and write each as an MP4")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR",
                   help="video files, folders of videos, or stage folders with a manifest.parquet")
    p.add_argument("--out", required=True, help="output stage folder (clips/ + manifest.parquet + rejects.parquet)")
    add_dataclass_arguments(p, SegmentOptions)
    p.add_argument("--workers", type=int, default=1, help="parallel processes (one source video each)")
    add_engine_arguments(p)
    p.set_defaults(func=with_engine(lambda a: run_segment(collect_videos(a.inputs), a.out, min_seconds=a.min_seconds,
                                                          max_seconds=a.max_seconds, workers=a.workers) and 0))
