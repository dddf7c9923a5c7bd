"""A loopback Tenor API v2 service for tests: `/v2/search` with paging, a key check, injected
429/5xx answers, and the media files it generates itself (GIFs with Pillow, MP4s with PyAV).

Stickers are listed per query in a catalogue; a sticker may sit under several queries (to test
deduplication). Special ids serve a truncated transfer, undecodable bytes or a one-frame image.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence
from urllib.parse import parse_qs, urlsplit

from factory import make_gif, make_video

MAX_LIMIT = 50
SIZE = (32, 24)


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _offset(cursor: str) -> int:
    padded = cursor + "=" * (-len(cursor) % 4)
    return int(base64.urlsafe_b64decode(padded).decode().split(":", 1)[1])


def _color(sticker_id: str) -> tuple[int, int, int]:
    digest = hashlib.sha1(sticker_id.encode()).digest()
    return digest[0], digest[1], digest[2]


class TenorServer:
    """Serve ``catalogue`` ({query: [sticker ids]}) on 127.0.0.1; use as a context manager."""

    def __init__(
        self,
        catalogue: Mapping[str, Sequence[str]],
        *,
        key: str = "test-key",
        truncated: Iterable[str] = (),
        undecodable: Iterable[str] = (),
        static: Iterable[str] = (),
        media_delay: float = 0.0,
    ) -> None:
        self.catalogue = {q: [str(i) for i in ids] for q, ids in catalogue.items()}
        self.key = key
        self.truncated, self.undecodable, self.static = set(truncated), set(undecodable), set(static)
        self.media_delay = media_delay
        self.search_log: list[dict[str, Any]] = []
        self.media_log: list[str] = []
        self._failures: list[tuple[int, Optional[str]]] = []
        self._lock = threading.Lock()
        self._dir = tempfile.TemporaryDirectory(prefix="tenor-server-")
        self.media: dict[tuple[str, str], bytes] = {}
        self._first_query: dict[str, str] = {}
        for query, ids in self.catalogue.items():
            for sticker_id in ids:
                if sticker_id not in self._first_query:
                    self._first_query[sticker_id] = query
                    self._make_media(sticker_id)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def endpoint(self) -> str:
        """The base URL a client appends `/search` to."""
        return self.base + "/v2"

    def __enter__(self) -> "TenorServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._dir.cleanup()

    def fail_next(self, status: int, count: int = 1, retry_after: Optional[str] = None) -> None:
        """Answer the next ``count`` search requests with ``status`` (and a Retry-After header if given)."""
        with self._lock:
            self._failures.extend([(status, retry_after)] * count)

    def clear_failures(self) -> None:
        """Drop the failures still queued by `fail_next`."""
        with self._lock:
            self._failures.clear()

    def search_times(self) -> list[float]:
        """Arrival times (time.monotonic) of every /search request, failed ones included."""
        return [entry["t"] for entry in self.search_log]

    def result(self, sticker_id: str) -> dict[str, Any]:
        """The Tenor Response Object of a sticker, as `/search` returns it."""
        query = self._first_query[sticker_id]
        slug = query.replace(" ", "-")
        media_formats = {}
        for name, ext in (("gif", "gif"), ("tinygif", "gif"), ("mp4", "mp4")):
            fmt = "gif" if ext == "gif" else "mp4"
            frames = 1 if sticker_id in self.static else 6
            media_formats[name] = {
                "url": f"{self.base}/m/{sticker_id}/{name}.{ext}",
                "dims": list(SIZE),
                "duration": 0.0 if sticker_id in self.static else frames / 10,
                "size": len(self.media[(sticker_id, fmt)]),
                "preview": f"{self.base}/m/{sticker_id}/preview.png",
            }
        return {
            "id": sticker_id,
            "title": f"{query.title()} sticker {sticker_id}",
            "created": 1_700_000_000.0 + int(hashlib.sha1(sticker_id.encode()).hexdigest()[:6], 16),
            "content_description": f"A cartoon cat looking {query}",
            "content_description_source": "GENERATED",
            "itemurl": f"https://tenor.com/view/{slug}-sticker-{sticker_id}",
            "url": f"https://tenor.com/s{sticker_id}.gif",
            "tags": [query, "cat", "sticker"],
            "flags": ["sticker"],
            "hasaudio": False,
            "hascaption": False,
            "bg_color": "",
            "media_formats": media_formats,
        }

    def _make_media(self, sticker_id: str) -> None:
        rng = random.Random(sticker_id)
        if sticker_id in self.undecodable:
            self.media[(sticker_id, "gif")] = b"GIF89a" + rng.randbytes(1500)
            self.media[(sticker_id, "mp4")] = b"\x00\x00\x00\x18ftypisom" + rng.randbytes(1500)
            return
        frames = 1 if sticker_id in self.static else 6
        color = _color(sticker_id)
        stem = hashlib.sha1(sticker_id.encode()).hexdigest()  # ids may be hostile (tests send "../" ones)
        gif = make_gif(Path(self._dir.name) / f"{stem}.gif", frames=frames, size=SIZE,
                       colors=(color, tuple(255 - c for c in color)), duration_ms=100)
        mp4 = make_video(Path(self._dir.name) / f"{stem}.mp4", frames=frames, fps=10, size=SIZE,
                         color=color, audio=False)
        self.media[(sticker_id, "gif")] = gif.read_bytes()
        self.media[(sticker_id, "mp4")] = mp4.read_bytes()

    def _search(self, params: dict[str, str]) -> tuple[int, dict[str, str], dict[str, Any]]:
        if params.get("key") != self.key:
            return 400, {}, {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                                       "status": "INVALID_ARGUMENT"}}
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure:
            status, retry_after = failure
            headers = {"Retry-After": retry_after} if retry_after else {}
            return status, headers, {"error": {"code": status, "message": "try again later"}}
        if not params.get("q"):
            return 400, {}, {"error": {"code": 400, "message": "q is required", "status": "INVALID_ARGUMENT"}}
        limit = max(1, min(MAX_LIMIT, int(params.get("limit", 20))))
        start = _offset(params["pos"]) if params.get("pos") else 0
        ids = self.catalogue.get(params["q"], [])
        page = ids[start:start + limit]
        more = start + limit < len(ids)
        return 200, {}, {"results": [self.result(i) for i in page], "next": _cursor(start + limit) if more else ""}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] = {},
                      cut_at: Optional[int] = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(body if cut_at is None else body[:cut_at])
                except (BrokenPipeError, ConnectionResetError):  # the client was killed mid-transfer
                    pass
                self.close_connection = True

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                split = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(split.query).items()}
                if split.path == "/v2/search":
                    with server._lock:
                        server.search_log.append({"t": time.monotonic(), "params": params})
                    status, headers, body = server._search(params)
                    self._send(status, json.dumps(body).encode(), "application/json", headers)
                    return
                if split.path == "/v2/posts":  # Response Objects by id, as Tenor's `/posts`
                    if params.get("key") != server.key:
                        self._send(400, b'{"error": {"code": 400}}', "application/json")
                        return
                    known = {i for ids in server.catalogue.values() for i in ids}
                    found = [server.result(i) for i in params.get("ids", "").split(",") if i in known]
                    self._send(200, json.dumps({"results": found}).encode(), "application/json")
                    return
                parts = split.path.strip("/").split("/")
                if len(parts) == 3 and parts[0] == "m" and (parts[1], parts[2][-3:]) in server.media:
                    sticker_id, ext = parts[1], parts[2][-3:]
                    with server._lock:
                        server.media_log.append(split.path)
                    time.sleep(server.media_delay)
                    data = server.media[(sticker_id, ext)]
                    cut = len(data) // 2 if sticker_id in server.truncated else None
                    self._send(200, data, "image/gif" if ext == "gif" else "video/mp4", cut_at=cut)
                    return
                # Like many real servers, echo the request (query string and key included) in the 404 body.
                self._send(404, f"Not found: {self.path}".encode(), "text/plain")

        return Handler
