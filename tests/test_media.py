"""PyAV media helpers: probe, MP4 conversion, audio extraction, clear errors."""

import io

import av
import numpy as np
import pytest
from factory import make_gif, make_video

from emovid_datasets.media import (
    MediaError,
    Mp4Writer,
    decode_audio,
    encode_gif,
    extract_flac,
    probe,
    read_frames,
    sample_frames,
    to_mp4,
)


def _streams(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return v.codec_context.name, v.codec_context.pix_fmt, len(c.streams.audio)


def test_probe_real_clips(shared_media):
    bbb = probe(shared_media / "big_buck_bunny_480p_30s.mp4")
    assert (bbb.width, bbb.height, bbb.num_frames, bbb.has_audio) == (854, 480, 720, True)
    assert bbb.fps == pytest.approx(24, abs=0.01) and bbb.duration == pytest.approx(30, abs=0.05)
    # The WebM container reports neither duration nor frame count: probe counts packets.
    webm = probe(shared_media / "test.webm")
    assert webm.num_frames == 94 and not webm.has_audio and webm.duration > 3


def test_gif_to_mp4_keeps_timing(shared_media, tmp_path):
    out = to_mp4(shared_media / "newtonscradle.gif", tmp_path / "cradle.mp4")
    info = probe(out)
    assert _streams(out) == ("h264", "yuv420p", 0)
    assert info.duration == pytest.approx(0.82, abs=0.05)
    assert info.width % 2 == 0 and info.height % 2 == 0
    # a requested rate resamples the GIF's frame delays onto that grid and keeps its length
    ten = probe(to_mp4(shared_media / "newtonscradle.gif", tmp_path / "cradle10.mp4", fps=10))
    assert ten.fps == pytest.approx(10) and ten.duration == pytest.approx(info.duration, abs=0.1)


def test_odd_sized_video_gets_even_dimensions_and_keeps_audio(shared_media, tmp_path):
    out = to_mp4(shared_media / "realshort.mp4", tmp_path / "short.mp4", max_side=161)
    info = probe(out)
    assert info.width == 160 and info.height % 2 == 0
    assert _streams(out)[2] == 1 and info.num_frames == 36


def test_generated_gif_frames_and_colours(tmp_path):
    gif = make_gif(tmp_path / "g.gif", frames=6, duration_ms=100)
    out = to_mp4(gif, tmp_path / "g.mp4")
    frames = read_frames(out)
    assert probe(out).duration == pytest.approx(0.6, abs=0.05)
    assert frames[0, ..., 0].mean() > 200 and frames[1, ..., 2].mean() > 200  # red, then blue


def test_extract_flac(tmp_path):
    clip = make_video(tmp_path / "tone.mp4", frames=24, fps=12, audio=True, audio_rate=16000)
    flac = extract_flac(clip)
    with av.open(__import__("io").BytesIO(flac)) as c:
        assert c.format.name == "flac" and c.streams.audio[0].rate == 16000
    audio = decode_audio(flac, sample_rate=8000)
    assert audio.shape[0] == 1 and audio.shape[1] == pytest.approx(16000, rel=0.05)
    assert abs(audio).max() > 0.1
    assert extract_flac(make_video(tmp_path / "silent.mp4", audio=False)) is None


def test_corrupt_input_names_the_file(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    with pytest.raises(MediaError, match="broken.mp4"):
        probe(bad)
    # a datasets {bytes, path} entry is read from its bytes but named by its path
    entry = {"bytes": bad.read_bytes(), "path": "clips/sticker-fear-007.mp4"}
    for reader in (probe, read_frames, lambda src: decode_audio(src, sample_rate=16000)):
        with pytest.raises(MediaError, match="clips/sticker-fear-007.mp4"):
            reader(entry)


def test_sample_frames_are_evenly_spaced(tmp_path):
    path = make_video(tmp_path / "v.mp4", frames=20, color=lambda i: np.full((48, 64, 3), i * 10, np.uint8))
    frames = sample_frames(path, 5)
    assert frames.shape == (5, 48, 64, 3)
    assert frames[:, 0, 0, 0].astype(int).tolist() == pytest.approx([0, 40, 80, 120, 160], abs=4)  # frames 0, 4, ..
    assert sample_frames(path, 50).shape[0] == 20


def test_gif_round_trip_keeps_frames_and_timing(tmp_path):
    from PIL import Image

    frames = [np.full((24, 32, 3), level, np.uint8) for level in (0, 128, 255)]
    image = Image.open(io.BytesIO(encode_gif(frames, 1000 / 12)))
    assert image.n_frames == 3 and image.info["loop"] == 0
    assert image.info["duration"] == 80  # 83 ms stored in GIF's 10 ms steps
    image.seek(1)
    assert np.asarray(image.convert("RGB"))[0, 0, 0] == 128
    with pytest.raises(ValueError, match="at least one frame"):
        encode_gif([], 100)


def test_mp4_writer_bytes_are_reproducible_at_sizes_x264_pads(tmp_path):
    """Film-like 160x96 frames with sound interleaved (the demo's films) gave x264 bytes that changed run to run."""
    from builder_scripts.demo.media import Variation, film_frame

    rng = np.random.default_rng(0)
    var = Variation.draw(rng)
    frames = [film_frame(96, 160, "fear", var, i / 24, rng) for i in range(72)]
    sound = (0.1 * np.sin(np.linspace(0, 400, 2000, dtype=np.float32)))[None].repeat(2, axis=0)
    digests = set()
    for run in range(6):
        path = tmp_path / f"run{run}.mp4"
        with Mp4Writer(path, width=160, height=96, fps=24, audio_rate=48000) as writer:
            for frame in frames:
                writer.write_frame(frame)
                writer.write_audio(sound)
        digests.add(path.read_bytes())
    assert len(digests) == 1


def test_scan_media_finds_media_by_suffix_and_skips_hidden_and_excluded(tmp_path):
    from emovid_datasets.media.files import VIDEO_SUFFIXES, scan_media

    for name in ("a/clip.MP4", "a/b/sticker.gif", "notes.txt", ".hidden/x.mp4", "a/.partial.mp4", "out/done.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert [p.as_posix() for p in scan_media(tmp_path, exclude=tmp_path / "out")] == ["a/b/sticker.gif", "a/clip.MP4"]
    assert [p.as_posix() for p in scan_media(tmp_path, VIDEO_SUFFIXES)] == ["a/clip.MP4", "out/done.mp4"]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        scan_media(tmp_path / "missing")
