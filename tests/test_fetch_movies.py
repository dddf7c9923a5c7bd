"""fetch-movies: CMD metadata quirks, story order, --from-dir ingest with advert trim, yt-dlp over loopback."""

from __future__ import annotations

import argparse
import csv
import functools
import http.server
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from factory import make_video

from builder_scripts.engine.manifest import read_manifest, read_rejects
from builder_scripts.sources import fetch_movies
from builder_scripts.sources.fetch_movies import WATCH_URL, read_metadata, run_fetch_movies, sequence_id_of, slug
from emovid_datasets.media import decode_audio, probe, read_frames

RED, GREEN, BLUE = (220, 30, 30), (30, 220, 30), (30, 30, 220)
CLIPS = [  # videoid, year, clip_idx, clip_tot, upload_year, title, clip_name, imdbid
    ("creed2clip1", "2018.0", "1", "10", "2019", "Creed II", "Round One", "tt6343314"),
    ("creedclip02", "2015.0", "2", "10", "2016", "Creed", "The Fight", "tt6343314"),
    ("creedclip01", "2015.0", "1", "10", "2016", "Creed", "First Meeting", "tt6343314"),
    ("creed2clip2", "2018.0", "2", "10", "2019", "Creed II", "Round Two", "tt6343314"),
    ("miserab0003", "-1.0", "3", "-1", "2012", "Les Misérables", "One Day More Scene", "tt1707386"),
    ("miserab0001", "-1.0", "1", "-1", "2012", "Les Misérables", "At the End of the Day", "tt1707386"),
]


def write_metadata(folder: Path, clips=CLIPS, durations: dict | None = None) -> Path:
    """A Condensed Movies metadata folder with the real files' columns and quirks."""
    folder.mkdir(parents=True, exist_ok=True)

    def table(name: str, header: list[str], rows) -> None:
        with open(folder / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)

    table("clips.csv", ["videoid", "year", "clip_idx", "clip_tot", "upload_year", "title", "clip_name", "imdbid"],
          clips)
    durations = durations if durations is not None else {c[0]: 120 for c in clips if c[0] != "miserab0003"}
    table("durations.csv", ["videoid", "duration"], durations.items())
    table("descriptions.csv", ["imdbid", "videoid", "description"],
          [("tt1707386", "miserab0001", "Valjean, after years, breaks parole, and sings.")])
    table("movies.csv", ["imdbid", "title", "year"], [("tt1707386", "Les Misérables", "2012")])
    table("movie_info.csv", ["imdbid", "genre", "country"],
          [("tt1707386", "['Drama', 'Musical']", "['UK', 'USA']")])
    table("split.csv", ["imdbid", "split"], [("tt1707386", "test"), ("tt6343314", "train")])
    return folder


def test_metadata_clean_groups_and_story_order(tmp_path):
    records = read_metadata(write_metadata(tmp_path / "meta"))
    by_id = {r["videoid"]: r for r in records}
    assert len(records) == len(CLIPS)

    creed = sequence_id_of("tt6343314", "Creed", 2016, 10)
    creed2 = sequence_id_of("tt6343314", "Creed II", 2019, 10)
    assert creed != creed2  # two films on one imdbid stay two stories
    assert [(r["videoid"], r["sequence_index"]) for r in records if r["sequence_id"] == creed] == [
        ("creedclip01", 0), ("creedclip02", 1)]
    assert [r["videoid"] for r in records if r["sequence_id"] == creed2] == ["creed2clip1", "creed2clip2"]

    mis = by_id["miserab0001"]
    assert mis["sequence_id"] == "tt1707386:les-miserables:2012:na"  # clip_tot -1 is unknown, slug is ASCII
    assert (mis["sequence_index"], by_id["miserab0003"]["sequence_index"]) == (0, 1)
    assert (mis["clip_idx"], by_id["miserab0003"]["clip_idx"]) == (1, 3)  # the gap stays visible
    assert mis["clip_tot"] is None
    assert mis["year"] == 2012  # year -1.0 filled from movies.csv
    assert by_id["creedclip01"]["year"] == 2015
    assert mis["description"].startswith("Valjean")
    assert mis["genre"] == ["Drama", "Musical"] and mis["country"] == ["UK", "USA"]
    assert mis["cmd_split"] == "test" and by_id["creedclip01"]["cmd_split"] == "train"
    assert by_id["miserab0003"]["listed_duration"] is None and by_id["creedclip01"]["listed_duration"] == 120
    assert by_id["creedclip01"]["genre"] is None  # no movie_info row
    assert slug("東京物語").startswith("t") and slug("東京物語") == slug("東京物語")


def test_metadata_needs_clips_csv_and_tolerates_missing_optional_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="clips.csv"):
        read_metadata(tmp_path)
    folder = write_metadata(tmp_path / "meta")
    for name in ("durations.csv", "movies.csv", "descriptions.csv", "movie_info.csv", "split.csv"):
        (folder / name).unlink()
    records = read_metadata(folder)
    assert len(records) == len(CLIPS)
    assert all(r["listed_duration"] is None and r["description"] is None for r in records)
    assert next(r for r in records if r["videoid"] == "miserab0001")["year"] is None


def encode(path: Path, segments: list[tuple[tuple[int, int, int], float]], *, fps: int = 12,
           vcodec: str = "libx264", acodec: str = "aac", rate: int = 48000) -> Path:
    """A small video of solid-colour segments [(colour, seconds)] with a tone, in the container of ``path``."""
    with av.open(str(path), "w") as out:
        video = out.add_stream(vcodec, rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = out.add_stream(acodec, rate=rate, layout="mono")
        frames = [colour for colour, seconds in segments for _ in range(round(seconds * fps))]
        for i, colour in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), colour, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = int(len(frames) / fps * rate)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / rate)).astype(np.float32)
        chunk = audio.frame_size or 1024
        for start in range(0, samples, chunk):
            frame = av.AudioFrame.from_ndarray(tone[None, start:start + chunk], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, start
            out.mux(audio.encode(frame))
        out.mux(audio.encode(None))
    return path


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    fetch_movies.add_command(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_from_dir_trims_advert_rejects_corrupt_and_missing_and_resumes(tmp_path):
    clips = [
        ("advert00001", "2001.0", "1", "2", "2017", "Film A", "Opening", "tt0000001"),
        ("plainwebm02", "2001.0", "2", "2", "2017", "Film A", "Ending", "tt0000001"),
        ("corrupt0003", "1999.0", "1", "10", "2018", "Film B", "Broken", "tt0000002"),
        ("missing0004", "1999.0", "2", "10", "2018", "Film B", "Geo-blocked", "tt0000002"),
    ]
    meta = write_metadata(tmp_path / "meta", clips, durations={"advert00001": 2, "plainwebm02": 1})
    videos = tmp_path / "videos"
    (videos / "2017").mkdir(parents=True)
    (videos / "2018").mkdir()
    encode(videos / "2017" / "advert00001.mkv", [(RED, 2.0), (GREEN, 2.0)])  # 2 s film + 2 s advert
    encode(videos / "2017" / "plainwebm02.webm", [(BLUE, 1.5)], vcodec="libvpx", acodec="libopus")
    (videos / "2018" / "corrupt0003.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    out = tmp_path / "out"

    assert run_command(["fetch-movies", "--metadata", str(meta), "--out", str(out), "--from-dir", str(videos)]) == 0

    rows = {r["clip_id"]: r for r in read_manifest(out)}
    assert set(rows) == {"cmd-advert00001", "cmd-plainwebm02"}
    advert = rows["cmd-advert00001"]
    assert advert["origin"] == "https://www.youtube.com/watch?v=advert00001"
    assert advert["source"] == "movie" and advert["advert_trimmed"] is True
    assert advert["sequence_id"] == rows["cmd-plainwebm02"]["sequence_id"] == "tt0000001:film-a:2017:2"
    assert (advert["sequence_index"], rows["cmd-plainwebm02"]["sequence_index"]) == (0, 1)
    assert (advert["title"], advert["clip_name"], advert["imdbid"], advert["year"]) == (
        "Film A", "Opening", "tt0000001", 2001)
    info = probe(advert["video_path"])
    assert info.video_codec == "h264" and info.has_audio
    assert info.num_frames == 24  # exactly 2 s at 12 fps: the advert is gone, frame-accurately
    last = read_frames(advert["video_path"])[-1].astype(int)
    assert np.abs(last.mean(axis=(0, 1)) - RED).max() < 30
    sound = decode_audio(advert["video_path"], sample_rate=16000, channels=1)
    assert abs(sound.shape[-1] / 16000 - 2.0) < 0.1

    plain = rows["cmd-plainwebm02"]  # 1.5 s file vs 1 s listed: rounding, not an advert
    assert plain["advert_trimmed"] is False and probe(plain["video_path"]).num_frames == 18
    assert all(not r["origin"].startswith("/") and str(tmp_path) not in r["origin"] for r in rows.values())

    rejects = {r["clip_id"]: r for r in read_rejects(out)}
    assert set(rejects) == {"cmd-corrupt0003", "cmd-missing0004"}
    assert "corrupt0003.mp4" in rejects["cmd-corrupt0003"]["reason"]
    assert "no video file named missing0004" in rejects["cmd-missing0004"]["reason"]
    assert rejects["cmd-missing0004"]["origin"] == "https://www.youtube.com/watch?v=missing0004"
    assert all(r["stage"] == "fetch-movies" for r in rejects.values())

    made = Path(advert["video_path"]).stat().st_mtime_ns
    summary = run_fetch_movies(meta, out, from_dir=videos, progress=False)
    assert (summary.done, summary.skipped) == (0, 4)
    assert len(read_manifest(out)) == 2 and len(read_rejects(out)) == 2
    assert Path(advert["video_path"]).stat().st_mtime_ns == made  # nothing redone


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - keep test output clean
        pass


@pytest.fixture
def media_server(tmp_path):
    """A loopback HTTP server serving tmp_path/served at http://127.0.0.1:PORT/."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=5)
    server.server_close()


def test_yt_dlp_downloads_from_url_template_and_records_youtube_origin(tmp_path, media_server):
    served, base = media_server
    clips = [("servedclip1", "2005.0", "1", "10", "2015", "Film C", "Chase", "tt0000003"),
             ("gone0000404", "2005.0", "2", "10", "2015", "Film C", "Geo-blocked", "tt0000003")]
    meta = write_metadata(tmp_path / "meta", clips, durations={"servedclip1": 1})
    make_video(served / "servedclip1.mp4", frames=12, fps=12)
    out = tmp_path / "out"

    summary = run_fetch_movies(meta, out, url_template=base + "/{videoid}.mp4", progress=False)

    assert (summary.done, summary.rejected) == (2, 1)
    (row,) = read_manifest(out)
    assert row["clip_id"] == "cmd-servedclip1" and row["origin"] == WATCH_URL.format(videoid="servedclip1")
    assert probe(row["video_path"]).num_frames == 12 and probe(row["video_path"]).has_audio
    assert not any((out / "downloads").glob("*"))  # yt-dlp's file is removed once converted
    (bad,) = read_rejects(out)
    assert bad["clip_id"] == "cmd-gone0000404" and "404" in bad["reason"] and "download failed" in bad["reason"]

    summary = run_fetch_movies(meta, out, url_template=base + "/{videoid}.mp4", progress=False)
    assert summary.done == 0 and len(read_manifest(out)) == 1 and len(read_rejects(out)) == 1


def test_missing_yt_dlp_is_a_clear_error(tmp_path, monkeypatch):
    meta = write_metadata(tmp_path / "meta")
    monkeypatch.setitem(sys.modules, "yt_dlp", None)
    with pytest.raises(ImportError, match=r"yt-dlp.*emovid-datasets\[building\].*--from-dir"):
        run_fetch_movies(meta, tmp_path / "out", progress=False)
    assert run_command(["fetch-movies", "--metadata", str(meta), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_format_preference_is_cmds_360p_choice():
    yt_dlp = pytest.importorskip("yt_dlp")
    formats = [
        {"format_id": "18", "ext": "mp4", "height": 360, "vcodec": "avc1", "acodec": "mp4a", "url": "u"},
        {"format_id": "134", "ext": "mp4", "height": 360, "vcodec": "avc1", "acodec": "none", "url": "u"},
        {"format_id": "136", "ext": "mp4", "height": 720, "vcodec": "avc1", "acodec": "none", "url": "u"},
        {"format_id": "140", "ext": "m4a", "vcodec": "none", "acodec": "mp4a", "url": "u"},
        {"format_id": "243", "ext": "webm", "height": 360, "vcodec": "vp9", "acodec": "none", "url": "u"},
    ]
    context = {"formats": formats, "has_merged_format": False, "incomplete_formats": False}
    with yt_dlp.YoutubeDL({"quiet": True}) as ydl:
        merged = [f["format_id"] for f in ydl.build_format_selector(fetch_movies.FORMAT_MERGED)(context)]
        single = [f["format_id"] for f in ydl.build_format_selector(fetch_movies.FORMAT_SINGLE)(context)]
    assert merged == ["134+140"]  # 360p mp4 video + best audio, merged (needs ffmpeg)
    assert single == ["18"]  # without ffmpeg: the 360p file that has both streams


def test_a_hostile_video_id_becomes_a_safe_clip_id():
    from builder_scripts.sources.fetch_movies import movie_inputs

    ids = [item["clip_id"] for item in movie_inputs([{"videoid": v} for v in ("dQw4w9WgXcQ", "../../etc/x", "$(rm -rf ~)")])]
    assert ids[0] == "cmd-dQw4w9WgXcQ"  # a real YouTube id is kept as it is
    assert len(set(ids)) == 3 and all("/" not in i and ".." not in i and "$" not in i and " " not in i for i in ids)
