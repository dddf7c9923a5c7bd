"""Stage `fetch-movies`: Condensed Movies clips in story order, downloaded with yt-dlp or ingested from a folder.

Reads the CMD metadata (``clips.csv`` and friends), groups clips by the clean key
(imdbid, title, upload_year, clip_tot) so films sharing an imdbid stay apart, orders each
group by ``clip_idx``, and turns every clip into an MP4 trimmed of the MovieClips advert tail
that ``durations.csv`` leaves out. One manifest row per ~2-minute clip; `segment` cuts them later.

YouTube blocks datacenter downloads ("Sign in to confirm you're not a bot"): `DownloadOptions` passes a
cookies file, a proxy, a sleep before each download and a rate limit to yt-dlp (from options or
``EMOVID_YTDLP_*`` variables) without ever logging them or writing them to the stage's files. A failed
download's reject starts with its class (``[removed]``, ``[private]``, ``[geo-blocked]``, ``[bot-check]``,
``[network]``, ``[unknown]``); ``--retry-rejects`` tries again every reject except the permanent classes
(removed, private, geo-blocked).
"""

from __future__ import annotations

import argparse
import ast
import csv
import functools
import hashlib
import io
import logging
import os
import re
import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union
from urllib.parse import unquote, urlsplit

from builder_scripts.engine.executors import add_engine_arguments, with_engine
from builder_scripts.engine.manifest import read_manifest, read_rejects, reject, write_rejects
from builder_scripts.engine.runner import StageSummary, exit_status, run_stage
from builder_scripts.engine.stage import FunctionStage, Outcome
from emovid_datasets.media import Conversion, MediaError, convert, probe
from emovid_datasets.media.files import VIDEO_SUFFIXES, safe_remote_id, scan_media
from emovid_datasets.options import add_dataclass_arguments, dataclass_from_args

log = logging.getLogger("emovid.build")

STAGE = "fetch-movies"


@dataclass(frozen=True)
class FetchOptions:
    """A pipeline source's ``fetch:`` keys: the metadata CSV, a local folder instead of downloads, limits."""

    metadata: str
    from_dir: Optional[str] = None
    limit: Optional[int] = None
    max_side: Optional[int] = None


ENV_PREFIX = "EMOVID_YTDLP_"
REDACTED = "<redacted>"
_USERINFO = re.compile(r"(\w+://)[^/\s@]+@")  # scheme://user:password@ in any URL of a message
_NETSCAPE_HEADER = re.compile(r"#( Netscape)? HTTP Cookie File")  # what yt-dlp's cookie jar requires first
_HTTPONLY_PREFIX = "#HttpOnly_"


class SettingError(ValueError):
    """A download setting (option or ``EMOVID_YTDLP_*`` variable) that cannot be used; the message names it."""


@dataclass(frozen=True)
class DownloadOptions:
    """yt-dlp's settings against YouTube's bot checks; each one not given comes from ``EMOVID_YTDLP_<NAME>``.

    None of them is logged or written to a manifest or the rejects: a proxy URL can carry a password and
    a cookies file is a signed-in session (``repr`` leaves both out).
    """

    cookies: Optional[str] = field(default=None, repr=False, metadata={
        "help": "Netscape cookies.txt of a signed-in YouTube session, as yt-dlp's --cookies (read, never written back)"})
    proxy: Optional[str] = field(default=None, repr=False, metadata={
        "help": "proxy for every request, e.g. http://user:password@host:3128 or socks5://host:1080"})
    sleep_interval: Optional[float] = field(default=None, metadata={"help": "seconds yt-dlp waits before each download"})
    rate_limit: Optional[str] = field(default=None, metadata={
        "help": "download speed cap in bytes per second, e.g. 500K or 2M (yt-dlp's --limit-rate)"})

    def __post_init__(self) -> None:
        if self.sleep_interval is not None and not self.sleep_interval >= 0:
            raise SettingError(f"--sleep-interval must be at least 0 seconds, got {self.sleep_interval}")

    @classmethod
    def from_env(cls, given: Optional["DownloadOptions"] = None) -> "DownloadOptions":
        """``given``'s settings, each unset one taken from its ``EMOVID_YTDLP_<NAME>`` environment variable."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = getattr(given, f.name) if given is not None else None
            name = ENV_PREFIX + f.name.upper()
            if value is None and os.environ.get(name):
                value = os.environ[name]
                if f.name == "sleep_interval":
                    try:
                        value = float(value)
                    except ValueError:
                        raise SettingError(f"{name} must be a number of seconds, got {value!r}") from None
            values[f.name] = value
        return cls(**values)

    def redact(self, text: str) -> str:
        """``text`` with the proxy, its credentials, the cookies file's path and any URL's user:password@ removed."""
        secrets = [s for s in (self.proxy, self.cookies) if s]
        if self.proxy:
            parts = urlsplit(self.proxy)
            userinfo = parts.netloc.rpartition("@")[0]
            secrets += [s for s in (userinfo, unquote(userinfo), parts.password, unquote(parts.password or "")) if s]
        for secret in sorted(set(secrets), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return _USERINFO.sub(rf"\1{REDACTED}@", text)

    def ydl_params(self) -> dict[str, Any]:
        """These settings as yt-dlp options; the cookies as an in-memory copy, which yt-dlp saves to instead of
        rewriting the file (parallel workers would race on it). Raises SettingError naming a bad setting."""
        params: dict[str, Any] = {}
        if self.cookies:
            params["cookiefile"] = io.StringIO(_read_cookies(self.cookies))
        if self.proxy:
            params["proxy"] = self.proxy
        if self.sleep_interval:
            params["sleep_interval"] = self.sleep_interval
        if self.rate_limit:
            rate = _import_yt_dlp().utils.parse_bytes(self.rate_limit)
            if not rate:
                raise SettingError(f"--rate-limit must be bytes per second like 500K or 2M, got {self.rate_limit!r}")
            params["ratelimit"] = rate
        return params


def _read_cookies(path: str) -> str:
    """The cookies file's text, checked line by line so that yt-dlp never prints a bad entry (a session) back."""
    where = f"the cookies file (--cookies / {ENV_PREFIX}COOKIES)"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"{where} cannot be read ({type(exc).__name__})") from None
    lines = text.splitlines()
    if not lines or not _NETSCAPE_HEADER.match(lines[0]):
        raise SettingError(f"{where} is not a Netscape cookies.txt (its first line must be '# Netscape HTTP Cookie File')")
    for number, line in enumerate(lines[1:], start=2):
        entry = line.removeprefix(_HTTPONLY_PREFIX)
        if entry.strip() and not entry.startswith("#") and len(entry.split("\t")) != 7:
            raise SettingError(f"{where}: line {number} is not a cookie entry of 7 tab-separated fields")
    return text


FAILURES = ("removed", "private", "geo-blocked", "bot-check", "network", "unknown")
# The video's own state: retrying the same request gets the same answer. The rest depend on the session.
PERMANENT_FAILURES = ("removed", "private", "geo-blocked")
# Checked in order against yt-dlp's messages (YouTube's geo message starts "Video unavailable", its private
# one says "Sign in").
_FAILURE_PATTERNS = (
    ("geo-blocked", r"in your country|geo.?restrict|not available from your location"),
    ("private", r"private video|video is private"),
    ("bot-check", r"not a bot|captcha|confirm your age|sign in|rate.?limit|too many requests|http error 4(03|29)"),
    ("removed", r"removed|terminated|no longer available|video (is )?(unavailable|not available)|does not exist"
                r"|copyright|http error 4(04|10)"),
    ("network", r"timed out|connection|network|name resolution|getaddrinfo|http error 5\d\d|\bssl\b|\bproxy\b"
                r"|incomplete|remote end closed|temporar"),
)
# Left out before matching, so that a video id or URL cannot look like a message: "[youtube] ID: " and URLs.
_NOT_MESSAGE = re.compile(r"\[[\w:-]+\] [\w-]+: |\S+://\S+")
_FAILURE_TAG = re.compile(r"^\[([a-z-]+)\] ")


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what caused it: yt-dlp's ``exc_info`` and ``cause``, and Python's ``__cause__``/``__context__``."""
    todo, seen = [exc], set()
    while todo:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        exc_info = getattr(current, "exc_info", None)
        todo += [exc_info[1] if isinstance(exc_info, tuple) and len(exc_info) > 1 else None,
                 getattr(current, "cause", None), current.__cause__, current.__context__]


def classify_failure(exc: BaseException) -> str:
    """One of `FAILURES` for a yt-dlp error, from its exception types and YouTube's messages."""
    yt_dlp = _import_yt_dlp()
    chain = list(_exception_chain(exc))
    if any(isinstance(e, yt_dlp.utils.GeoRestrictedError) for e in chain):
        return "geo-blocked"
    text = _NOT_MESSAGE.sub(" ", " ".join(str(e) for e in chain)).lower()
    for kind, pattern in _FAILURE_PATTERNS:
        if re.search(pattern, text):
            return kind
    network = (yt_dlp.networking.exceptions.TransportError, TimeoutError, ConnectionError)
    return "network" if any(isinstance(e, network) for e in chain) else "unknown"


def failure_of(row: dict[str, Any]) -> Optional[str]:
    """The class a reject's reason starts with (``[network] ...``); None for a reject that is no download failure."""
    match = _FAILURE_TAG.match(row.get("reason") or "")
    return match.group(1) if match and match.group(1) in FAILURES else None


WATCH_URL = "https://www.youtube.com/watch?v={videoid}"
# CMD's youtube-dl.conf preference (<= 360p, mp4 video + best audio), merged into MKV, which PyAV reads.
FORMAT_MERGED = "bestvideo[height<=?360][ext=mp4]+bestaudio/best[height<=?360]/best"
# Without ffmpeg yt-dlp cannot merge, so ask for a single file that already has both streams.
FORMAT_SINGLE = "best[height<=?360]/best"
# durations.csv holds whole seconds: a file up to this much longer is rounding, not an advert.
TRIM_TOLERANCE = 1.0


def slug(text: str) -> str:
    """ASCII lower-case words joined by '-' ("Les Misérables" -> "les-miserables"); a hash for non-Latin titles."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    words = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return words or "t" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]


def _int(value: Any) -> Optional[int]:
    """CSV number ("2012.0", "10", "", "-1") as int; None when empty, unparsable or the -1 placeholder."""
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        return None
    return None if number < 0 else number


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(handle)]


def _optional_csv(folder: Path, name: str) -> list[dict[str, str]]:
    path = folder / name
    if not path.exists():
        log.info("%s: %s not found; its columns stay empty", STAGE, path)
        return []
    return _read_csv(path)


def _literal_list(text: str) -> Optional[list[str]]:
    """movie_info.csv's Python-literal lists ("['Drama', 'Music']"); a plain comma list is accepted too."""
    if not text:
        return None
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text.split(",")
    items = value if isinstance(value, (list, tuple)) else [value]
    return [str(v).strip() for v in items if str(v).strip()] or None


def sequence_id_of(imdbid: str, title: str, upload_year: Optional[int], clip_tot: Optional[int]) -> str:
    """Stable id of one clean group (imdbid, title, upload_year, clip_tot); 'na' marks an unknown value."""
    def part(v: Optional[int]) -> str:
        return "na" if v is None else str(v)
    return f"{imdbid}:{slug(title)}:{part(upload_year)}:{part(clip_tot)}"


def read_metadata(folder: Union[str, os.PathLike]) -> list[dict[str, Any]]:
    """One record per clip of the CMD metadata folder, in story order, with `sequence_id`/`sequence_index`.

    ``clips.csv`` is required; descriptions, durations, movies, movie_info and split are joined
    when present. A repeated videoid keeps its first row.
    """
    folder = Path(folder)
    clips_csv = folder / "clips.csv"
    if not clips_csv.exists():
        raise FileNotFoundError(f"{clips_csv}: the Condensed Movies clips.csv is required")
    descriptions = {r.get("videoid"): r.get("description") or None for r in _optional_csv(folder, "descriptions.csv")}
    durations = {r.get("videoid"): _int(r.get("duration")) for r in _optional_csv(folder, "durations.csv")}
    movie_years = {(r.get("imdbid"), r.get("title")): _int(r.get("year")) for r in _optional_csv(folder, "movies.csv")}
    info = {r.get("imdbid"): r for r in _optional_csv(folder, "movie_info.csv")}
    splits = {r.get("imdbid"): r.get("split") or None for r in _optional_csv(folder, "split.csv")}

    records: dict[str, dict[str, Any]] = {}
    for line, row in enumerate(_read_csv(clips_csv), start=2):
        videoid, imdbid, title = row.get("videoid", ""), row.get("imdbid", ""), row.get("title", "")
        if not videoid or not imdbid:
            log.warning("%s: %s line %d has no videoid or imdbid; skipped", STAGE, clips_csv, line)
            continue
        if videoid in records:
            log.warning("%s: %s line %d repeats videoid %s; kept the first", STAGE, clips_csv, line, videoid)
            continue
        upload_year, clip_tot = _int(row.get("upload_year")), _int(row.get("clip_tot"))
        year = _int(row.get("year"))
        records[videoid] = {
            "videoid": videoid, "imdbid": imdbid, "title": title, "clip_name": row.get("clip_name") or None,
            "year": year if year is not None else movie_years.get((imdbid, title)),
            "upload_year": upload_year, "clip_idx": _int(row.get("clip_idx")), "clip_tot": clip_tot,
            "sequence_id": sequence_id_of(imdbid, title, upload_year, clip_tot),
            "listed_duration": durations.get(videoid), "description": descriptions.get(videoid),
            "genre": _literal_list(info.get(imdbid, {}).get("genre", "")),
            "country": _literal_list(info.get(imdbid, {}).get("country", "")),
            "cmd_split": splits.get(imdbid),
        }
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records.values():
        groups.setdefault(record["sequence_id"], []).append(record)
    ordered: list[dict[str, Any]] = []
    for sequence_id in sorted(groups):
        members = sorted(groups[sequence_id], key=lambda r: (r["clip_idx"] is None, r["clip_idx"] or 0, r["videoid"]))
        indices = [m["clip_idx"] for m in members if m["clip_idx"] is not None]
        if len(indices) != len(set(indices)):
            log.warning("%s: group %s repeats a clip_idx; ties ordered by videoid", STAGE, sequence_id)
        for position, member in enumerate(members):
            member["sequence_index"] = position
            ordered.append(member)
    return ordered


def index_video_folder(folder: Union[str, os.PathLike]) -> dict[str, Path]:
    """Map YouTube id (file stem) -> video file under ``folder`` (recursive; mkv before mp4 before webm...)."""
    rank = {ext: i for i, ext in enumerate(VIDEO_SUFFIXES)}
    found: dict[str, Path] = {}
    for path in (Path(folder) / rel for rel in scan_media(folder, VIDEO_SUFFIXES)):
        ext = path.suffix.lower()
        best = found.get(path.stem)
        if best is None or rank[ext] < rank[best.suffix.lower()]:
            found[path.stem] = path
    return found


class _YtDlpLogger:
    """Route yt-dlp's messages, redacted, to our logger at debug level (failures come back as the DownloadError)."""

    def __init__(self, redact: Callable[[str], str]) -> None:
        self.redact = redact

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", self.redact(msg))

    info = warning = error = debug


def _import_yt_dlp():
    try:
        import yt_dlp
    except ImportError as exc:
        raise ImportError("fetch-movies needs yt-dlp to download clips: pip install 'emovid-datasets[building]' "
                          "(or pass --from-dir with videos you already have)") from exc
    return yt_dlp


class DownloadFailed(MediaError):
    """A yt-dlp download that failed; ``kind`` is one of `FAILURES` and the message is redacted."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def download_video(url: str, dest_dir: Union[str, os.PathLike], name: str, *,
                   options: DownloadOptions = DownloadOptions(), socket_timeout: float = 30, retries: int = 3) -> Path:
    """Download ``url`` with yt-dlp (<= 360p, merged into MKV when ffmpeg is there) to ``dest_dir/name.EXT``."""
    yt_dlp = _import_yt_dlp()
    from yt_dlp.postprocessor import FFmpegMergerPP

    params = {
        "outtmpl": {"default": str(Path(dest_dir) / f"{name}.%(ext)s")},
        "merge_output_format": "mkv", "noplaylist": True, "quiet": True, "no_warnings": True,
        "noprogress": True, "retries": retries, "socket_timeout": socket_timeout,
        "logger": _YtDlpLogger(options.redact), **options.ydl_params(),
    }
    try:
        with yt_dlp.YoutubeDL(params) as ydl:
            ydl.params["format"] = FORMAT_MERGED if FFmpegMergerPP(ydl).available else FORMAT_SINGLE
            info = ydl.extract_info(url, download=True)
    except yt_dlp.utils.YoutubeDLError as exc:
        message = options.redact(str(exc).removeprefix("ERROR: "))
        raise DownloadFailed(f"{url}: download failed ({message})", classify_failure(exc)) from None
    files = [Path(d["filepath"]) for d in info.get("requested_downloads") or [] if d.get("filepath")]
    if not files or not files[0].is_file():
        raise MediaError(f"{url}: yt-dlp reported no downloaded file")
    return files[0]


def convert_clip(src: Union[str, os.PathLike], dst: Union[str, os.PathLike], *, end_time: Optional[float] = None,
                 max_side: Optional[int] = None, tolerance: float = TRIM_TOLERANCE) -> tuple[Conversion, bool]:
    """MP4 of ``src``, cut at ``end_time`` seconds when the file runs longer (the advert tail); returns the
    conversion (which records a cut-off download: only what decodes is kept) and whether it was trimmed."""
    src, dst = Path(src), Path(dst)
    duration = probe(src).duration  # decodes one frame: an unusable file fails here with its reason
    if end_time is None or end_time <= 0 or duration <= end_time + tolerance:
        return convert(src, dst, max_side=max_side), False
    return convert(src, dst, max_side=max_side, end_time=float(end_time)), True


def fetch_clip(item: dict[str, Any], *, out_dir: str, download: Optional[DownloadOptions] = None,
               url_template: str = WATCH_URL, max_side: Optional[int] = None, keep_downloads: bool = False) -> Outcome:
    """Get one clip's video (its ``local_file``, or a yt-dlp download with ``download``'s settings), convert and
    trim it; return its row, or a reject whose reason starts with the download failure's class."""
    videoid = item["videoid"]
    downloaded: Optional[Path] = None
    if download is None:
        if not item.get("local_file"):
            return Outcome(rejects=[reject(STAGE, f"no video file named {videoid}.* in --from-dir",
                                           clip_id=item["clip_id"], origin=item["origin"])])
        src = Path(item["local_file"])
    else:
        try:
            src = downloaded = download_video(url_template.format(videoid=videoid), Path(out_dir) / "downloads",
                                              videoid, options=download)
        except DownloadFailed as exc:
            return Outcome(rejects=[reject(STAGE, f"[{exc.kind}] {exc}", clip_id=item["clip_id"],
                                           origin=item["origin"])])
    try:
        done, trimmed = convert_clip(src, Path(out_dir) / "clips" / f"{item['clip_id']}.mp4",
                                     end_time=item.get("listed_duration"), max_side=max_side)
    finally:
        if downloaded is not None and not keep_downloads:
            downloaded.unlink(missing_ok=True)
    if done.truncated:
        log.warning("%s: %s is %s; kept what decodes", STAGE, item["clip_id"], done.cut_off)
    return Outcome(rows=[{**{k: v for k, v in item.items() if k != "videoid"}, "video_path": str(done.path),
                          "advert_trimmed": trimmed, **done.manifest_fields()}])


def movie_inputs(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stage inputs: metadata records with the manifest's id, source and (YouTube) origin."""
    return [{"clip_id": f"cmd-{safe_remote_id(r['videoid'])}", "source": "movie",
             "origin": WATCH_URL.format(videoid=r["videoid"]), **r} for r in records]


def forget_retriable_rejects(out_dir: Union[str, os.PathLike]) -> int:
    """Drop from ``out_dir``'s rejects those `--retry-rejects` tries again (all but `PERMANENT_FAILURES`, and
    rejects of inputs that produced a row stay); return how many were dropped."""
    rejects = read_rejects(out_dir)
    produced = {r.get("input_id") for r in read_manifest(out_dir)}
    kept = [r for r in rejects if r.get("input_id") in produced or failure_of(r) in PERMANENT_FAILURES]
    if len(kept) < len(rejects):
        write_rejects(out_dir, kept)
    log.info("%s: retrying %d rejected clip(s); %d stay rejected (removed, private or geo-blocked videos)", STAGE,
             len(rejects) - len(kept), len(kept))
    return len(rejects) - len(kept)


def run_fetch_movies(metadata: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *,
                     from_dir: Optional[Union[str, os.PathLike]] = None, limit: Optional[int] = None,
                     workers: int = 1, url_template: str = WATCH_URL, max_side: Optional[int] = None,
                     keep_downloads: bool = False, retry_rejects: bool = False,
                     download: Optional[DownloadOptions] = None, progress: bool = True) -> StageSummary:
    """Fetch every CMD clip (the first ``limit`` in story order) not yet in ``out_dir``'s manifest or rejects.

    Downloads use ``download``'s settings, each unset one from its ``EMOVID_YTDLP_*`` variable.
    ``retry_rejects`` tries again the rejects that are not removed, private or geo-blocked videos.
    """
    records = read_metadata(metadata)[:limit] if limit is not None else read_metadata(metadata)
    inputs = movie_inputs(records)
    if from_dir is not None:
        if not Path(from_dir).is_dir():
            raise FileNotFoundError(f"{from_dir}: --from-dir is not a folder")
        local_files = index_video_folder(from_dir)
        log.info("%s: %d videos found under %s", STAGE, len(local_files), from_dir)
        for item in inputs:
            found = local_files.get(item["videoid"])
            item["local_file"] = str(found) if found else None
        download = None
    else:
        _import_yt_dlp()  # fail once, clearly, rather than once per clip
        download = DownloadOptions.from_env(download)
        download.ydl_params()  # and so does a bad cookies file or rate limit
    if retry_rejects and Path(out_dir).is_dir():
        forget_retriable_rejects(out_dir)
    work = FunctionStage(STAGE, functools.partial(fetch_clip, out_dir=str(out_dir), download=download,
                                                  url_template=url_template, max_side=max_side,
                                                  keep_downloads=keep_downloads))
    return run_stage(work, inputs, out_dir, workers=workers, progress=progress)


def _command(args: argparse.Namespace) -> int:
    try:
        summary = run_fetch_movies(args.metadata, args.out, from_dir=args.from_dir, limit=args.limit,
                                   workers=args.workers, url_template=args.url_template, max_side=args.max_side,
                                   keep_downloads=args.keep_downloads, retry_rejects=args.retry_rejects,
                                   download=dataclass_from_args(DownloadOptions, args))
    except (ImportError, SettingError) as exc:
        log.error("%s", exc)
        return 2
    return exit_status(summary)


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser(STAGE, help="Condensed Movies clips in story order: download with yt-dlp or ingest")
    p.add_argument("--metadata", required=True, help="CMD metadata folder (clips.csv, durations.csv, ...)")
    p.add_argument("--out", required=True, help="output stage folder")
    p.add_argument("--from-dir", help="folder of already-downloaded videos named <youtube id>.<ext> (no download)")
    p.add_argument("--limit", type=int, help="only the first N clips in story order")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--url-template", default=WATCH_URL,
                   help="download URL with {videoid} (a mirror); origin keeps the YouTube URL")
    p.add_argument("--max-side", type=int, help="downscale so the longer side is at most this many pixels")
    p.add_argument("--keep-downloads", action="store_true", help="keep yt-dlp's files in OUT/downloads")
    p.add_argument("--retry-rejects", action="store_true",
                   help="try again the clips an earlier run rejected, except removed, private and geo-blocked videos")
    names = [f.name for f in fields(DownloadOptions)]
    for name in names:  # one at a time, so each help names its own variable
        add_dataclass_arguments(p, DownloadOptions, skip=tuple(n for n in names if n != name),
                                fallback=f"${ENV_PREFIX}{name.upper()}")
    add_engine_arguments(p)
    p.set_defaults(func=with_engine(_command))
