"""Stage `crawl-stickers`: search a Tenor API v2 service for emotion stickers, download them, convert to MP4.

`emovid-build crawl-stickers --out DIR --endpoint URL [--per-emotion N]` pages `/search` for each
emotion's queries (`taxonomy.STICKER_QUERIES`), deduplicates results by id across queries (the
first query to find a sticker gives its candidate emotion, to be verified by people), and
downloads each sticker with the resumable stage runner. `DIR/crawl_state.json` (written
atomically after every page) holds each query's cursor and every result seen, so a killed crawl
resumes where it stopped; `DIR/manifest.parquet` and `DIR/rejects.parquet` follow the manifest
contract. The API key comes from `TENOR_API_KEY` only and is never written anywhere.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from tqdm.auto import tqdm

from builder_scripts.engine.executors import add_engine_arguments, with_engine
from builder_scripts.engine.manifest import read_manifest, read_rejects, reject, write_rejects
from builder_scripts.engine.runner import run_stage
from builder_scripts.engine.stage import FunctionStage
from builder_scripts.sources.tenor import (
    DEFAULT_ENDPOINT,
    MAX_LIMIT,
    MEDIA_PREFERENCES,
    Backoff,
    DownloadError,
    TenorClient,
    TenorUnavailable,
    as_list,
    download_media,
    pick_media,
)
from emovid_datasets.atomic import atomic_write_text
from emovid_datasets.media import MediaError, convert, probe
from emovid_datasets.media.files import safe_remote_id
from emovid_datasets.media.probe import require_moving
from emovid_datasets.records import read_json_file
from emovid_datasets.taxonomy import STICKER_QUERIES

log = logging.getLogger("emovid.build")

STAGE = "crawl-stickers"
SEARCH_STAGE = "crawl-stickers-search"
STATE_FILE = "crawl_state.json"
CLIPS_DIR = "clips"
KEY_ENV = "TENOR_API_KEY"
# Safety bound: a service that never ends a result list cannot keep one query going forever.
MAX_PAGES_PER_QUERY = 200
# Pages failing one after another mean the service is down: stop searching (a re-run resumes).
MAX_FAILED_PAGES_IN_A_ROW = 3
CLIENT_OPTIONS = ("endpoint", "rps", "locale", "contentfilter", "searchfilter", "client_key")  # TenorClient's


@dataclass
class CrawlSummary:
    """What a crawl left in its folder."""

    pages: int
    results: int
    kept: dict[str, int]
    rejected: int
    failed_queries: list[str]
    halted: Optional[str] = None

    def line(self, out_dir: Union[str, Path]) -> str:
        """One log line: what the crawl holds, what it rejected and where to look."""
        per_emotion = ", ".join(f"{e} {n}" for e, n in self.kept.items())
        failed = f", {len(self.failed_queries)} queries failed" if self.failed_queries else ""
        failed += f"; searching stopped early ({self.halted}): re-run with --retry-rejects" if self.halted else ""
        return (f"{STAGE}: {sum(self.kept.values())} stickers in {Path(out_dir) / 'manifest.parquet'} "
                f"({per_emotion}), {self.rejected} rejected (see {Path(out_dir) / 'rejects.parquet'}), "
                f"{self.pages} search pages this run, {self.results} unique results seen{failed}")


def _settings(client: TenorClient, media_format: str) -> dict[str, Any]:
    """What a saved crawl's cursors depend on (the key and client_key are left out on purpose)."""
    kept = ("searchfilter", "media_filter", "contentfilter", "locale")
    return {"search_url": client.search_url, "media_format": media_format,
            **{k: client.base_params[k] for k in kept}}


def load_state(out_dir: Path, settings: Mapping[str, Any], queries: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The saved crawl state of ``out_dir`` (or a fresh one), with every query of ``queries`` present."""
    path = out_dir / STATE_FILE
    state: dict[str, Any] = {"settings": dict(settings), "queries": {}, "results": {}}
    if path.exists():
        state = read_json_file(path)
        if state.get("settings") != dict(settings):
            raise ValueError(f"{path} belongs to a crawl with other settings ({state.get('settings')}); "
                             f"use another --out or delete that file to start over")
    for emotion, terms in queries.items():
        for query in terms:
            state["queries"].setdefault(query, {"emotion": emotion, "pos": "", "status": "open", "pages": 0})
    return state


def save_state(out_dir: Path, state: Mapping[str, Any]) -> None:
    """Write the crawl state (query cursors, results seen) atomically, so a killed crawl resumes from it."""
    atomic_write_text(out_dir / STATE_FILE, json.dumps(state, indent=1, sort_keys=True))


def result_item(result: Mapping[str, Any], query: str, emotion: str, media_format: str) -> dict[str, Any]:
    """A search result reduced to what the download needs and the manifest keeps."""
    picked = pick_media(result, media_format)
    rendition, media = picked if picked else (None, {})
    tenor_id = str(result["id"])
    return {
        "clip_id": f"sticker-{safe_remote_id(tenor_id)}", "tenor_id": tenor_id, "query": query, "emotion": emotion,
        "title": str(result.get("title") or ""), "description": str(result.get("content_description") or ""),
        "tags": as_list(result.get("tags")), "flags": as_list(result.get("flags")),
        "origin": result.get("itemurl") or result.get("url") or f"tenor:{tenor_id}",
        "url": result.get("url"), "itemurl": result.get("itemurl"), "created": result.get("created"),
        "media_format": rendition, "media_url": media.get("url"), "media_size": media.get("size"),
        "wanted_format": media_format, "queued": False,
    }


def fetch_sticker(item: Mapping[str, Any], *, clips_dir: Path, timeout: float, backoff: Backoff) -> dict[str, Any]:
    """Download one sticker, convert it to a silent MP4 as a viewer sees it and return its manifest row, which
    records a cut-off file (raises with the reason)."""
    url = item.get("media_url")
    if not url:
        raise DownloadError(f"no {item['wanted_format']} rendition in the search result")
    data = download_media(url, expected_size=item.get("media_size"), timeout=timeout, backoff=backoff)
    dst = clips_dir / f"{item['clip_id']}.mp4"
    try:
        done = convert({"bytes": data, "path": url}, dst, keep_audio=False)
        info = probe(dst)
    except MediaError as exc:
        raise MediaError(f"undecodable {item['media_format']} download: {exc}") from exc
    hint = done.cut_off if done.truncated else "use --searchfilter sticker,-static"
    require_moving(dst, what=f"the sticker at {url} ({hint})", info=info)
    if done.truncated:
        log.warning("%s: the sticker at %s is %s; kept what decodes", STAGE, url, done.cut_off)
    keep = ("clip_id", "tenor_id", "emotion", "query", "title", "description", "tags", "flags", "origin", "url",
            "itemurl", "created", "media_format", "media_url")
    return {**{k: item.get(k) for k in keep}, "source": "sticker", "video_path": str(dst), "has_audio": False,
            **{k: getattr(info, k) for k in ("duration", "fps", "num_frames", "width", "height")},
            **done.manifest_fields()}


class _Search:
    """One crawl's searching: round-robin over each emotion's open queries until its quota is queued."""

    def __init__(self, client: TenorClient, state: dict[str, Any], out_dir: Path, *, media_format: str,
                 per_emotion: Optional[int], limit: int, max_pages: int, progress: bool) -> None:
        self.client, self.state, self.out_dir = client, state, out_dir
        self.media_format, self.per_emotion, self.limit, self.max_pages = media_format, per_emotion, limit, max_pages
        self.progress = progress
        self.pages, self.failed_in_a_row = 0, 0
        self.halted: Optional[str] = None

    def round(self, rejected: set[str]) -> bool:
        """Queue results until every emotion has its quota or no open query; True if anything changed."""
        results = self.state["results"]
        queued = Counter(it["emotion"] for it in results.values() if it["queued"] and it["clip_id"] not in rejected)
        emotions = dict.fromkeys(q["emotion"] for q in self.state["queries"].values())
        changed = False
        with tqdm(desc=f"{STAGE} search", unit="page", disable=not self.progress) as bar:
            for emotion in emotions:
                changed |= self._promote_reserve(emotion, queued)
                while self._need(emotion, queued) > 0 and not self.halted:
                    open_queries = [q for q, s in self.state["queries"].items()
                                    if s["emotion"] == emotion and s["status"] == "open"]
                    if not open_queries:
                        break
                    for query in open_queries:
                        if self._need(emotion, queued) <= 0 or self.halted:
                            break
                        self._fetch_page(query, emotion, queued)
                        bar.update()
                        changed = True
        return changed

    def _need(self, emotion: str, queued: Counter) -> float:
        return float("inf") if self.per_emotion is None else self.per_emotion - queued[emotion]

    def _promote_reserve(self, emotion: str, queued: Counter) -> bool:
        """Queue results found earlier beyond the quota, before asking the service for more."""
        promoted = 0
        for item in self.state["results"].values():
            if self._need(emotion, queued) <= 0:
                break
            if item["emotion"] == emotion and not item["queued"]:
                item["queued"] = True
                queued[emotion] += 1
                promoted += 1
        if promoted:
            save_state(self.out_dir, self.state)
        return bool(promoted)

    def _fetch_page(self, query: str, emotion: str, queued: Counter) -> None:
        status = self.state["queries"][query]
        pos = status["pos"]
        try:
            page = self.client.search(query, pos, self.limit)
        except TenorUnavailable as exc:
            # Reject first, then mark the query: a kill in between retries the page instead of losing the reason.
            bad = reject(SEARCH_STAGE, str(exc), origin=self.client.page_url(query, pos, self.limit),
                         input_id=f"search:{query}@{pos}")
            write_rejects(self.out_dir, read_rejects(self.out_dir) + [bad])
            log.warning("%s: query %r (%s) stopped: %s", STAGE, query, emotion, exc)
            status.update(status="failed", reason=str(exc), reject_id=bad["input_id"])
            save_state(self.out_dir, self.state)
            self.failed_in_a_row += 1
            if self.failed_in_a_row >= MAX_FAILED_PAGES_IN_A_ROW:
                self.halted = f"{self.failed_in_a_row} query pages in a row failed"
                log.error("%s: %s; the service looks unavailable, searching stops for this run", STAGE, self.halted)
            return
        self.failed_in_a_row = 0
        new = 0
        for result in page.results:
            item = result_item(result, query, emotion, self.media_format)
            if item["clip_id"] in self.state["results"]:
                continue
            item["queued"] = self._need(emotion, queued) > 0
            queued[emotion] += item["queued"]
            self.state["results"][item["clip_id"]] = item
            new += 1
        status["pages"] += 1
        ended = not page.next or not page.results or page.next == pos or status["pages"] >= self.max_pages
        status.update(pos=page.next, status="done" if ended else "open")
        save_state(self.out_dir, self.state)
        self.pages += 1
        log.debug("%s: %r (%s) page %d: %d results, %d new%s", STAGE, query, emotion, status["pages"],
                  len(page.results), new, ", end of results" if ended else "")

def _reopen_failed(state: dict[str, Any], out_dir: Path, retry: bool) -> None:
    """Keep search rejects only for queries still marked failed; with ``retry`` reopen those queries first."""
    if retry:
        for status in state["queries"].values():
            if status["status"] == "failed":
                status.update(status="open", reason=None, reject_id=None)
    failed = {s.get("reject_id") for s in state["queries"].values() if s["status"] == "failed"}
    rejects = read_rejects(out_dir)
    kept = [r for r in rejects if r.get("stage") != SEARCH_STAGE or r.get("input_id") in failed]
    if len(kept) != len(rejects):
        write_rejects(out_dir, kept)
    save_state(out_dir, state)


def crawl_stickers(
    out_dir: Union[str, Path],
    client: TenorClient,
    *,
    per_emotion: Optional[int] = None,
    media_format: str = "gif",
    limit: int = MAX_LIMIT,
    queries: Mapping[str, Sequence[str]] = STICKER_QUERIES,
    workers: int = 1,
    retry_rejects: bool = False,
    timeout: float = 30.0,
    download_backoff: Optional[Backoff] = None,
    max_pages_per_query: int = MAX_PAGES_PER_QUERY,
    progress: bool = True,
) -> CrawlSummary:
    """Search, deduplicate and download stickers into ``out_dir`` (resumable); returns what it holds."""
    if media_format not in MEDIA_PREFERENCES:
        raise ValueError(f"media format must be one of {sorted(MEDIA_PREFERENCES)}, got {media_format!r}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"--limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if per_emotion is not None and per_emotion < 1:
        raise ValueError(f"--per-emotion must be at least 1, got {per_emotion}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / CLIPS_DIR).mkdir(exist_ok=True)
    state = load_state(out_dir, _settings(client, media_format), queries)
    _reopen_failed(state, out_dir, retry_rejects)
    work = FunctionStage(STAGE, functools.partial(fetch_sticker, clips_dir=out_dir / CLIPS_DIR, timeout=timeout,
                             backoff=download_backoff or Backoff()))
    search = _Search(client, state, out_dir, media_format=media_format, per_emotion=per_emotion, limit=limit,
                     max_pages=max_pages_per_query, progress=progress)
    retry_downloads = retry_rejects
    while True:
        rejected = set() if retry_downloads else {
            r["clip_id"] for r in read_rejects(out_dir) if r.get("stage") == STAGE and r.get("clip_id")}
        changed = search.round(rejected)
        items = [item for item in state["results"].values() if item["queued"]]
        run_stage(work, items, out_dir, input_key="clip_id", workers=workers,
                  retry_rejects=retry_downloads, progress=progress)
        retry_downloads = False
        if not changed:
            break
    kept = Counter(row["emotion"] for row in read_manifest(out_dir))
    summary = CrawlSummary(
        pages=search.pages, results=len(state["results"]),
        kept={e: kept[e] for e in queries},
        rejected=sum(1 for r in read_rejects(out_dir) if r.get("stage") == STAGE),
        failed_queries=[q for q, s in state["queries"].items() if s["status"] == "failed"],
        halted=search.halted,
    )
    log.info(summary.line(out_dir))
    return summary


def client_from_env(*, endpoint: str = DEFAULT_ENDPOINT, media_format: str = "gif", max_retries: int = 5,
                    **options: Any) -> TenorClient:
    """A TenorClient whose key comes from ``TENOR_API_KEY`` (the only place a key is read from)."""
    key = os.environ.get(KEY_ENV, "").strip()
    if not key:
        raise ValueError(f"{KEY_ENV} is not set: export the API key of the Tenor-compatible service at "
                         f"{endpoint} (keys are read from the environment only)")
    return TenorClient(key, endpoint=endpoint, media_filter=",".join(MEDIA_PREFERENCES[media_format]),
                       backoff=Backoff(max_retries=max_retries), **options)


def crawl_from_env(out_dir: Union[str, Path], *, media_format: str = "gif", max_retries: int = 5,
                   timeout: float = 30.0, **options: Any) -> CrawlSummary:
    """`crawl_stickers` with a client from the environment: what the CLI and the pipeline both call, so
    ``max_retries`` and ``timeout`` govern the search API and the downloads alike. ``options`` holds the
    client's settings (CLIENT_OPTIONS) and the crawl's (per_emotion, limit, workers, ...)."""
    client = client_from_env(media_format=media_format, max_retries=max_retries, timeout=timeout,
                             **{k: options.pop(k) for k in CLIENT_OPTIONS if k in options})
    return crawl_stickers(out_dir, client, media_format=media_format, timeout=timeout,
                          download_backoff=Backoff(max_retries=max_retries), **options)


def check_crawl_options(options: dict[str, Any], where: str) -> dict[str, Any]:
    """A pipeline source's ``crawl:`` keys, checked against what `crawl_from_env` takes (an unknown key is an error)."""
    known = set(CLIENT_OPTIONS) | {p for f in (crawl_from_env, crawl_stickers)
                                   for p in inspect.signature(f).parameters} - {"out_dir", "client", "options"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {', '.join(sorted(known))}")
    return dict(options)


def _command(args: argparse.Namespace) -> int:
    summary = crawl_from_env(args.out, media_format=args.media_format, max_retries=args.max_retries,
                             timeout=args.timeout, endpoint=args.endpoint, client_key=args.client_key,
                             searchfilter=args.searchfilter, contentfilter=args.contentfilter, locale=args.locale,
                             rps=args.rps, per_emotion=args.per_emotion, limit=args.limit, workers=args.workers,
                             retry_rejects=args.retry_rejects)
    return 1 if summary.halted or not sum(summary.kept.values()) else 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser(
        "crawl-stickers", help="search a Tenor API v2 service for emotion stickers and download them as MP4",
        description=f"The API key is read from ${KEY_ENV}. Re-running with the same --out resumes the crawl.")
    p.add_argument("--out", required=True, help="stage folder (manifest.parquet, rejects.parquet, clips/, state)")
    p.add_argument("--endpoint", default=DEFAULT_ENDPOINT,
                   help=f"base URL that /search is appended to (default {DEFAULT_ENDPOINT}, shut down in 2026; "
                        "any Tenor-compatible service works)")
    p.add_argument("--per-emotion", type=int, default=None, help="keep at most N unique stickers per emotion")
    p.add_argument("--rps", type=float, default=1.0, help="API requests per second (Tenor's limit: 1)")
    p.add_argument("--media-format", choices=sorted(MEDIA_PREFERENCES), default="gif",
                   help="rendition to download (the best available size of that family)")
    p.add_argument("--locale", default="en_US", help="search locale (default en_US)")
    p.add_argument("--contentfilter", choices=("off", "low", "medium", "high"), default="medium",
                   help="content safety filter (Tenor's own default is off)")
    p.add_argument("--searchfilter", default="sticker",
                   help="'sticker' (default) or 'sticker,-static' for animated stickers only")
    p.add_argument("--client-key", default="emovid-datasets", help="integration name sent as client_key")
    p.add_argument("--limit", type=int, default=MAX_LIMIT, help=f"results per page, 1-{MAX_LIMIT}")
    p.add_argument("--workers", type=int, default=1, help="download and conversion processes")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request")
    p.add_argument("--max-retries", type=int, default=5, help="retries on 429, 5xx and network errors")
    p.add_argument("--retry-rejects", action="store_true", help="retry failed query pages and rejected downloads")
    add_engine_arguments(p)
    p.set_defaults(func=with_engine(_command))
