"""Sound tracks: a clip's audio as a standalone file of its own packets, or decoded to a float array."""

from __future__ import annotations

import io
from typing import Iterator, Optional

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


class AudioTrack:
    """A source's first sound track as float32 (channels, samples; mono, else a stereo mix), handed out by time range.

    Decoded lazily from a demuxer of its own, so what a writer gets never depends on how the container
    interleaves packets. Time 0 is ``video_start`` (the first video frame): audio before it is dropped, a
    late start is padded with silence. Decoding stops at the first packet that does not decode (a cut-off
    download): ``error`` then names the file and the reason, and the rest reads as silence.
    """

    def __init__(self, src: MediaSource, video_start: float) -> None:
        self.src = src
        self._container = open_input(src)
        stream = self._container.streams.audio[0]
        self.rate = int(stream.rate)
        self.layout = "mono" if stream.channels == 1 else "stereo"
        self.channels = 1 if self.layout == "mono" else 2
        self.error: Optional[str] = None
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
            self.error = f"{describe(self.src)}: audio decoding failed ({exc})"

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
        """Stop decoding and close the demuxer."""
        self._chunks.close()
        self._container.close()

    def __enter__(self) -> "AudioTrack":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
