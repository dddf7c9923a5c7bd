"""Rehydrate's pieces: how an origin names its source, and a sticker fetched again by id from a Tenor-style API."""

import pytest
from factory import make_video
from tenor_server import TenorServer

from builder_scripts.publish.rehydrate import SourceAccess, origin_key, rehydrate_clip
from emovid_datasets.media import MediaError, decode_audio, probe


@pytest.mark.parametrize("origin, key", [
    ("https://www.youtube.com/watch?v=dQw4w9WgXcQ", "dQw4w9WgXcQ"),
    ("https://tenor.com/view/happy-cat-sticker-12345", "12345"),
    ("tenor:67890", "67890"),
    ("demo:film/film-00", "film-00"),
    ("animation:studio/part one/scene-3.mkv", "scene-3"),
])
def test_origin_key(origin, key):
    assert origin_key(origin) == key


def _sticker_row(server, sticker_id, **overrides):
    result = server.result(sticker_id)
    return {"clip_id": f"sticker-{sticker_id}", "source": "sticker", "origin": result["itemurl"], "start_time": 0.0,
            "end_time": 0.6, "duration": 0.6, "num_frames": 6, "fps": 10.0, "width": 32, "height": 24,
            "has_audio": False, "emotion": "amusement", **overrides}


def test_a_sticker_is_fetched_again_by_id_and_checked_against_its_row(tmp_path, monkeypatch):
    monkeypatch.setenv("TENOR_API_KEY", "test-key")
    with TenorServer({"funny": ["4242", "4343"]}, key="test-key") as server:
        access = SourceAccess(tenor_endpoint=server.endpoint)
        row = rehydrate_clip(_sticker_row(server, "4242"), work=str(tmp_path), access=access)
        assert row["clip_id"] == "sticker-4242" and row["emotion"] == "amusement" and "num_frames" not in row
        info = probe(row["video_path"])
        assert info.num_frames == 6 and (info.width, info.height) == (32, 24)
        assert [p for p in server.media_log if "/4242/" in p] == ["/m/4242/mp4.mp4"]
        rehydrate_clip(_sticker_row(server, "4242"), work=str(tmp_path), access=access)
        assert len(server.media_log) == 1  # downloaded once, then taken from the work folder
        with pytest.raises(MediaError, match=r"sticker-4343: the cut .* has 6 frames.*the release has 30 frames"):
            rehydrate_clip(_sticker_row(server, "4343", num_frames=30, duration=3.0), work=str(tmp_path),
                           access=access)


def test_a_film_clip_is_downloaded_by_its_video_id_and_cut_frame_accurately(tmp_path, media_server):
    served, base, seen = media_server
    make_video(served / "film0000001.mp4", frames=48, fps=12, size=(64, 48))  # 4 s, a tone all along
    row = {"clip_id": "movie-film0000001-shot001", "source": "movie",
           "origin": "https://www.youtube.com/watch?v=film0000001", "start_time": 1.0, "end_time": 2.5,
           "duration": 1.5, "num_frames": 18, "fps": 12.0, "width": 64, "height": 48, "has_audio": True}
    access = SourceAccess(download_url=base + "/{videoid}.mp4")  # a mirror; yt-dlp does the download
    clip = rehydrate_clip(dict(row), work=str(tmp_path), access=access)
    requests = len(seen)
    assert requests and all("film0000001" in line for line, _, _ in seen)
    assert rehydrate_clip(dict(row, clip_id="movie-film0000001-again"), work=str(tmp_path), access=access)
    assert len(seen) == requests  # the film is downloaded once, then cut again from the work folder
    info = probe(clip["video_path"])
    assert info.num_frames == 18 and info.has_audio and info.duration == pytest.approx(1.5, abs=1 / 12)
    sound = decode_audio(clip["video_path"], sample_rate=16000)
    assert abs(sound.shape[-1] / 16000 - 1.5) < 0.05
