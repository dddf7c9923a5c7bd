"""Sound tracks: extract a clip's audio as FLAC bytes, or decode it to a float array."""

from __future__ import annotations

import io
from typing import Optional

import av
import numpy as np

from .container import MediaError, MediaSource, describe, open_input


class NoAudioStream(MediaError):
    """The media has no sound track at all (not an error for a silent clip or a sticker)."""


def _resampled_frames(container, fmt: str, layout: Optional[str], rate: Optional[int]):
    stream = container.streams.audio[0]
    resampler = av.AudioResampler(format=fmt, layout=layout or stream.layout.name, rate=rate or stream.rate)
    for frame in container.decode(stream):
        yield from resampler.resample(frame)
    yield from resampler.resample(None)


def extract_flac(src: MediaSource) -> Optional[bytes]:
    """The first audio stream re-encoded losslessly as a FLAC file; None when there is no audio stream."""
    with open_input(src) as container:
        if not container.streams.audio:
            return None
        in_stream = container.streams.audio[0]
        layout = in_stream.layout.name if in_stream.channels <= 8 else "stereo"
        buffer = io.BytesIO()
        try:
            with av.open(buffer, mode="w", format="flac") as out:
                out_stream = out.add_stream("flac", rate=in_stream.rate, layout=layout)
                out_stream.format = "s16"
                samples = 0
                for frame in _resampled_frames(container, "s16", layout, in_stream.rate):
                    frame.pts = None
                    samples += frame.samples
                    out.mux(out_stream.encode(frame))
                out.mux(out_stream.encode(None))
        except av.FFmpegError as exc:
            raise MediaError(f"{describe(src)}: audio extraction failed ({exc})") from exc
        if samples == 0:
            return None
        return buffer.getvalue()


def decode_audio(src: MediaSource, *, sample_rate: int, channels: int = 1) -> np.ndarray:
    """Decode the first audio stream to float32 (channels, samples) at ``sample_rate``.

    Raises NoAudioStream when there is no sound track, MediaError when there is one that cannot be decoded.
    """
    layout = {1: "mono", 2: "stereo"}.get(channels)
    if layout is None:
        raise ValueError("channels must be 1 or 2")
    with open_input(src) as container:
        if not container.streams.audio:
            raise NoAudioStream(f"{describe(src)}: no audio stream")
        try:
            chunks = [f.to_ndarray() for f in _resampled_frames(container, "fltp", layout, sample_rate)]
        except av.FFmpegError as exc:
            raise MediaError(f"{describe(src)}: audio decoding failed ({exc})") from exc
    if not chunks:
        return np.zeros((channels, 0), dtype=np.float32)
    return np.concatenate(chunks, axis=1).astype(np.float32, copy=False)
