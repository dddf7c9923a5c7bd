"""Writing shots: each kept shot of a source, with its slice of the sound track, re-encoded frame-accurately.

`split_shots` routes the frames of `shot_detection.iter_shot_frames` to the current shot's `Mp4Writer`,
placed by their timestamps (a variable-rate source keeps its pace and its sound in sync) and shown as a
viewer sees them (square pixels, upright: `media.container.Display`); a shot too short so far is held
in memory until it is long enough to keep. Shots outside ``min_seconds..max_seconds`` become rejects
with their length; on a decoding error the source's clips already written are deleted.
"""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Optional, Union

import av

from builder_scripts.engine.manifest import reject
from builder_scripts.engine.stage import Outcome
from builder_scripts.stages.shot_detection import iter_shot_frames
from emovid_datasets.media import AudioTrack, Display, MediaError, Mp4Writer, open_input
from emovid_datasets.media.container import frame_duration, nominal_rate
from emovid_datasets.media.transcode import output_rate

STAGE = "segment"  # the stage these shots' rejects are recorded under
HOLD_BYTES = 256 * 2**20  # frames of a shot too short (so far) to keep are held in memory up to this size


@dataclass(frozen=True)
class SegmentOptions:
    """How `segment` keeps shots (the config's ``segment:`` keys and the command's options)."""

    min_seconds: float = field(default=4.0, metadata={"help": "drop shots shorter than this (seconds)"})
    max_seconds: float = field(default=30.0, metadata={"help": "drop shots longer than this (seconds)"})




class _ShotDropped(Exception):
    """Passed into an Mp4Writer's exit to make it delete its partial file instead of publishing it."""


class _ShotCutter:
    """Routes decoded frames and audio of one source to the current shot and finishes shots at cuts.

    A shot's frames are held in memory until it is long enough to keep (or HOLD_BYTES is
    reached), so shots shorter than ``min_seconds`` usually cost no encoding; a shot is
    abandoned as soon as it runs past ``max_seconds``. Frames go onto the writer's constant-rate
    grid by their time (`Mp4Writer.write_frame_at`), the sound by the same clock.
    """

    def __init__(self, parent: str, clips_dir: Path, *, rate: Fraction, display: Display,
                 audio: Optional[AudioTrack], min_seconds: float, max_seconds: float) -> None:
        self.parent, self.clips_dir = parent, clips_dir
        self.rate, self.display = rate, display
        self.audio, self.min_seconds, self.max_seconds = audio, min_seconds, max_seconds
        self.hold_frames = max(1, HOLD_BYTES // max(1, display.width * display.height * 3 // 2))
        self.rows: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []
        self._index = -1
        self._start(0, 0.0)

    def clip_id(self, index: int) -> str:
        return f"{self.parent}-shot{index:03d}"

    def _start(self, frame: int, time: float) -> None:
        self._index += 1
        self.start_frame, self.start_time = frame, time
        self.held: list[tuple[av.VideoFrame, float]] = []
        self.writer: Optional[Mp4Writer] = None
        self.too_long = False

    def _open_writer(self) -> None:
        self.writer = Mp4Writer(
            self.clips_dir / f"{self.clip_id(self._index)}.mp4", width=self.display.width,
            height=self.display.height, fps=self.rate, audio_rate=self.audio.rate if self.audio else None,
            audio_layout=self.audio.layout if self.audio else "stereo").__enter__()
        for frame, time in self.held:
            self._write(frame, time)
        self.held = []

    def _write(self, frame: av.VideoFrame, time: float) -> None:
        """Put ``frame`` (shown from ``time`` in the source) on the shot's grid, then the sound up to there."""
        assert self.writer is not None
        self.writer.write_frame_at(self.display.render(frame), time - self.start_time)
        if self.audio is not None:
            self.writer.write_audio(self.audio.take(self.start_time + self.writer.time))

    def add(self, frame: av.VideoFrame, time: float) -> None:
        """Append the next frame (shown at ``time`` seconds) to the current shot."""
        if self.too_long:
            if self.audio is not None:
                self.audio.take(time)  # a dropped shot's sound is read past, so it is never held
            return
        if time - self.start_time > self.max_seconds:
            self.too_long = True
            self.held = []
            self._drop_writer()
        elif self.writer is not None:
            self._write(frame, time)
        else:
            self.held.append((frame, time))
            if time - self.start_time >= self.min_seconds or len(self.held) >= self.hold_frames:
                self._open_writer()

    def cut(self, frame: int, time: float) -> None:
        """End the current shot before ``frame`` (shown at ``time``) and start the next one there."""
        self.finish(frame, time)
        self._start(frame, time)

    def finish(self, end_frame: int, end_time: float) -> None:
        """End the current shot at ``end_frame`` (exclusive, shown at ``end_time``): keep it or reject it."""
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
            if self.audio is not None:
                self.audio.take(end_time)
            self.rejects.append(reject(STAGE, reason, clip_id=clip_id, input_id=self.parent))
            return
        if self.writer is None:
            self._open_writer()
        writer, self.writer = self.writer, None
        writer.hold_until(duration)  # the last frame's own display time
        if self.audio is not None:
            writer.write_audio(self.audio.take(end_time))
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
        stream = container.streams.video[0]
        rate = output_rate(nominal_rate(stream, path))  # the grid the shots are written on
        audio = None
        if container.streams.audio:
            origin = float(first.frame.time) if first.frame.time is not None else 0.0
            audio = stack.enter_context(AudioTrack(path, origin))
        cutter = _ShotCutter(parent, Path(clips_dir), rate=rate, display=Display.of(stream, first.frame).fit(),
                             audio=audio, min_seconds=min_seconds, max_seconds=max_seconds)
        try:
            for index, time, frame, cut in itertools.chain([first], frames):
                if cut:
                    cutter.cut(index, time)
                shown = frame_duration(frame, rate)  # read before the writer retimes the frame
                cutter.add(frame, time)
            cutter.finish(index + 1, time + shown)
            if audio is not None and audio.error:
                raise MediaError(audio.error)
        except BaseException:
            cutter.abort()
            raise
    return Outcome(rows=cutter.rows, rejects=cutter.rejects)
