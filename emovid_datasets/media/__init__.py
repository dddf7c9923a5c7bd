"""PyAV-based media helpers: probe, frame decoding, audio extraction and MP4 conversion."""

from .audio import NoAudioStream, decode_audio, extract_flac
from .container import MediaError, MediaSource, open_input
from .frames import Frame, iter_frames, read_frames
from .probe import MediaInfo, probe
from .transcode import Mp4Writer, even, to_mp4

__all__ = [
    "Frame", "MediaError", "MediaInfo", "MediaSource", "Mp4Writer", "decode_audio", "even",
    "NoAudioStream", "extract_flac", "iter_frames", "open_input", "probe", "read_frames", "to_mp4",
]
