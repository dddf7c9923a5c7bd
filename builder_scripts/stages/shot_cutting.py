"""Writing shots: each kept shot of a source, with its slice of the sound track, re-encoded frame-accurately.

`split_shots` routes the frames of `shot_detection.iter_shot_frames` to the current shot's `Mp4Writer`;
a shot too short so far is held in memory until it is long enough to keep. Shots outside
``min_seconds..max_seconds`` become rejects with their length; on a decoding error the source's
clips already written are deleted.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import av
import numpy as np

from builder_scripts.engine.manifest import reject
from builder_scripts.engine.stage import Outcome
from builder_scripts.stages.shot_detection import iter_shot_frames
from emovid_datasets.media import MediaError, Mp4Writer, open_input
from emovid_datasets.media.container import nominal_rate

STAGE = "segment"  # the stage these shots' rejects are recorded under
HOLD_BYTES = 256 * 2**20  # frames of a shot too short (so far) to keep are held in memory up to this size


@dataclass(frozen=True)
class SegmentOptions:
    """How `segment` keeps shots (the config's ``segment:`` keys and the command's options)."""

    min_seconds: float = field(default=4.0, metadata={"help": "drop shots shorter than this (seconds)"})
    max_seconds: float = field(default=30.0, metadata={"help": "drop shots longer than this (seconds)"})




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
        rate = nominal_rate(container.streams.video[0], path)
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
