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
    extract_audio,
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


def _audio_stream_bytes(path) -> int:
    """Bytes of the audio packets inside a container, counted independently of `extract_audio`."""
    with av.open(str(path)) as c:
        return sum(p.size for p in c.demux(c.streams.audio[0]) if p.size)


def test_extract_audio_remuxes_the_clips_own_track(tmp_path):
    clip = make_video(tmp_path / "tone.mp4", frames=48, fps=12, audio=True, audio_rate=16000)
    track, suffix = extract_audio(clip)
    with av.open(io.BytesIO(track)) as c:
        assert suffix == "m4a" and c.streams.audio[0].codec_context.name == "aac"  # packets kept, not re-encoded
        assert c.streams.audio[0].rate == 16000
    assert len(track) <= 1.25 * _audio_stream_bytes(clip)
    # the same samples the MP4 plays, edit list included (a raw ADTS stream would add the encoder's priming)
    expected = decode_audio(clip, sample_rate=16000)
    got = decode_audio(track, sample_rate=16000)
    assert got.shape == expected.shape and np.array_equal(got, expected)
    assert extract_audio(clip) == (track, suffix)  # same input, same bytes
    assert extract_audio(make_video(tmp_path / "silent.mp4", audio=False)) is None


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


def _marker_box(frame: np.ndarray) -> tuple[int, int, int, int]:
    """Rows and columns (first, last) of the red marker in an RGB frame."""
    ys, xs = np.nonzero((frame[..., 0] > 150) & (frame[..., 2] < 100))
    return int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())


def test_anamorphic_source_is_resampled_to_square_pixels(tmp_path):
    """A 704x576 PAL frame at 16:11 samples is shown 1024x576; it must not come out squashed to 704x576."""
    from fractions import Fraction

    from factory import make_pyav_video

    src = make_pyav_video(tmp_path / "pal.mp4", size=(704, 576), frames=4, sar=Fraction(16, 11))
    with av.open(str(src)) as c:  # the container really carries the aspect ratio
        assert c.streams.video[0].sample_aspect_ratio == Fraction(16, 11)
    assert (probe(src).width, probe(src).height) == (1024, 576)
    out = to_mp4(src, tmp_path / "out.mp4")
    info = probe(out)
    assert (info.width, info.height) == (1024, 576)
    with av.open(str(out)) as c:
        assert c.streams.video[0].sample_aspect_ratio in (None, Fraction(1))
    assert _marker_box(read_frames(out)[0]) == pytest.approx((0, 287, 0, 511), abs=3)  # the left half, stretched
    small = probe(to_mp4(src, tmp_path / "small.mp4", max_side=321))  # scaled as shown, even sides
    assert (small.width, small.height) == (320, 180)


def test_rotated_phone_video_comes_out_upright(tmp_path):
    """A display matrix of "rotate 90" (FFmpeg: turn clockwise) shows a 64x48 recording as 48x64, its top-left
    corner at the top right; the MP4 must hold the turned pixels and no matrix."""
    from factory import make_pyav_video

    src = make_pyav_video(tmp_path / "phone.mp4", size=(64, 48), frames=4, rotation=-90)
    with av.open(str(src)) as c:
        assert next(c.decode(video=0)).rotation == -90
    assert (probe(src).width, probe(src).height) == (48, 64)
    out = to_mp4(src, tmp_path / "out.mp4")
    assert (probe(out).width, probe(out).height) == (48, 64)
    with av.open(str(out)) as c:
        assert next(c.decode(video=0)).rotation == 0
    frame = read_frames(out)[0]
    assert frame.shape == (64, 48, 3) and _marker_box(frame) == pytest.approx((0, 31, 24, 47), abs=2)
    other = to_mp4(make_pyav_video(tmp_path / "ccw.mp4", size=(64, 48), frames=2, rotation=90), tmp_path / "o.mp4")
    assert _marker_box(read_frames(other)[0]) == pytest.approx((32, 63, 0, 23), abs=2)  # turned the other way


def test_cut_off_mp4_keeps_what_decodes_and_says_so(tmp_path):
    """The first 40% of a 30 s faststart MP4: the header still claims 30 s, but only ~12 s decode. No frozen
    frame may fill the rest, and the sound must end with the picture."""
    from factory import cut_off, make_pyav_video, noise_frames

    from emovid_datasets.media import convert

    whole = make_pyav_video(tmp_path / "whole.mp4", frames=300, fps=10, faststart=True, audio_rate=16000,
                            color=noise_frames())
    assert not convert(whole, tmp_path / "whole-out.mp4").truncated
    part = cut_off(tmp_path / "part.mp4", whole, 0.4)
    assert probe(part).duration == pytest.approx(30)  # what the header claims
    done = convert(part, tmp_path / "out.mp4")
    info = probe(done.path)
    assert done.truncated and "of the 30.00 s its header claims" in done.cut_off
    assert 5 < done.duration < 15 and info.duration == pytest.approx(done.duration, abs=0.01)
    assert done.manifest_fields() == {"truncated": True, "decoded_duration": pytest.approx(done.duration),
                                      "header_duration": pytest.approx(30)}
    frames = read_frames(done.path)
    assert len(frames) == info.num_frames and np.abs(frames[-1].astype(int) - frames[-2]).mean() > 20  # not frozen
    sound = decode_audio(done.path, sample_rate=16000)
    assert sound.shape[1] / 16000 == pytest.approx(done.duration, abs=0.1)


def test_cut_off_gif_is_told_from_a_whole_one(tmp_path):
    """FFmpeg reports a GIF cut off mid-download as a shorter whole one; its blocks stop before the trailer."""
    from factory import cut_off, make_gif

    from emovid_datasets.media import convert
    from emovid_datasets.media.gif import gif_is_complete

    gif = make_gif(tmp_path / "g.gif", frames=20, size=(64, 64), colors=[(i * 12, 255 - i * 12, 60) for i in range(20)])
    data = gif.read_bytes()
    assert gif_is_complete(data)
    assert not any(gif_is_complete(data[:n]) for n in range(len(data)))  # every cut point, headers included
    assert not gif_is_complete(b"\x89PNG\r\n\x1a\n" + data[8:])
    done = convert(cut_off(tmp_path / "cut.gif", gif, 0.5), tmp_path / "cut.mp4")
    assert done.truncated and "GIF ends before its trailer" in done.cut_off and 0 < done.duration < 2
    assert not convert(gif, tmp_path / "whole.mp4").truncated


def test_a_real_gif_is_whole(shared_media):
    from emovid_datasets.media.gif import gif_is_complete

    data = (shared_media / "newtonscradle.gif").read_bytes()
    assert gif_is_complete(data) and not gif_is_complete(data[:350_000])


def test_a_packet_that_does_not_decode_is_skipped_as_a_player_skips_it(tmp_path):
    """Three frames of garbage inside a whole 4 s MP4: the conversion goes on past them (holding the frame
    before), instead of failing the file or ending it there."""
    from factory import make_pyav_video, noise_frames

    from emovid_datasets.media import convert

    src = make_pyav_video(tmp_path / "src.mp4", frames=40, fps=10, faststart=True, color=noise_frames())
    with av.open(str(src)) as c:
        packets = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    data = bytearray(src.read_bytes())
    for pos, size in packets[10:13]:
        data[pos:pos + size] = np.random.default_rng(pos).integers(0, 256, size, dtype=np.uint8).tobytes()
    garbled = tmp_path / "garbled.mp4"
    garbled.write_bytes(bytes(data))
    done = convert(garbled, tmp_path / "out.mp4")
    assert not done.truncated and done.duration == pytest.approx(4.0) and probe(done.path).num_frames == 40
