"""Shot boundaries: two PySceneDetect 0.7 `AdaptiveDetector`s that must agree, over one threaded PyAV decode.

Every frame is shrunk to ~128 px (FFmpeg's area filter, straight from YUV) and scored; a frame comes
out of `iter_shot_frames` only once no later frame can put a cut before it, marked when it starts a
shot. `detect_cuts` is that pass alone; `shot_cutting.split_shots` writes the shots from the same pass,
so both always agree. Frames are decoded here rather than through PySceneDetect's `VideoStreamAv`
because the cutting needs the full frames and the audio too, and because that backend converts every
full-size frame to BGR before shrinking it (twice the CPU time on 720p video; benchmarks/segment_speed.py).
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Iterator, NamedTuple, Optional, Union

import av
import numpy as np
from scenedetect import AdaptiveDetector, FrameTimecode, SceneDetector

from emovid_datasets.media import MediaError, open_input
from emovid_datasets.media.container import nominal_rate, video_stream

DETECT_WIDTH = 128  # frames are shrunk by the integer factor width // 128 before scoring (the speed lever)
WINDOW = 2  # frames on each side of a candidate cut in the rolling average
ADAPTIVE_THRESHOLD = 3.0  # a cut's HSV score must be this many times its neighbours' average (PySceneDetect default)
LUMA_THRESHOLD = 2.5  # ... and its luma score this many times theirs
MIN_COLOUR_SCORE = 15.0  # PySceneDetect's AdaptiveDetector default on the HSV score
MIN_LUMA_SCORE = 8.0  # mean absolute luma change (0-255) a cut must also show
MIN_SHOT_FRAMES = 15  # PySceneDetect default: no two cuts closer than this


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


def iter_shot_frames(container: av.container.InputContainer, path: Union[str, Path]) -> Iterator[ShotFrame]:
    """Decode the first video stream once and mark the frames that start a shot (never frame 0).

    Frames come out ``event_buffer_length`` frames behind decoding, once no later frame can put
    a cut before them. The detector sees a BGR copy shrunk by FFmpeg's area filter straight
    from YUV (`detection_size`).
    """
    stream = video_stream(container, path)
    rate = nominal_rate(stream, path)
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
