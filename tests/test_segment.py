"""Scene segmentation: cut detection (fades and camera motion are not cuts), frame-accurate
single-pass clipping with sound, length rejects, corrupt inputs, kill-and-resume, the CLI."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import scenedetect
from PIL import Image

from builder_scripts.engine.manifest import read_manifest, read_rejects
from builder_scripts.stages import segment, shot_detection
from emovid_datasets.media import MediaError, Mp4Writer, decode_audio, probe, read_frames

FPS = 12
SIZE = (64, 48)
AUDIO_RATE = 16000
# The synthetic film's hard cuts (its first frame of every shot but the first); see _film_frame.
CUTS = [30, 90, 126, 144]
FRAMES = 174
TONES = [330.0, 550.0, 770.0, 990.0, 1210.0]  # one tone per shot, to check each clip got its own sound


def _texture(seed: int, width: int, height: int = SIZE[1]) -> np.ndarray:
    """Smooth random colour blobs (what camera footage looks like to a frame differencer)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BILINEAR))


def _film_frame(i: int) -> np.ndarray:
    """Frame ``i`` of the synthetic film (64x48): texture | black + fade from black | fast pan | short | solid."""
    w, h = SIZE
    if i < 30:  # shot 0: a still textured image
        return _texture(1, w, h)
    if i < 90:  # shot 1: hard cut to black, then (from frame 48) an 18-frame fade from black
        level = np.clip((i - 47) / 18, 0, 1)
        return (_texture(2, w, h) * level).astype(np.uint8)
    if i < 126:  # shot 2: a still texture, panned fast (4 px = 1/16 of the width a frame) over frames 100-119
        x = 4 * min(max(0, i - 100), 20)
        return _texture(3, w + 80, h)[:, x:x + w]
    if i < 144:  # shot 3: 1.5 s, too short to keep
        return np.full((h, w, 3), (40, 200, 60), np.uint8)
    return np.full((h, w, 3), (230, 230, 40), np.uint8)  # shot 4


def write_film(path: Path, *, audio: bool = True) -> Path:
    """The synthetic film with a different tone in each shot."""
    with Mp4Writer(path, width=SIZE[0], height=SIZE[1], fps=FPS,
                   audio_rate=AUDIO_RATE if audio else None, audio_layout="mono") as writer:
        for i in range(FRAMES):
            writer.write_frame(_film_frame(i))
        if audio:
            bounds = [0, *CUTS, FRAMES]
            for k, (a, b) in enumerate(zip(bounds, bounds[1:])):
                t = np.arange(round(a / FPS * AUDIO_RATE), round(b / FPS * AUDIO_RATE)) / AUDIO_RATE
                writer.write_audio((0.4 * np.sin(2 * np.pi * TONES[k] * t)).astype(np.float32)[None, :])
    return path


@pytest.fixture(scope="module")
def film(tmp_path_factory) -> Path:
    return write_film(tmp_path_factory.mktemp("film") / "film.mp4")


@pytest.fixture(scope="module")
def segmented(film, tmp_path_factory):
    out = tmp_path_factory.mktemp("segmented")
    summary = segment.run_segment(
        [{"clip_id": "film", "video_path": str(film), "source": "movie", "sequence_id": "seq-7"}],
        out, min_seconds=2.0, max_seconds=10.0, progress=False)
    return out, summary


def test_detects_hard_cuts_but_not_the_fade_or_the_pan(film):
    assert shot_detection.detect_cuts(film) == CUTS
    # the fade and the pan are hard: PySceneDetect's fixed threshold (27) cuts in both
    naive = scenedetect.detect(str(film), scenedetect.ContentDetector(min_scene_len=0))
    naive = [start.frame_num for start, _ in naive[1:]]
    assert [c for c in naive if 48 <= c < 66] and [c for c in naive if 100 < c < 120], naive


def test_big_buck_bunny_cuts_and_fade(shared_media):
    cuts = shot_detection.detect_cuts(shared_media / "big_buck_bunny_480p_30s.mp4")
    assert len(cuts) == 3 and all(abs(c - t) <= 2 for c, t in zip(cuts, [285, 378, 553])), cuts
    assert not [c for c in cuts if c <= 48]  # the fade-in from black is not a cut


def test_cockatoo_fast_camera_motion_is_not_a_cut(shared_media):
    assert shot_detection.detect_cuts(shared_media / "cockatoo.mp4") == []


def test_no_cut_in_a_single_shot(tmp_path):
    still = tmp_path / "one.mp4"
    with Mp4Writer(still, width=SIZE[0], height=SIZE[1], fps=FPS) as writer:
        for _ in range(40):
            writer.write_frame(_texture(5, *SIZE))
    assert shot_detection.detect_cuts(still) == []


def test_unreadable_file_raises_media_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(MediaError, match="bad.mp4"):
        shot_detection.detect_cuts(bad)


def test_rows_match_the_detected_shots(segmented, film):
    out, summary = segmented
    rows = read_manifest(out)
    assert summary.done == 1 and summary.rows == 4
    assert [r["clip_id"] for r in rows] == ["film-shot000", "film-shot001", "film-shot002", "film-shot004"]
    bounds = [0, *shot_detection.detect_cuts(film), FRAMES]
    for row in rows:
        k = row["shot_index"]
        assert (row["start_frame"], row["end_frame"]) == (bounds[k], bounds[k + 1])
        assert row["start_time"] == pytest.approx(bounds[k] / FPS, abs=1e-3)
        assert row["end_time"] == pytest.approx(bounds[k + 1] / FPS, abs=1e-3)
        assert row["parent_id"] == "film" and row["input_id"] == "film"
        assert row["source"] == "movie" and row["sequence_id"] == "seq-7"  # metadata carried
        assert Path(row["video_path"]) == out / "clips" / f"{row['clip_id']}.mp4"
    assert sorted(p.name for p in (out / "clips").iterdir()) == [f"{r['clip_id']}.mp4" for r in rows]


def test_clips_are_frame_accurate(segmented, film):
    out, _ = segmented
    source = read_frames(film).astype(np.float32)
    for row in read_manifest(out):
        clip = read_frames(row["video_path"]).astype(np.float32)
        start, end = row["start_frame"], row["end_frame"]
        assert len(clip) == end - start
        # each clip frame matches its own source frame at least as well as the source's neighbours
        # (in the pan and across shot boundaries a one-frame shift would be far worse)
        for j, frame in enumerate(clip):
            nearby = range(max(0, start + j - 2), min(len(source), start + j + 3))
            errors = {k: np.abs(frame - source[k]).mean() for k in nearby}
            assert errors[start + j] <= min(errors.values()) + 1.0 and errors[start + j] < 6
        # and the first frame has the colour of the source's frame at start_frame
        assert np.abs(clip[0].mean(axis=(0, 1)) - source[start].mean(axis=(0, 1))).max() < 4


def _peak_hz(sound: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(sound * np.hanning(len(sound))))
    return float(np.fft.rfftfreq(len(sound), 1 / AUDIO_RATE)[int(np.argmax(spectrum))])


def test_clips_keep_their_own_sound(segmented):
    out, _ = segmented
    edge = round(0.06 * AUDIO_RATE)  # 60 ms: less than a frame (83 ms), so a shift by one frame shows
    for row in read_manifest(out):
        assert probe(row["video_path"]).has_audio
        sound = decode_audio(row["video_path"], sample_rate=AUDIO_RATE)[0]
        end = round((row["end_time"] - row["start_time"]) * AUDIO_RATE)
        assert 0 <= len(sound) - end <= 2048  # AAC pads the last frame (1024 samples) with silence
        tone = TONES[row["shot_index"]]
        for part in (sound[:end], sound[:edge], sound[end - edge:end]):  # its own tone, right up to both cuts
            assert _peak_hz(part) == pytest.approx(tone, abs=20)


def test_short_and_long_shots_are_rejected_with_reasons(segmented, film, tmp_path):
    out, _ = segmented
    rejects = read_rejects(out)
    assert [(r["clip_id"], r["stage"], r["input_id"]) for r in rejects] == [("film-shot003", "segment", "film")]
    assert rejects[0]["reason"] == "shot 3 lasts 1.50 s < 2 s"
    segment.run_segment([{"clip_id": "film", "video_path": str(film)}], tmp_path, min_seconds=1.0,
                        max_seconds=4.0, progress=False)
    reasons = {r["clip_id"]: r["reason"] for r in read_rejects(tmp_path)}
    assert reasons == {"film-shot001": "shot 1 lasts 5.00 s > 4 s"}
    assert len(read_manifest(tmp_path)) == 4
    assert not (tmp_path / "clips" / "film-shot001.mp4").exists()


def test_silent_source_gives_silent_clips(tmp_path):
    path = write_film(tmp_path / "mute.mp4", audio=False)
    segment.run_segment([{"clip_id": "mute", "video_path": str(path)}], tmp_path / "out", min_seconds=2.0,
                        progress=False)
    rows = read_manifest(tmp_path / "out")
    assert len(rows) == 4 and not any(probe(r["video_path"]).has_audio for r in rows)


def test_corrupt_input_is_rejected_and_the_rest_goes_on(film, tmp_path):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(20000))
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(film.read_bytes()[: film.stat().st_size // 2])
    videos = [{"clip_id": p.stem, "video_path": str(p)} for p in (garbage, film, truncated)]
    summary = segment.run_segment(videos, tmp_path / "out", min_seconds=2.0, progress=False)
    assert summary.done == 3
    assert {r["parent_id"] for r in read_manifest(tmp_path / "out")} == {"film"}
    reasons = {r["input_id"]: r["reason"] for r in read_rejects(tmp_path / "out") if r["clip_id"] is None
               or r["clip_id"] in ("garbage", "truncated")}
    assert set(reasons) == {"garbage", "truncated"}
    assert "garbage.mp4" in reasons["garbage"] and "truncated.mp4" in reasons["truncated"]


KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from emovid_datasets.media import Mp4Writer
    from builder_scripts.stages.segment import run_segment

    write_frame = Mp4Writer.write_frame

    def write_or_die(self, frame):  # SIGKILL half-way through the first clip of the second source
        if self.path.name.startswith("film1-") and self.frames_written == 20:
            os.kill(os.getpid(), signal.SIGKILL)
        write_frame(self, frame)

    Mp4Writer.write_frame = write_or_die
    videos = [{"clip_id": f"film{k}", "video_path": sys.argv[1]} for k in range(int(sys.argv[3]))]
    run_segment(videos, sys.argv[2], min_seconds=2.0, progress=False)
""")


def test_killed_run_resumes_without_duplicates(film, tmp_path):
    out, count = tmp_path / "out", 3
    videos = [{"clip_id": f"film{k}", "video_path": str(film)} for k in range(count)]
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(film), str(out), str(count)],
                            cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert killed.returncode == -signal.SIGKILL and not (out / "stage.json").exists()
    assert {r["parent_id"] for r in read_manifest(out)} == {"film0"}  # checkpointed before the kill
    assert [p.name for p in (out / "clips").glob(".film1-shot000.mp4.tmp-*")]  # a partial MP4 was left

    summary = segment.run_segment(videos, out, min_seconds=2.0, progress=False)
    assert (summary.skipped, summary.done) == (1, count - 1)
    rows = read_manifest(out)
    ids = [r["clip_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 4 * count
    assert sorted(p.name for p in (out / "clips").iterdir()) == sorted(f"{i}.mp4" for i in ids)  # no partials
    assert all(probe(r["video_path"]).num_frames == r["end_frame"] - r["start_frame"] for r in rows)
    assert len(read_rejects(out)) == count  # shot 3 of each source, once
    again = segment.run_segment(videos, out, min_seconds=2.0, progress=False)
    assert (again.done, again.skipped, len(read_manifest(out))) == (0, count, 4 * count)


def test_cli_scans_folders_in_parallel(film, tmp_path):
    videos = tmp_path / "videos" / "nested"
    videos.mkdir(parents=True)
    (videos / "reel.mp4").write_bytes(film.read_bytes())
    (tmp_path / "videos" / "other.mov").write_bytes(film.read_bytes())
    (videos / "notes.txt").write_text("not a video")
    parser = argparse.ArgumentParser()
    segment.add_command(parser.add_subparsers())
    args = parser.parse_args(["segment", str(tmp_path / "videos"), "--out", str(tmp_path / "out"),
                              "--min-seconds", "2", "--max-seconds", "10", "--workers", "2"])
    assert args.func(args) == 0
    assert [r["clip_id"] for r in read_manifest(tmp_path / "out")] == [
        f"{name}-shot{k:03d}" for name in ("other", "reel") for k in (0, 1, 2, 4)]
    with pytest.raises(FileNotFoundError, match="missing"):
        segment.collect_videos([tmp_path / "missing"])
    (tmp_path / "videos" / "reel.mkv").write_bytes(film.read_bytes())
    ids = [item["clip_id"] for item in segment.collect_videos([tmp_path / "videos"])]
    assert len(ids) == len(set(ids)) == 3 and sum(i.startswith("reel-") for i in ids) == 2  # equal stems coexist
    with pytest.raises(ValueError, match="reel"):  # two inputs given by hand with one name are refused
        segment.collect_videos([tmp_path / "videos" / "reel.mkv", videos / "reel.mp4"])


def test_file_stems_become_safe_clip_ids(film, tmp_path):
    odd = tmp_path / "videos" / "my film $(echo hi) 🎬.mp4"
    odd.parent.mkdir()
    odd.write_bytes(film.read_bytes())
    [item] = segment.collect_videos([tmp_path / "videos"])
    assert item["clip_id"] == "my_film_echo_hi" and item["video_path"] == str(odd)


def _write_vfr(path: Path) -> Path:
    """8 s whose frames come every 50 ms for 3 s, then every 250 ms (a phone's variable rate), each frame's grey
    level telling its time; the sound is 440 Hz up to 4.0 s and 880 Hz after."""
    from fractions import Fraction

    import av

    times = [i * 0.05 for i in range(60)] + [3.0 + i * 0.25 for i in range(20)]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        video.codec_context.time_base = Fraction(1, 1000)
        sound = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for t in times:
            frame = av.VideoFrame.from_ndarray(np.full((SIZE[1], SIZE[0], 3), 20 + round(t * 25), np.uint8),
                                               format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        t = np.arange(8 * AUDIO_RATE) / AUDIO_RATE
        tone = (0.3 * np.sin(2 * np.pi * np.where(t < 4.0, 440, 880) * t)).astype(np.float32)
        for k in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = AUDIO_RATE, k
            out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))
    return path


def test_variable_frame_rate_keeps_its_pace_and_its_sound_in_sync(tmp_path):
    """Frames written one per slot whatever their timestamps drift from their sound (here by up to 3 s)."""
    source = _write_vfr(tmp_path / "vfr.mp4")
    segment.run_segment([{"clip_id": "vfr", "video_path": str(source)}], tmp_path / "out", min_seconds=1.0,
                        progress=False)
    (row,) = read_manifest(tmp_path / "out")
    info = probe(row["video_path"])
    assert row["end_time"] == pytest.approx(8.0, abs=0.01)
    assert info.duration == pytest.approx(8.0, abs=0.02)  # the last frame is held for its own 250 ms
    shown = (read_frames(row["video_path"])[:, :, :, 1].mean(axis=(1, 2)) - 20) / 25  # source time of each frame
    slots = np.arange(len(shown)) / info.fps
    assert np.abs(shown - slots).max() < 0.3  # the 250 ms gaps and half a slot, never more
    sound = decode_audio(row["video_path"], sample_rate=AUDIO_RATE)[0]
    assert 0 <= len(sound) - round(info.duration * AUDIO_RATE) <= 2048  # AAC pads its last frame
    window = AUDIO_RATE // 50
    high = [_peak_hz(sound[k:k + window]) > 660 for k in range(0, len(sound) - window, window)]
    switch = high.index(True) * window / AUDIO_RATE
    assert switch == pytest.approx(4.0, abs=0.03)
    assert shown[int(switch * info.fps)] == pytest.approx(switch, abs=0.3)  # the picture there is the same instant


def test_anamorphic_and_rotated_sources_are_cut_as_shown(tmp_path):
    from fractions import Fraction

    from factory import make_pyav_video

    dvd = make_pyav_video(tmp_path / "dvd.mp4", size=(352, 288), frames=24, sar=Fraction(16, 11))
    phone = make_pyav_video(tmp_path / "phone.mp4", size=(64, 48), frames=24, rotation=-90)
    segment.run_segment([{"clip_id": p.stem, "video_path": str(p)} for p in (dvd, phone)], tmp_path / "out",
                        min_seconds=1.0, progress=False)
    rows = {r["parent_id"]: r for r in read_manifest(tmp_path / "out")}
    assert {k: (probe(r["video_path"]).width, probe(r["video_path"]).height) for k, r in rows.items()} == {
        "dvd": (512, 288), "phone": (48, 64)}
    frame = read_frames(rows["phone"]["video_path"])[0]
    assert frame[:24, -24:, 0].mean() > 150 and frame[-24:, :24, 2].mean() > 150  # red top right: turned clockwise
