"""Write MP4 (H.264 yuv420p, even dimensions, AAC sound) from frames, or from any video/GIF/WebP."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Optional, Union

import av
import numpy as np

from ..atomic import atomic_path
from .container import MediaError, MediaSource, describe, frame_time, open_input, video_stream

MAX_FPS = 60


def even(n: int) -> int:
    """Round a dimension down to an even number (yuv420p needs it), never below 2."""
    return max(2, int(n) // 2 * 2)


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

    def write_audio(self, frame: Union[np.ndarray, av.AudioFrame]) -> None:
        """Append audio: a PyAV frame (any format) or float32 (channels, samples) at ``audio_rate``."""
        if self._audio is None:
            raise RuntimeError("this writer was opened without audio")
        if isinstance(frame, np.ndarray):
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


def _output_rate(fps: Optional[float]) -> Fraction:
    """The constant output rate for a measured or requested ``fps`` (29.97 -> 30000/1001): 25 when unknown,
    at most MAX_FPS."""
    rate = Fraction(round(fps, 3)).limit_denominator(1001) if fps and fps > 0 else Fraction(25)
    return min(rate, Fraction(MAX_FPS))


def to_mp4(
    src: MediaSource,
    dst: Union[str, os.PathLike],
    *,
    max_side: Optional[int] = None,
    fps: Optional[float] = None,
    keep_audio: bool = True,
    crf: int = 20,
    end_time: Optional[float] = None,
) -> Path:
    """Convert any video, GIF or animated WebP into MP4 H.264 yuv420p at a constant rate.

    Variable frame timing (GIF delays) is resampled onto the constant-rate grid by the frames'
    presentation times; sound is kept (as AAC) when the input has some and ``keep_audio``.
    ``end_time`` keeps only the first seconds, frame- and sample-accurately (e.g. an advert tail).
    """
    from .probe import probe  # local import: probe and transcode are siblings

    info = probe(src, decode_check=False)
    with open_input(src) as container:
        vstream = video_stream(container, src)
        rate = _output_rate(fps or info.fps)
        scale = 1.0
        if max_side and max(info.width, info.height) > max_side:
            scale = max_side / max(info.width, info.height)
        width, height = even(round(info.width * scale)), even(round(info.height * scale))
        astream = container.streams.audio[0] if (keep_audio and container.streams.audio) else None
        layout = "mono" if astream is not None and astream.channels == 1 else "stereo"
        duration = min(info.duration, end_time) if end_time else info.duration
        last_slot = round(duration * rate)
        samples_left = round(duration * astream.rate) if astream is not None else 0
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=astream.rate) if astream else None
        writer = Mp4Writer(dst, width=width, height=height, fps=rate, crf=crf,
                           audio_rate=astream.rate if astream is not None else None, audio_layout=layout)

        def write_sound(frames: list[av.AudioFrame]) -> None:
            nonlocal samples_left
            for frame in frames:
                samples = frame.to_ndarray()[:, :max(samples_left, 0)]
                if samples.shape[1]:
                    writer.write_audio(samples)
                    samples_left -= samples.shape[1]

        start = None
        try:
            with writer:
                last = None
                for frame in container.decode(*([vstream] + ([astream] if astream is not None else []))):
                    if isinstance(frame, av.AudioFrame):
                        write_sound(resampler.resample(frame))
                    else:
                        t = frame_time(frame, writer.frames_written, rate)
                        start = t if start is None else start
                        slot = min(round((t - start) * rate), last_slot)
                        # Fill the grid up to this frame's slot with the previous frame, then write this one.
                        while last is not None and writer.frames_written < slot:
                            writer.write_frame(last)
                        if writer.frames_written <= slot and writer.frames_written < last_slot:
                            last = frame.reformat(width=width, height=height, format="yuv420p")
                            writer.write_frame(last)
                    if writer.frames_written >= last_slot and samples_left <= 0:
                        break
                # Hold the last frame for the rest of its display time (GIF last-frame delay).
                while last is not None and writer.frames_written < last_slot:
                    writer.write_frame(last)
                if resampler is not None:
                    write_sound(resampler.resample(None))
        except av.FFmpegError as exc:
            raise MediaError(f"{describe(src)}: conversion to MP4 failed ({exc})") from exc
    return Path(dst)
