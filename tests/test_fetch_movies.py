"""fetch-movies: CMD metadata quirks, story order, --from-dir ingest with advert trim, yt-dlp over loopback
(its options, a proxy and cookies, failure classes and which rejects a retry tries again)."""

from __future__ import annotations

import argparse
import base64
import csv
import logging
import sys
from pathlib import Path
from urllib.parse import urlsplit

import av
import numpy as np
import pytest
from factory import make_video
from ports import free_port

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


def test_yt_dlp_downloads_from_url_template_and_records_youtube_origin(tmp_path, media_server):
    served, base, _ = media_server
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


def secrets_absent(secrets: list[str], out: Path, *texts: str) -> None:
    """None of ``secrets`` in ``texts``, in the stage's manifest and rejects rows, or in any other file under ``out``."""
    stored = [str(read_manifest(out)), str(read_rejects(out))]
    stored += [p.read_bytes().decode("latin-1") for p in out.rglob("*") if p.is_file() and p.suffix != ".parquet"]
    for secret in secrets:
        for where, text in [("output", t) for t in texts] + [("stage folder", t) for t in stored]:
            assert secret not in text, f"{secret!r} leaked into the {where}"


def test_cookies_proxy_sleep_and_rate_limit_reach_yt_dlp_and_never_logs_or_files(tmp_path, media_server, monkeypatch,
                                                                                  caplog, capsys):
    yt_dlp = pytest.importorskip("yt_dlp")
    from yt_dlp.extractor.generic import GenericIE
    from yt_dlp.utils import ExtractorError

    served, base, seen = media_server
    port = urlsplit(base).port
    password, session = "pa55-w0rd", "SESSION-7f3a9c"
    proxy = f"http://emovid:{password}@127.0.0.1:{port}"
    cookies = tmp_path / "private" / "youtube-cookies.txt"
    cookies.parent.mkdir()
    cookies.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tSID\t{session}\n")
    before = cookies.read_text()
    clips = [("viaproxy001", "2005.0", "1", "3", "2015", "Film D", "Proxied", "tt0000004"),
             ("quoteproxy2", "2005.0", "2", "3", "2015", "Film D", "Quoted", "tt0000004")]
    meta = write_metadata(tmp_path / "meta", clips, durations={})
    make_video(served / "viaproxy001.mp4", frames=12, fps=12)

    original = GenericIE._real_extract

    def extract(self, url):  # a library error that quotes the proxy it used, credentials and all
        if "quoteproxy2" in url:
            raise ExtractorError(f"Unable to connect to proxy {proxy}: tunnel failed", expected=True)
        return original(self, url)

    params = []

    class RecordingYoutubeDL(yt_dlp.YoutubeDL):
        def __init__(self, options=None, *args, **kwargs):
            params.append(dict(options or {}))
            super().__init__(options, *args, **kwargs)

    monkeypatch.setattr(GenericIE, "_real_extract", extract)
    monkeypatch.setattr(yt_dlp, "YoutubeDL", RecordingYoutubeDL)
    monkeypatch.setenv("EMOVID_YTDLP_PROXY", f"http://127.0.0.1:{free_port()}")  # the option wins over it
    monkeypatch.setenv("EMOVID_YTDLP_SLEEP_INTERVAL", "0.3")
    monkeypatch.setenv("EMOVID_YTDLP_RATE_LIMIT", "2M")
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out"
    # The host:port in the template refuses connections: only the proxy can serve the clip.
    template = f"http://127.0.0.1:{free_port()}/{{videoid}}.mp4"

    assert run_command(["fetch-movies", "--metadata", str(meta), "--out", str(out), "--url-template", template,
                        "--cookies", str(cookies), "--proxy", proxy]) == 0

    (row,) = read_manifest(out)
    assert row["clip_id"] == "cmd-viaproxy001" and probe(row["video_path"]).num_frames == 12
    (bad,) = read_rejects(out)
    assert bad["clip_id"] == "cmd-quoteproxy2" and "Unable to connect to proxy" in bad["reason"]
    assert seen and all(line.startswith("GET http://127.0.0.1:") for line, _, _ in seen)  # absolute URI: proxied
    assert {auth for _, _, auth in seen} == {"Basic " + base64.b64encode(f"emovid:{password}".encode()).decode()}
    assert {cookie for _, cookie, _ in seen} == {f"SID={session}"}
    assert cookies.read_text() == before  # read, never written back
    assert params and all(p["proxy"] == proxy for p in params)
    assert all(p["ratelimit"] == 2 * 1024 * 1024 and p["sleep_interval"] == 0.3 for p in params)
    assert "Sleeping 0.30 seconds" in caplog.text  # yt-dlp slept before the download
    secrets_absent([password, f"emovid:{password}", session, str(cookies), cookies.name], out,
                   caplog.text, "".join(capsys.readouterr()))


YOUTUBE_BOT_CHECK = ("Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser or --cookies for the "
                     "authentication. See  https://github.com/yt-dlp/yt-dlp/wiki/FAQ#how-do-i-pass-cookies-to-yt-dlp  "
                     "for how to manually pass cookies")


def test_failures_are_classified_and_retry_rejects_tries_again_only_the_transient_ones(tmp_path, media_server,
                                                                                      monkeypatch):
    pytest.importorskip("yt_dlp")
    from yt_dlp.extractor.generic import GenericIE
    from yt_dlp.utils import ExtractorError

    served, base, _ = media_server
    refused = f"http://127.0.0.1:{free_port()}/"

    def youtube_says(message):
        def fail(ie, video_id):
            raise ExtractorError(message, expected=True, video_id=video_id, ie="youtube")
        return fail

    failures = {  # video id -> what yt-dlp meets on YouTube (its own messages and exceptions)
        "uploaderdel": youtube_says("Video unavailable. This video has been removed by the uploader"),
        "terminated1": youtube_says("Video unavailable. This video is no longer available because the YouTube "
                                    "account associated with this video has been terminated."),
        "privateclip": youtube_says("Private video. Sign in if you've been granted access to this video"),
        "geoblocked1": lambda ie, video_id: ie.raise_geo_restricted(
            "The uploader has not made this video available in your country", countries=["US"],
            metadata_available=True),
        "botcheck001": youtube_says(YOUTUBE_BOT_CHECK),
        "ratelimited": youtube_says("This content isn't available, try again later. The current session has been "
                                    "rate-limited by YouTube for up to an hour."),
        "refusedconn": lambda ie, video_id: ie._download_webpage(refused + video_id, video_id),  # a real refusal
        "oddformat01": youtube_says("Requested format is not available"),
    }
    expected = {"uploaderdel": "removed", "terminated1": "removed", "gone0000404": "removed",
                "privateclip": "private", "geoblocked1": "geo-blocked", "botcheck001": "bot-check",
                "ratelimited": "bot-check", "refusedconn": "network", "oddformat01": "unknown"}
    original, attempted = GenericIE._real_extract, []

    def extract(self, url):
        video_id = url.rsplit("/", 1)[-1].split(".")[0]
        attempted.append(video_id)
        if video_id in failures:
            failures[video_id](self, video_id)
        return original(self, url)  # gone0000404 is not served: a real HTTP 404

    monkeypatch.setattr(GenericIE, "_real_extract", extract)
    ids = ["servedclip1", *expected]
    clips = [(v, "2005.0", str(i + 1), str(len(ids)), "2015", "Film E", f"Clip {i}", "tt0000005") for i, v in enumerate(ids)]
    meta = write_metadata(tmp_path / "meta", clips, durations={})
    make_video(served / "servedclip1.mp4", frames=12, fps=12)
    out = tmp_path / "out"
    template = base + "/{videoid}.mp4"

    summary = run_fetch_movies(meta, out, url_template=template, progress=False)
    assert (summary.done, summary.rejected) == (len(ids), len(expected))
    reasons = {r["clip_id"].removeprefix("cmd-"): r["reason"] for r in read_rejects(out)}
    assert {v: reason.split("]")[0].lstrip("[") for v, reason in reasons.items()} == expected
    assert "404" in reasons["gone0000404"] and "not a bot" in reasons["botcheck001"]

    # Later, from elsewhere: every clip could be fetched now, but only the transient failures are tried again.
    failures.clear()
    for video_id in expected:
        make_video(served / f"{video_id}.mp4", frames=12, fps=12)
    attempted.clear()
    assert run_command(["fetch-movies", "--metadata", str(meta), "--out", str(out), "--url-template", template]) == 0
    assert attempted == []  # without --retry-rejects nothing is tried again
    assert run_command(["fetch-movies", "--metadata", str(meta), "--out", str(out), "--url-template", template,
                        "--retry-rejects"]) == 0
    transient = {"botcheck001", "ratelimited", "refusedconn", "oddformat01"}
    assert sorted(attempted) == sorted(transient)
    assert {r["clip_id"].removeprefix("cmd-") for r in read_manifest(out)} == {"servedclip1"} | transient
    assert {r["clip_id"].removeprefix("cmd-") for r in read_rejects(out)} == set(expected) - transient


def test_bad_download_settings_fail_once_naming_the_setting_and_not_the_secret(tmp_path, monkeypatch, caplog, capsys):
    pytest.importorskip("yt_dlp")
    meta = write_metadata(tmp_path / "meta")
    out = tmp_path / "out"
    argv = ["fetch-movies", "--metadata", str(meta), "--out", str(out)]
    bad_cookies = tmp_path / "cookies.txt"
    bad_cookies.write_text("# Netscape HTTP Cookie File\n.youtube.com\tTRUE\t/\tSID=SESSION-7f3a9c\n")
    json_cookies = tmp_path / "cookies.json"
    json_cookies.write_text('[{"name": "SID", "value": "SESSION-7f3a9c"}]')
    cases = [
        ({"EMOVID_YTDLP_SLEEP_INTERVAL": "soon"}, [], "EMOVID_YTDLP_SLEEP_INTERVAL"),
        ({}, ["--sleep-interval", "-1"], "--sleep-interval"),
        ({"EMOVID_YTDLP_RATE_LIMIT": "fast"}, [], "--rate-limit"),
        ({}, ["--cookies", str(bad_cookies)], "line 2"),
        ({"EMOVID_YTDLP_COOKIES": str(json_cookies)}, [], "Netscape"),
        ({}, ["--cookies", str(tmp_path / "absent.txt")], "cannot be read"),
    ]
    for env, extra, named in cases:
        caplog.clear()
        with monkeypatch.context() as m:
            for name, value in env.items():
                m.setenv(name, value)
            assert run_command(argv + extra) == 2, (env, extra)
        assert named in caplog.text, (env, extra, caplog.text)
    assert not (out / "manifest.parquet").exists() and not (out / "rejects.parquet").exists()
    assert "SESSION-7f3a9c" not in caplog.text + "".join(capsys.readouterr())


def test_a_cut_off_download_keeps_what_decodes_and_says_so(tmp_path):
    from factory import cut_off, make_pyav_video, noise_frames

    clips = [("whole000001", "2001.0", "1", "2", "2017", "Film A", "Opening", "tt0000001"),
             ("partial0002", "2001.0", "2", "2", "2017", "Film A", "Ending", "tt0000001")]
    meta = write_metadata(tmp_path / "meta", clips)
    videos = tmp_path / "videos"
    videos.mkdir()
    whole = make_pyav_video(videos / "whole000001.mp4", frames=200, fps=10, faststart=True, audio_rate=16000,
                            color=noise_frames())
    cut_off(videos / "partial0002.mp4", whole, 0.4)  # an interrupted yt-dlp download looks like this
    out = tmp_path / "out"
    assert run_command(["fetch-movies", "--metadata", str(meta), "--out", str(out), "--from-dir", str(videos)]) == 0
    rows = {r["clip_id"]: r for r in read_manifest(out)}
    assert rows["cmd-whole000001"]["truncated"] is False
    part = rows["cmd-partial0002"]
    assert part["truncated"] is True and part["header_duration"] == pytest.approx(20)
    decoded = probe(part["video_path"]).duration
    assert part["decoded_duration"] == pytest.approx(decoded, abs=0.01) and decoded < 12  # not padded to 20 s
