"""Media helpers: probe, frame decoding, audio extraction, MP4 conversion (PyAV) and GIFs (Pillow)."""

from .audio import AudioTrack, NoAudioStream, decode_audio, extract_audio
from .container import Display, MediaError, MediaSource, even, open_input
from .frames import Frame, iter_frames, read_frames, sample_frames
from .gif import encode_gif, write_gif
from .probe import MediaInfo, probe
from .transcode import Conversion, Mp4Writer, convert, to_mp4

__all__ = [
    "AudioTrack", "Conversion", "Display", "Frame", "MediaError", "MediaInfo", "MediaSource", "Mp4Writer",
    "NoAudioStream", "convert", "decode_audio", "encode_gif", "even", "extract_audio", "iter_frames", "open_input",
    "probe", "read_frames", "sample_frames", "to_mp4", "write_gif",
]
