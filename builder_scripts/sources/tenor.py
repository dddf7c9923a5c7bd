"""A client of the Tenor API v2 protocol: `/search` paging, 1 request/s, backoff on 429 and 5xx.

Google shut the original endpoint (https://tenor.googleapis.com/v2) down in 2026; any
Tenor-compatible service (e.g. Giphy's Tenor layer) works by changing the base URL. The API key
travels as the `key` query parameter, so every URL and message that leaves this module is
scrubbed of it (including urllib3's own debug log of request lines).
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlencode

import requests

log = logging.getLogger("emovid.build")

DEFAULT_ENDPOINT = "https://tenor.googleapis.com/v2"
MAX_LIMIT = 50
# Renditions to try for each --media-format, best first (Tenor's GIF and MP4 families).
MEDIA_PREFERENCES: dict[str, tuple[str, ...]] = {
    "gif": ("gif", "mediumgif", "tinygif", "nanogif"),
    "mp4": ("mp4", "loopedmp4", "tinymp4", "nanomp4"),
}
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDACTED = "REDACTED"


class TenorError(RuntimeError):
    """A Tenor request failed; the message never contains the API key."""


class TenorUnavailable(TenorError):
    """Rate limiting, server errors or the network outlasted the bounded retries (skip and go on)."""


class TenorRequestError(TenorError, ValueError):
    """The service refused the request itself (bad key, unknown endpoint): the crawl cannot go on."""


class DownloadError(TenorError):
    """A media download failed or arrived truncated."""


def scrub(text: str, secret: Optional[str]) -> str:
    """``text`` with ``secret`` and any ``key=...`` query parameter replaced by REDACTED."""
    text = re.sub(r"([?&]key=)[^&#\s'\"]*", r"\1" + REDACTED, str(text))
    return text.replace(secret, REDACTED) if secret else text


class _ScrubFilter(logging.Filter):
    """Redact the key from log records (urllib3 logs each request line, query string included)."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message or "key=" in message:
            record.msg, record.args = scrub(message, self.secret), ()
        return True


def _guard_urllib3_log(secret: str) -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _ScrubFilter) and f.secret == secret for f in logger.filters):
        logger.addFilter(_ScrubFilter(secret))


class RateLimiter:
    """Space calls at least ``1/rps`` seconds apart (thread-safe); clock and sleep are injectable."""

    def __init__(self, rps: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rps <= 0:
            raise ValueError(f"requests per second must be positive, got {rps}")
        self.interval = 1.0 / rps
        self.clock, self.sleep = clock, sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until the next call is allowed, then claim its slot."""
        with self._lock:
            now = self.clock()
            if now < self._next:
                self.sleep(self._next - now)
                now = max(self.clock(), self._next)  # a late wake-up must not shorten the next gap
            self._next = now + self.interval


@dataclass
class Backoff:
    """Bounded retries: honour Retry-After, else exponential delays ``base * 2**attempt`` (capped, jittered)."""

    max_retries: int = 5
    base: float = 1.0
    cap: float = 60.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def delay(self, attempt: int, retry_after: Optional[str] = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        advised = parse_retry_after(retry_after)
        if advised is not None:
            return min(advised, self.cap)
        return min(self.base * 2 ** attempt, self.cap) * random.uniform(0.8, 1.0)


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or malformed."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _refused(exc: BaseException) -> bool:
    """Whether a requests error comes from a refused TCP connection (the cause chain holds ConnectionRefusedError)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, ConnectionRefusedError):
            return True
        todo.extend(e for e in (error.__cause__, error.__context__, *getattr(error, "args", ()),
                                getattr(error, "reason", None)) if isinstance(e, BaseException))
    return False


def get_with_retries(session: requests.Session, url: str, *, params: Optional[Mapping[str, Any]] = None,
                     timeout: float, backoff: Backoff, limiter: Optional[RateLimiter] = None,
                     secret: Optional[str] = None, stream: bool = False) -> requests.Response:
    """GET ``url``, retrying 429, 5xx and network errors per ``backoff`` (a refused connection fails at once);
    other answers are returned as is.

    Raises TenorUnavailable (key scrubbed) once the retries are spent.
    """
    shown = scrub(url + ("?" + urlencode(params) if params else ""), secret)
    for attempt in range(backoff.max_retries + 1):
        if limiter is not None:
            limiter.wait()
        retry_after = None
        try:
            response = session.get(url, params=params, timeout=timeout, stream=stream)
        except requests.RequestException as exc:
            if _refused(exc):  # nothing listens there: retrying will not help, and the wait would be long
                raise TenorUnavailable(f"GET {shown}: connection refused (is the endpoint right and up?)") from None
            # requests wraps urllib3's error, whose `reason` says what happened without repeating the URL.
            cause = getattr(exc.args[0] if exc.args else None, "reason", None) or exc
            problem = f"{type(exc).__name__}: {scrub(str(cause), secret)}"
        else:
            if response.status_code not in RETRY_STATUSES:
                return response
            retry_after = response.headers.get("Retry-After")
            problem = f"HTTP {response.status_code}" + (f" (Retry-After: {retry_after})" if retry_after else "")
            response.close()
        if attempt == backoff.max_retries:
            break
        wait = backoff.delay(attempt, retry_after)
        log.debug("GET %s: %s; retry %d/%d in %.2fs", shown, problem, attempt + 1, backoff.max_retries, wait)
        backoff.sleep(wait)
    raise TenorUnavailable(f"GET {shown} failed after {backoff.max_retries + 1} attempts: {problem}")


def _error_message(response: requests.Response) -> str:
    """The service's own error text (Google style ``{"error": {"message": ...}}``) or the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error.get("status") or error)
    return str(error or body)[:200]


@dataclass(frozen=True)
class SearchPage:
    """One `/search` answer: its results (raw Tenor Response Objects) and the cursor ("" = no more)."""

    results: list[dict[str, Any]]
    next: str


class TenorClient:
    """Searches a Tenor API v2 service at ``endpoint`` politely (rate limit, retries, scrubbed errors)."""

    def __init__(
        self,
        key: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        client_key: str = "emovid-datasets",
        searchfilter: str = "sticker",
        media_filter: str = "gif,mp4",
        contentfilter: str = "medium",
        locale: str = "en_US",
        rps: float = 1.0,
        timeout: float = 30.0,
        backoff: Optional[Backoff] = None,
        limiter: Optional[RateLimiter] = None,
        session: Optional[requests.Session] = None,
    ) -> None:
        if not key:
            raise ValueError("a Tenor API key is required")
        self.key = key
        self.search_url = endpoint.rstrip("/") + "/search"
        self.base_params = {"key": key, "client_key": client_key, "searchfilter": searchfilter,
                            "media_filter": media_filter, "contentfilter": contentfilter, "locale": locale}
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self.limiter = limiter or RateLimiter(rps)
        self.session = session or requests.Session()
        _guard_urllib3_log(key)

    def page_url(self, query: str, pos: str = "", limit: int = MAX_LIMIT) -> str:
        """The search URL for a page with the key redacted: safe for logs, rejects and manifests."""
        return scrub(self.search_url + "?" + urlencode(self._params(query, pos, limit)), self.key)

    def _params(self, query: str, pos: str, limit: int) -> dict[str, Any]:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        params = dict(self.base_params, q=query, limit=limit)
        if pos:
            params["pos"] = pos
        return params

    def _results(self, url: str, params: dict[str, Any], shown: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """GET ``url`` politely; its Response Objects (those with an id) and the whole answer."""
        response = get_with_retries(self.session, url, params=params, timeout=self.timeout, backoff=self.backoff,
                                    limiter=self.limiter, secret=self.key)
        with response:
            if response.status_code != 200:
                message = scrub(_error_message(response), self.key)
                raise TenorRequestError(f"GET {shown}: HTTP {response.status_code}: {message}")
            try:
                body = response.json()
            except ValueError as exc:
                raise TenorUnavailable(f"GET {shown}: the answer is not JSON ({exc})") from exc
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise TenorUnavailable(f"GET {shown}: the answer has no 'results' list")
        return [r for r in body["results"] if isinstance(r, dict) and r.get("id") not in (None, "")], body

    def search(self, query: str, pos: str = "", limit: int = MAX_LIMIT) -> SearchPage:
        """One page of `/search` results for ``query`` starting at cursor ``pos`` ("" = first page)."""
        results, body = self._results(self.search_url, self._params(query, pos, limit),
                                      self.page_url(query, pos, limit))
        return SearchPage(results=results, next=str(body.get("next") or ""))

    def post(self, post_id: str) -> dict[str, Any]:
        """One Response Object by id from `/posts` (what rehydrating a sticker needs); TenorRequestError if unknown."""
        url = self.search_url.removesuffix("/search") + "/posts"
        params = {k: v for k, v in self.base_params.items() if k not in ("searchfilter", "contentfilter", "locale")}
        params["ids"] = post_id
        shown = scrub(url + "?" + urlencode(params), self.key)
        results, _ = self._results(url, params, shown)
        match = [r for r in results if str(r["id"]) == str(post_id)]
        if not match:
            raise TenorRequestError(f"GET {shown}: no post with id {post_id}")
        return match[0]


def as_list(value: Any) -> list[str]:
    """Tenor documents `flags`/`tags` as strings but sends lists: accept both (comma-separated string)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return [str(v) for v in value]


def pick_media(result: Mapping[str, Any], media_format: str) -> Optional[tuple[str, dict[str, Any]]]:
    """The best rendition of ``media_format`` ('gif' or 'mp4') in a result: (format name, MediaObject)."""
    formats = result.get("media_formats") or {}
    for name in MEDIA_PREFERENCES[media_format]:
        media = formats.get(name)
        if isinstance(media, dict) and media.get("url"):
            return name, media
    return None


def download_media(url: str, *, expected_size: Optional[int] = None, timeout: float = 30.0,
                   backoff: Optional[Backoff] = None) -> bytes:
    """Fetch a media file fully; DownloadError when the answer is an error or shorter than announced.

    ``expected_size`` is the MediaObject's `size`: a shorter body means a truncated file.
    """
    with requests.Session() as session:
        response = get_with_retries(session, url, timeout=timeout, backoff=backoff or Backoff(), stream=True)
        with response:
            if response.status_code != 200:
                raise DownloadError(f"GET {url}: HTTP {response.status_code}")
            announced = response.headers.get("Content-Length")
            try:
                data = b"".join(response.iter_content(chunk_size=1 << 16))
            except requests.RequestException as exc:
                raise DownloadError(f"GET {url}: truncated download, the connection broke before all "
                                    f"{announced or 'announced'} bytes arrived ({type(exc).__name__})") from exc
    for what, size in (("Content-Length", announced), ("size in the search result", expected_size)):
        if size and str(size).isdigit() and len(data) < int(size):
            raise DownloadError(f"GET {url}: truncated download, {len(data)} of {int(size)} bytes ({what})")
    return data
