"""Sound tracks: a clip's audio as a standalone file of its own packets, or decoded to a float array."""

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


# Containers that carry a codec's packets as they are (no re-encoding); M4A keeps AAC's edit list, so the
# standalone track decodes to exactly the samples the MP4 plays. Any other codec goes into Matroska.
REMUX_CONTAINERS: dict[str, tuple[str, str]] = {"aac": ("ipod", "m4a"), "mp3": ("mp3", "mp3"),
                                                "flac": ("flac", "flac")}
FALLBACK_CONTAINER = ("matroska", "mka")


def extract_audio(src: MediaSource) -> Optional[tuple[bytes, str]]:
    """The first audio stream's packets remuxed, not re-encoded, into a standalone file: (bytes, suffix).

    None when there is no audio stream or it holds no packets.
    """
    with open_input(src) as container:
        if not container.streams.audio:
            return None
        in_stream = container.streams.audio[0]
        fmt, suffix = REMUX_CONTAINERS.get(in_stream.codec_context.name, FALLBACK_CONTAINER)
        buffer = io.BytesIO()
        packets = 0
        try:
            with av.open(buffer, mode="w", format=fmt) as out:
                out_stream = out.add_stream_from_template(in_stream)
                for packet in container.demux(in_stream):
                    if packet.dts is None:  # the demuxer's end-of-stream marker
                        continue
                    packet.stream = out_stream
                    out.mux(packet)
                    packets += 1
        except av.FFmpegError as exc:
            raise MediaError(f"{describe(src)}: audio remux failed ({exc})") from exc
        if packets == 0:
            return None
        return buffer.getvalue(), suffix


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
