"""The Tenor client and the `crawl-stickers` stage against a loopback Tenor-style service."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from tenor_server import TenorServer

from builder_scripts import cli
from builder_scripts.engine.manifest import read_manifest, read_rejects
from builder_scripts.sources.crawl_stickers import SEARCH_STAGE, STAGE, STATE_FILE, crawl_stickers
from builder_scripts.sources.tenor import (
    Backoff,
    DownloadError,
    RateLimiter,
    TenorClient,
    TenorRequestError,
    TenorUnavailable,
    download_media,
    parse_retry_after,
)
from emovid_datasets.media import probe
from emovid_datasets.taxonomy import EMOTIONS, STICKER_QUERIES

KEY = "sk-TEST-0123456789abcdef"
QUERIES = {"amusement": ("funny", "lol"), "sadness": ("sad",)}
CATALOGUE = {"funny": ["101", "102", "103", "104", "105"], "lol": ["103", "106", "107"], "sad": ["103", "201", "202"]}


class Sleeps:
    """A sleep function that records what it was asked to wait and waits nothing."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def client_for(server: TenorServer, *, rps: float = 1000.0, sleep=time.sleep, retries: int = 3,
               key: str = KEY, **kwargs) -> TenorClient:
    return TenorClient(key, endpoint=server.endpoint, rps=rps, timeout=5,
                       backoff=Backoff(max_retries=retries, base=0.01, sleep=sleep), **kwargs)


def crawl(out: Path, client: TenorClient, **kwargs):
    kwargs.setdefault("queries", QUERIES)
    kwargs.setdefault("limit", 2)
    return crawl_stickers(out, client, download_backoff=Backoff(max_retries=1, base=0.01), progress=False, **kwargs)


def test_search_pages_by_cursor_until_next_is_empty():
    with TenorServer({"funny": [str(i) for i in range(7)]}, key=KEY) as server:
        client = client_for(server, client_key="emovid-test", searchfilter="sticker,-static", locale="fr_FR",
                            contentfilter="high", media_filter="gif,tinygif")
        pages, cursors = [], [""]
        for _ in range(10):
            page = client.search("funny", cursors[-1], limit=3)
            pages.append([r["id"] for r in page.results])
            if not page.next:
                break
            cursors.append(page.next)
        params = [entry["params"] for entry in server.search_log]
    assert pages == [["0", "1", "2"], ["3", "4", "5"], ["6"]] and len(set(cursors)) == 3
    assert [p.get("pos", "") for p in params] == cursors  # each pos is the previous answer's next
    assert params[0] == {"q": "funny", "key": KEY, "client_key": "emovid-test", "limit": "3",
                         "searchfilter": "sticker,-static", "media_filter": "gif,tinygif",
                         "contentfilter": "high", "locale": "fr_FR"}
    with pytest.raises(ValueError, match="limit"):
        client.search("funny", limit=51)


def test_crawl_dedups_across_queries_and_keeps_metadata(tmp_path):
    with TenorServer(CATALOGUE, key=KEY) as server:
        summary = crawl(tmp_path, client_for(server))
        expected = {server.result(i)["id"]: server.result(i) for i in {i for ids in CATALOGUE.values() for i in ids}}
        downloads = list(server.media_log)
    rows = {row["clip_id"]: row for row in read_manifest(tmp_path)}
    assert sorted(rows) == sorted(f"sticker-{i}" for i in expected)
    assert len(downloads) == len(expected)  # each sticker fetched once although 103 is under three queries
    assert summary.kept == {"amusement": 7, "sadness": 2} and summary.results == 9
    # Pages go round robin (funny 1, lol 1, funny 2, ...): lol's first page claims 103 before funny's second
    # page and the sad query repeat it; amusement is searched before sadness.
    assert (rows["sticker-103"]["query"], rows["sticker-103"]["emotion"]) == ("lol", "amusement")
    assert (rows["sticker-104"]["query"], rows["sticker-201"]["emotion"]) == ("funny", "sadness")
    row, result = rows["sticker-201"], expected["201"]
    assert row["source"] == "sticker" and row["tenor_id"] == "201" and row["has_audio"] is False
    assert row["title"] == result["title"] and row["description"] == result["content_description"]
    assert row["tags"] == result["tags"] and row["flags"] == ["sticker"]
    assert row["origin"] == result["itemurl"] and row["url"] == result["url"]
    assert row["media_format"] == "gif"
    info = probe(row["video_path"])
    assert (info.video_codec, info.num_frames, info.has_audio) == ("h264", 6, False)
    assert (row["num_frames"], row["width"], row["height"]) == (6, 32, 24)
    state = json.loads((tmp_path / STATE_FILE).read_text())
    assert {q: s["status"] for q, s in state["queries"].items()} == {"funny": "done", "lol": "done", "sad": "done"}
    assert state["queries"]["funny"]["pages"] == 3


def test_mp4_rendition_and_per_emotion_cap(tmp_path):
    with TenorServer(CATALOGUE, key=KEY) as server:
        client = client_for(server, media_filter="mp4,tinymp4")
        summary = crawl(tmp_path, client, per_emotion=2, media_format="mp4")
        downloads = list(server.media_log)
    rows = read_manifest(tmp_path)
    assert summary.kept == {"amusement": 2, "sadness": 2}
    assert len(rows) == 4 and len(downloads) == 4 and all(p.endswith("/mp4.mp4") for p in downloads)
    assert {r["media_format"] for r in rows} == {"mp4"}
    # Round robin over the emotion's queries: one page of "funny" already fills the quota of 2.
    assert sorted(r["clip_id"] for r in rows if r["emotion"] == "amusement") == ["sticker-101", "sticker-102"]


def test_rejected_downloads_are_replaced_to_fill_the_quota(tmp_path):
    with TenorServer(CATALOGUE, key=KEY, truncated=["101"], undecodable=["102"]) as server:
        summary = crawl(tmp_path, client_for(server), per_emotion=3, queries={"amusement": ("funny", "lol")})
    assert summary.kept == {"amusement": 3} and summary.rejected == 2
    assert sorted(r["clip_id"] for r in read_manifest(tmp_path)) == ["sticker-103", "sticker-104", "sticker-106"]


def test_truncated_undecodable_and_static_downloads_are_rejected_with_reasons(tmp_path):
    with TenorServer(CATALOGUE, key=KEY, truncated=["104"], undecodable=["106"], static=["202"]) as server:
        crawl(tmp_path, client_for(server))
        origins = {i: server.result(i)["itemurl"] for i in ("104", "106", "202")}
    rejects = {r["clip_id"]: r for r in read_rejects(tmp_path)}
    assert sorted(rejects) == ["sticker-104", "sticker-106", "sticker-202"]
    assert "truncated download" in rejects["sticker-104"]["reason"]
    assert "undecodable gif download" in rejects["sticker-106"]["reason"]
    assert "is static (a single frame)" in rejects["sticker-202"]["reason"]
    assert all(r["origin"] == origins[c.split("-")[1]] and r["stage"] == STAGE for c, r in rejects.items())
    kept = {r["clip_id"] for r in read_manifest(tmp_path)}
    assert kept == {"sticker-101", "sticker-102", "sticker-103", "sticker-105", "sticker-107", "sticker-201"}
    assert sorted(p.name for p in (tmp_path / "clips").glob("*.mp4")) == sorted(f"{c}.mp4" for c in kept)


def test_a_file_shorter_than_its_announced_size_is_truncated():
    with TenorServer({"funny": ["1"]}, key=KEY) as server:
        media = server.result("1")["media_formats"]["gif"]
        assert len(download_media(media["url"], expected_size=media["size"])) == media["size"]
        with pytest.raises(DownloadError, match=r"truncated download, \d+ of \d+ bytes \(size in the search"):
            download_media(media["url"], expected_size=media["size"] + 10)
        with pytest.raises(DownloadError, match="HTTP 404"):
            download_media(server.base + "/m/1/none.webp")


def test_429_retry_after_is_honoured():
    sleeps = Sleeps()
    with TenorServer({"funny": ["1"]}, key=KEY) as server:
        server.fail_next(429, count=2, retry_after="7")
        page = client_for(server, sleep=sleeps).search("funny")
        assert [r["id"] for r in page.results] == ["1"] and len(server.search_log) == 3
        assert sleeps.calls == [7.0, 7.0]
        # A real wait: one 429 with Retry-After: 1 delays the next request by at least a second.
        server.fail_next(429, count=1, retry_after="1")
        started = time.monotonic()
        client_for(server).search("funny")
        first, second = server.search_times()[-2:]
    assert time.monotonic() - started >= 1.0 and second - first >= 0.95
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0 and parse_retry_after("soon") is None


def test_5xx_is_retried_with_growing_delays_then_given_up():
    sleeps = Sleeps()
    with TenorServer({"funny": ["1"]}, key=KEY) as server:
        server.fail_next(503, count=2)
        client = client_for(server, sleep=sleeps, retries=3)
        assert [r["id"] for r in client.search("funny").results] == ["1"]
        assert len(sleeps.calls) == 2 and 0 < sleeps.calls[0] < sleeps.calls[1]
        server.fail_next(500, count=4)
        with pytest.raises(TenorUnavailable, match=r"after 4 attempts: HTTP 500"):
            client.search("funny")
        assert len(server.search_log) == 3 + 4


def test_a_query_page_that_keeps_failing_is_rejected_and_the_crawl_goes_on(tmp_path):
    with TenorServer(CATALOGUE, key=KEY) as server:
        client = client_for(server, sleep=Sleeps(), retries=2)
        server.fail_next(502, count=3)  # the first page of "funny" exhausts its retries
        summary = crawl(tmp_path, client)
        assert summary.failed_queries == ["funny"] and summary.kept == {"amusement": 3, "sadness": 2}
        [bad] = [r for r in read_rejects(tmp_path) if r["stage"] == SEARCH_STAGE]
        assert "HTTP 502" in bad["reason"] and "q=funny" in bad["origin"] and "key=REDACTED" in bad["origin"]
        # --retry-rejects reopens the failed query; the service answers now.
        summary = crawl(tmp_path, client, retry_rejects=True)
    assert summary.failed_queries == [] and summary.kept == {"amusement": 7, "sadness": 2}
    assert [r for r in read_rejects(tmp_path) if r["stage"] == SEARCH_STAGE] == []


def test_searching_stops_when_the_service_is_down_and_a_rerun_resumes(tmp_path):
    queries = {"amusement": ("funny", "lol"), "awe": ("wow",), "sadness": ("sad",)}
    with TenorServer(CATALOGUE, key=KEY) as server:
        client = client_for(server, retries=0)
        server.fail_next(503, count=100)
        summary = crawl(tmp_path, client, queries=queries)
        assert summary.halted and summary.failed_queries == ["funny", "lol", "wow"]
        assert len(server.search_log) == 3 and len(read_rejects(tmp_path)) == 3
        state = json.loads((tmp_path / STATE_FILE).read_text())
        assert state["queries"]["sad"]["status"] == "open"
        server.clear_failures()  # the service is back
        summary = crawl(tmp_path, client, queries=queries, retry_rejects=True)
    assert summary.halted is None and summary.kept == {"amusement": 7, "awe": 0, "sadness": 2}
    assert read_rejects(tmp_path) == []


def test_only_pages_failing_one_after_another_stop_searching(tmp_path):
    queries = {"amusement": ("funny", "lol"), "awe": ("wow",), "sadness": ("sad", "cry")}
    with TenorServer(CATALOGUE, key=KEY) as server:
        client = client_for(server, retries=0)
        search, asked = client.search, []

        def search_with_outages(query, *args, **kwargs):  # the service fails every other request, 3 in all
            asked.append(query)
            if len(asked) in (1, 3, 5):
                server.fail_next(503)
            return search(query, *args, **kwargs)

        client.search = search_with_outages
        summary = crawl(tmp_path, client, queries=queries)
    # funny p1 fails, lol p1 answers, lol p2 fails, wow answers (no results), sad p1 fails, cry answers
    assert asked == ["funny", "lol", "lol", "wow", "sad", "cry"]
    assert summary.halted is None and summary.failed_queries == ["funny", "lol", "sad"]
    assert len([r for r in read_rejects(tmp_path) if r["stage"] == SEARCH_STAGE]) == 3


def test_rate_limiter_spacing_with_an_injected_clock():
    now = [100.0]
    sleeps = Sleeps()

    def sleep(seconds: float) -> None:
        sleeps(seconds)
        now[0] += seconds

    limiter = RateLimiter(2.0, clock=lambda: now[0], sleep=sleep)
    stamps = []
    for _ in range(4):
        limiter.wait()
        stamps.append(now[0])
    assert stamps == [100.0, 100.5, 101.0, 101.5]
    now[0] += 3.0  # idle time is not banked into a burst
    limiter.wait()
    limiter.wait()
    assert now[0] == 105.0 and sleeps.calls == [0.5, 0.5, 0.5, 0.5]


class TimedSession(requests.Session):
    """A requests session that notes when each request leaves."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[float] = []

    def get(self, *args, **kwargs):
        self.sent.append(time.monotonic())
        return super().get(*args, **kwargs)


def test_requests_per_second_is_respected_on_the_wire():
    session = TimedSession()
    with TenorServer({"funny": [str(i) for i in range(6)]}, key=KEY) as server:
        client = client_for(server, rps=10.0, session=session)
        pos = ""
        for _ in range(6):
            pos = client.search("funny", pos, limit=1).next
        arrived = server.search_times()
    # The limiter spaces its grants exactly; the tolerance only absorbs this busy machine's scheduling.
    gaps = [b - a for a, b in zip(session.sent, session.sent[1:])]
    assert len(gaps) == 5 and min(gaps) >= 0.07 and session.sent[-1] - session.sent[0] >= 0.45
    assert len(arrived) == 6 and arrived[-1] - arrived[0] >= 0.4  # the server saw them spread out too


def test_key_never_reaches_logs_manifests_rejects_or_errors(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3.connectionpool")  # other tests may have quietened it
    with TenorServer(CATALOGUE, key=KEY, truncated=["106"], undecodable=["201"]) as server:
        server.fail_next(503, count=3)  # the first page of "funny" is rejected: its URL carries the key
        crawl(tmp_path, client_for(server, retries=2))
        wrong = TenorClient(KEY, endpoint=server.base + "/nope", rps=1000, backoff=Backoff(max_retries=0))
        with pytest.raises(TenorRequestError) as error:
            wrong.search("funny")
        with pytest.raises(TenorRequestError, match="API key not valid") as refused:
            client_for(server, key="not-the-key").search("funny")
    assert "Not found" in str(error.value) and "REDACTED" in str(error.value)
    assert "key=REDACTED" in caplog.text and "GET /v2/search" in caplog.text  # urllib3's request lines
    written = [json.dumps(read_manifest(tmp_path)), json.dumps(read_rejects(tmp_path)),
               (tmp_path / STATE_FILE).read_text()]
    assert len(read_rejects(tmp_path)) == 3
    for text in written + [caplog.text, str(error.value), str(refused.value)]:
        assert KEY not in text


def test_cli_requires_the_key_from_the_environment(tmp_path, monkeypatch, caplog):
    assert "builder_scripts.sources.crawl_stickers" in cli.COMMAND_MODULES
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("builder_scripts.sources.crawl_stickers",))
    monkeypatch.delenv("TENOR_API_KEY", raising=False)
    assert cli.main(["crawl-stickers", "--out", str(tmp_path), "--endpoint", "http://127.0.0.1:9/v2"]) == 2
    assert "TENOR_API_KEY is not set" in caplog.text
    with TenorServer(CATALOGUE, key=KEY) as server:
        monkeypatch.setenv("TENOR_API_KEY", "wrong-key")
        assert cli.main(["crawl-stickers", "--out", str(tmp_path), "--endpoint", server.endpoint]) == 2
    assert "API key not valid" in caplog.text and "wrong-key" not in caplog.text


def _wait_for(predicate, process: subprocess.Popen, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        assert process.poll() is None, "the crawl ended before it could be killed"
        assert time.monotonic() < deadline, "the crawl made no progress"
        time.sleep(0.02)


def test_kill_and_resume_finishes_with_no_duplicate_and_no_loss(tmp_path):
    """SIGKILL the CLI once while searching and once while downloading; the third run completes the job."""
    ids = [f"{e}{k:02d}" for e in range(len(EMOTIONS)) for k in range(5)]
    queries = [q for e in EMOTIONS for q in STICKER_QUERIES[e][:2]]
    # Two queries per emotion, overlapping so dedup matters: 5 stickers per emotion, 2 shared.
    catalogue = {q: ids[(i // 2) * 5:(i // 2) * 5 + 5][(i % 2) * 2:(i % 2) * 2 + 3] for i, q in enumerate(queries)}
    out = tmp_path / "out"
    code = ("import sys, builder_scripts.cli as c; c.COMMAND_MODULES = ('builder_scripts.sources.crawl_stickers',); "
            "sys.exit(c.main(sys.argv[1:]))")
    with TenorServer(catalogue, key=KEY, media_delay=0.05) as server:
        argv = [sys.executable, "-c", code, "-v", "crawl-stickers", "--out", str(out), "--endpoint",
                server.endpoint, "--limit", "2", "--rps", "60"]
        env = {**os.environ, "TENOR_API_KEY": KEY}

        def run(until=None) -> str:
            process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if until is None:
                output, _ = process.communicate(timeout=60)
                assert process.returncode == 0, output.decode()
                return output.decode()
            try:
                _wait_for(until, process)
            finally:
                process.send_signal(signal.SIGKILL)
            return process.communicate()[0].decode()

        def pages_saved() -> int:
            try:
                state = json.loads((out / STATE_FILE).read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                return 0
            return sum(s["pages"] for s in state["queries"].values())

        outputs = [run(until=lambda: pages_saved() >= 10)]
        searched_before = len(server.search_log)
        assert not (out / "manifest.parquet").exists() and pages_saved() < 48 + 16  # 16 queries have 2 pages
        outputs.append(run(until=lambda: len(read_manifest(out)) > 0))
        partial = len(read_manifest(out))
        outputs.append(run())
        pages_total = pages_saved()
        searches = len(server.search_log)
    rows = read_manifest(out)
    assert 0 < partial < len(ids)
    assert [r["clip_id"] for r in rows] == sorted(f"sticker-{i}" for i in ids)  # each exactly once
    assert all(Path(r["video_path"]).is_file() for r in rows) and read_rejects(out) == []
    assert {r["emotion"] for r in rows} == set(EMOTIONS)
    # Resuming reuses the saved cursors: at most the page in flight at each kill is asked again.
    assert searched_before >= 10 and searches <= pages_total + 2
    assert "GET /v2/search?key=REDACTED" in outputs[1]  # urllib3's debug lines, scrubbed
    assert all(KEY not in output for output in outputs)


def test_crawl_from_env_takes_a_config_section_of_client_and_crawl_settings(tmp_path, monkeypatch):
    """What `emovid-build run` passes from its YAML `crawl:` section; max_retries reaches the search API too."""
    from builder_scripts.sources.crawl_stickers import crawl_from_env

    monkeypatch.setenv("TENOR_API_KEY", KEY)
    with TenorServer(CATALOGUE, key=KEY) as server:
        server.fail_next(503)  # the first search answer fails once: one retry gets past it
        section = {"endpoint": server.endpoint, "rps": 1000, "max_retries": 1, "timeout": 5, "per_emotion": 2,
                   "limit": 2, "queries": {"amusement": ("funny",)}}
        summary = crawl_from_env(tmp_path, progress=False, **section)
    assert summary.kept == {"amusement": 2} and not summary.halted and not read_rejects(tmp_path)
    assert len(read_manifest(tmp_path)) == 2


def test_a_damaged_crawl_state_is_named(tmp_path):
    (tmp_path / STATE_FILE).write_text('{"settings": {"endpoint": ')
    with TenorServer(CATALOGUE, key=KEY) as server:
        with pytest.raises(ValueError, match=STATE_FILE + " line 1: not valid JSON"):
            crawl(tmp_path, client_for(server))


def test_a_hostile_result_id_never_becomes_a_path_outside_out(tmp_path):
    evil = "../../../../" + str(tmp_path / "escaped").lstrip("/")
    shell = "x$(touch pwned) y"
    out = tmp_path / "out"
    with TenorServer({"funny": [evil, shell, ".._x", "..x"]}, key=KEY) as server:
        crawl(out, client_for(server), queries={"amusement": ("funny",)}, limit=5)
    rows, rejects = read_manifest(out), read_rejects(out)
    ids = [r["clip_id"] for r in rows] + [r["clip_id"] for r in rejects]
    assert len(ids) == len(set(ids)) == 4  # distinct ids stay distinct
    assert all("/" not in i and ".." not in i and "$" not in i and " " not in i for i in ids)
    assert {r["tenor_id"] for r in rows} == {".._x", "..x"}  # the real id is kept as data
    for row in rows:
        assert Path(row["video_path"]).resolve().parent == (out / "clips").resolve()
    assert not list(tmp_path.glob("escaped*")) and not (Path.cwd() / "pwned").exists()


def test_a_refused_connection_fails_at_once_without_retrying():
    from ports import refused_port

    sleeps = Sleeps()
    with refused_port() as port:
        client = TenorClient(KEY, endpoint=f"http://127.0.0.1:{port}", rps=1000.0, timeout=5,
                             backoff=Backoff(max_retries=5, base=1.0, sleep=sleeps))
        with pytest.raises(TenorUnavailable, match="connection refused") as failure:
            client.search("funny")
    assert sleeps.calls == [] and KEY not in str(failure.value)


def test_stickers_come_out_as_shown_and_a_cut_off_one_is_recorded(tmp_path):
    """An anamorphic and a rotated MP4 rendition are stored in square pixels, upright, and the row gives the size
    shown; a cut-off one keeps what decodes and says so."""
    from fractions import Fraction

    from factory import cut_off, make_pyav_video, noise_frames

    made = tmp_path / "made"
    made.mkdir()
    whole = make_pyav_video(made / "whole.mp4", frames=40, fps=10, faststart=True, color=noise_frames())
    renditions = {
        "301": make_pyav_video(made / "dvd.mp4", size=(352, 288), frames=6, fps=10, sar=Fraction(16, 11)),
        "302": make_pyav_video(made / "phone.mp4", size=(32, 24), frames=6, fps=10, rotation=-90),
        "303": cut_off(made / "part.mp4", whole, 0.5),
    }
    with TenorServer({"funny": list(renditions)}, key=KEY) as server:
        for sticker_id, path in renditions.items():
            server.media[(sticker_id, "mp4")] = path.read_bytes()
        crawl(tmp_path / "out", client_for(server, media_filter="mp4,tinymp4"), media_format="mp4")
    rows = {r["tenor_id"]: r for r in read_manifest(tmp_path / "out")}
    assert {i: (r["width"], r["height"]) for i, r in rows.items() if i != "303"} == {"301": (512, 288), "302": (24, 32)}
    assert all((probe(r["video_path"]).width, probe(r["video_path"]).height) == (r["width"], r["height"])
               for r in rows.values())
    part = rows["303"]
    assert part["truncated"] is True and part["header_duration"] == pytest.approx(4.0)
    assert 0.5 < part["duration"] < 3.5 and part["decoded_duration"] == pytest.approx(part["duration"], abs=0.01)
    assert rows["301"]["truncated"] is False
