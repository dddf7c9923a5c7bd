"""Write MP4 (H.264 yuv420p, even dimensions, AAC sound) from frames, or from any video/GIF/WebP as a viewer sees it."""

from __future__ import annotations

import contextlib
import itertools
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import av
import numpy as np

from ..atomic import atomic_path
from .audio import AudioTrack
from .container import (
    Display,
    MediaError,
    MediaSource,
    describe,
    even,
    frame_duration,
    frame_time,
    media_payload,
    open_input,
    video_stream,
)
from .gif import gif_is_complete

MAX_FPS = 60
TRUNCATION_FRAMES = 1.5  # a source whose frames end this many output frames before its header's duration is cut off


class Mp4Writer:
    """Encode frames (and optionally audio) into an MP4 at a constant frame rate.

    Use as a context manager; the file appears at ``path`` atomically when the block exits cleanly.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike],
        *,
        width: int,
        height: int,
        fps: Union[float, Fraction],
        audio_rate: Optional[int] = None,
        audio_layout: str = "stereo",
        crf: int = 20,
        preset: str = "veryfast",
    ) -> None:
        self.path = Path(path)
        self.width, self.height = even(width), even(height)
        self.fps = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
        self.audio_rate, self.audio_layout = audio_rate, audio_layout
        self.crf, self.preset = crf, preset
        self.frames_written = 0
        self._last: Optional[av.VideoFrame] = None  # the frame last written, to fill grid slots with
        self._atomic = atomic_path(self.path)

    def __enter__(self) -> "Mp4Writer":
        tmp = self._atomic.__enter__()
        self._out = av.open(str(tmp), mode="w", format="mp4")
        self._video = self._out.add_stream("libx264", rate=self.fps)
        self._video.width, self._video.height = self.width, self.height
        self._video.pix_fmt = "yuv420p"
        # Reproducible bytes (deterministic shards): single-threaded x264, and cpu-independent, without which
        # some of x264's SIMD paths made the bytes of 160x96 or 854x480 video change run to run.
        self._video.options = {"crf": str(self.crf), "preset": self.preset, "threads": "1",
                               "x264-params": "cpu-independent=1"}
        self._audio = None
        if self.audio_rate:
            self._audio = self._out.add_stream("aac", rate=self.audio_rate, layout=self.audio_layout)
            self._resampler = av.AudioResampler(format="fltp", layout=self.audio_layout, rate=self.audio_rate)
            self._audio_pts = 0
        return self

    def write_frame(self, frame: Union[np.ndarray, av.VideoFrame]) -> None:
        """Append one frame: an (H, W, 3) uint8 RGB array or a PyAV frame; resized if its size differs."""
        if isinstance(frame, np.ndarray):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if frame.width != self.width or frame.height != self.height or frame.format.name != "yuv420p":
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        frame.pts = self.frames_written
        frame.time_base = 1 / self.fps
        self._out.mux(self._video.encode(frame))
        self.frames_written += 1
        self._last = frame

    def write_frame_at(self, frame: Union[np.ndarray, av.VideoFrame], time: float) -> bool:
        """Place a frame shown from ``time`` seconds (the clip starts at 0) on the constant-rate grid, so variable
        frame timing (GIF delays, phone VFR) keeps its pace: the previous frame fills the slots before it, and a
        frame whose slot is already taken is dropped. Returns whether it was written."""
        slot = round(time * self.fps)
        self.hold_until(time)
        if self.frames_written > slot:
            return False
        self.write_frame(frame)
        return True

    def hold_until(self, time: float) -> None:
        """Repeat the last frame written up to the grid slot of ``time`` seconds (its own display time)."""
        slot = round(time * self.fps)
        while self._last is not None and self.frames_written < slot:
            self.write_frame(self._last)

    @property
    def time(self) -> float:
        """Seconds of video written so far (the end of the last grid slot filled)."""
        return self.frames_written / float(self.fps)

    def write_audio(self, frame: Union[np.ndarray, av.AudioFrame]) -> None:
        """Append audio: a PyAV frame (any format) or float32 (channels, samples) at ``audio_rate`` (none is a no-op)."""
        if self._audio is None:
            raise RuntimeError("this writer was opened without audio")
        if isinstance(frame, np.ndarray):
            if not frame.shape[-1]:
                return
            array = np.ascontiguousarray(frame, dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(array, format="fltp", layout=self.audio_layout)
            frame.sample_rate = self.audio_rate
        frame.pts = None
        for out in self._resampler.resample(frame):
            out.pts = self._audio_pts
            self._audio_pts += out.samples
            self._out.mux(self._audio.encode(out))

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if self.frames_written == 0:
                    raise MediaError(f"{self.path}: no frames were written")
                self._out.mux(self._video.encode(None))
                if self._audio is not None:
                    for out in self._resampler.resample(None):
                        out.pts = self._audio_pts
                        self._audio_pts += out.samples
                        self._out.mux(self._audio.encode(out))
                    self._out.mux(self._audio.encode(None))
        finally:
            self._out.close()
            self._atomic.__exit__(exc_type, exc, tb)


# Cut times come back rounded (6 decimals in manifests, float32 in the dataset: 0.5 ms at two hours), so a
# frame that far from a cut point counts as on it.
CUT_TOLERANCE = 1e-3


def output_rate(fps: Optional[Union[float, Fraction]]) -> Fraction:
    """The constant rate to write a source of nominal or measured ``fps`` at: the nearest fraction with a
    denominator up to 1001 (29.97003 -> 30000/1001, 24.0003 -> 24), 25 when unknown, at most MAX_FPS."""
    rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(25)
    return min(rate, Fraction(MAX_FPS))


@dataclass(frozen=True)
class Conversion:
    """An MP4 written by `convert`: the file, the seconds it holds, and whether its source was cut off."""

    path: Path
    duration: float  # seconds written: what decodes, never padded to what the header claims
    header_duration: float  # seconds the source's header claims (for a GIF: what its demuxer found)
    cut_off: Optional[str] = None  # why the source is judged truncated (None when it is whole)

    @property
    def truncated(self) -> bool:
        """Whether the source ended before its header said (an interrupted download) or its data broke off."""
        return self.cut_off is not None

    def manifest_fields(self) -> dict[str, Any]:
        """The manifest columns that record a truncation: ``truncated``, ``decoded_duration``, ``header_duration``."""
        return {"truncated": self.truncated, "decoded_duration": round(self.duration, 6),
                "header_duration": round(self.header_duration, 6)}


def _decodable(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
               broke: list[str]) -> Iterator[av.VideoFrame]:
    """The frames of ``stream`` that decode, as a player shows them: a packet the demuxer marks incomplete (the
    partial last one of a cut-off download) is not sent, one that fails to decode is skipped (its error appended
    to ``broke``) and decoding goes on with the next."""
    for packet in container.demux(stream):
        if packet.is_corrupt:
            continue
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            broke.append(str(exc))
            continue
        yield from frames


def _gif_cut_off(src: MediaSource) -> bool:
    """Whether a GIF source's blocks stop before the trailer (an interrupted download decodes shorter, silently)."""
    payload = media_payload(src)
    return not gif_is_complete(payload if isinstance(payload, bytes) else Path(payload).read_bytes())


def convert(
    src: MediaSource,
    dst: Union[str, os.PathLike],
    *,
    max_side: Optional[int] = None,
    fps: Optional[float] = None,
    keep_audio: bool = True,
    crf: int = 20,
    start_time: float = 0.0,
    end_time: Optional[float] = None,
) -> Conversion:
    """Convert any video, GIF or animated WebP into MP4 H.264 yuv420p at a constant rate, as a viewer sees it.

    Frames are resampled to square pixels at the display aspect and turned upright (`Display`); variable
    frame timing (GIF delays) is placed on the constant-rate grid by presentation time (`Mp4Writer.write_frame_at`);
    sound is kept (as AAC, from the first video frame on) when the input has some and ``keep_audio``.
    ``start_time``/``end_time`` (seconds from the first frame) keep only that stretch, frame- and
    sample-accurately (an advert tail; a shot of a film, when rehydrating a release). Only what
    decodes is written: a cut-off source gives a shorter clip (``cut_off`` says why), never frozen frames.
    """
    from .probe import probe  # local import: probe and transcode are siblings

    info = probe(src, decode_check=False)
    header = (min(info.duration, end_time) if end_time else info.duration) - start_time
    rate = output_rate(fps or info.fps)
    broke: list[str] = []
    with contextlib.ExitStack() as stack:
        container = stack.enter_context(open_input(src))
        vstream = video_stream(container, src)
        frames = _decodable(container, vstream, broke)
        first = next(frames, None)
        if first is None:
            raise MediaError(f"{describe(src)}: video does not decode ({broke[0] if broke else 'no frame'})")
        display = Display.of(vstream, first).fit(max_side)
        start = frame_time(first, 0, rate) + start_time
        audio = None
        if keep_audio and container.streams.audio:
            audio = stack.enter_context(AudioTrack(src, start))
        writer = Mp4Writer(dst, width=display.width, height=display.height, fps=rate, crf=crf,
                           audio_rate=audio.rate if audio else None, audio_layout=audio.layout if audio else "stereo")
        end = 0.0  # when the last frame decoded stops being shown (seconds from the first)
        try:
            with writer:
                for index, frame in enumerate(itertools.chain([first], frames)):
                    t = frame_time(frame, index, rate) - start
                    if t < -CUT_TOLERANCE:  # before ``start_time``
                        continue
                    t = max(t, 0.0)
                    if t >= header - (CUT_TOLERANCE if end_time else 0.0):
                        break
                    end = t + frame_duration(frame, rate)  # read before writing: the writer retimes the frame
                    writer.write_frame_at(display.render(frame), t)
                    if audio is not None:
                        writer.write_audio(audio.take(writer.time))
                end = min(end, header)
                writer.hold_until(end)  # the last frame's own display time (a GIF's last delay)
                if audio is not None:
                    writer.write_audio(audio.take(writer.time))
        except av.FFmpegError as exc:
            raise MediaError(f"{describe(src)}: conversion to MP4 failed ({exc})") from exc
        sound_error = audio.error if audio is not None else None
    cut_off = None
    if end < header - TRUNCATION_FRAMES / float(rate):
        cut_off = f"cut off: {end:.2f} s of the {header:.2f} s its header claims decode"
    elif info.video_codec == "gif" and _gif_cut_off(src):
        cut_off = f"cut off: the GIF ends before its trailer, after {end:.2f} s"
    elif sound_error:
        cut_off = f"cut off: its sound breaks off ({sound_error})"
    return Conversion(Path(dst), writer.time, info.duration, cut_off)


def to_mp4(src: MediaSource, dst: Union[str, os.PathLike], **options: Any) -> Path:
    """`convert` for callers that need only the file (options as there)."""
    return convert(src, dst, **options).path
