"""Rehydrate's pieces: how an origin names its source, and a sticker fetched again by id from a Tenor-style API."""

import pytest
from tenor_server import TenorServer

from builder_scripts.publish.rehydrate import SourceAccess, origin_key, rehydrate_clip
from emovid_datasets.media import MediaError, probe


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
