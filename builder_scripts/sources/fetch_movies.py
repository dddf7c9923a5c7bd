"""Stage `fetch-movies`: Condensed Movies clips in story order, downloaded with yt-dlp or ingested from a folder.

Reads the CMD metadata (``clips.csv`` and friends), groups clips by the clean key
(imdbid, title, upload_year, clip_tot) so films sharing an imdbid stay apart, orders each
group by ``clip_idx``, and turns every clip into an MP4 trimmed of the MovieClips advert tail
that ``durations.csv`` leaves out. One manifest row per ~2-minute clip; `segment` cuts them later.
"""

from __future__ import annotations

import argparse
import ast
import csv
import functools
import hashlib
import logging
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from builder_scripts.engine.executors import add_engine_arguments, with_engine
from builder_scripts.engine.manifest import reject
from builder_scripts.engine.runner import StageSummary, exit_status, run_stage
from builder_scripts.engine.stage import FunctionStage, Outcome
from emovid_datasets.media import MediaError, probe, to_mp4
from emovid_datasets.media.files import VIDEO_SUFFIXES, safe_remote_id, scan_media

log = logging.getLogger("emovid.build")

STAGE = "fetch-movies"


@dataclass(frozen=True)
class FetchOptions:
    """A pipeline source's ``fetch:`` keys: the metadata CSV, a local folder instead of downloads, limits."""

    metadata: str
    from_dir: Optional[str] = None
    limit: Optional[int] = None
    max_side: Optional[int] = None
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
    """Route yt-dlp's messages to our logger at debug level (failures come back as the DownloadError)."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    info = warning = error = debug


def _import_yt_dlp():
    try:
        import yt_dlp
    except ImportError as exc:
        raise ImportError("fetch-movies needs yt-dlp to download clips: pip install 'emovid-datasets[building]' "
                          "(or pass --from-dir with videos you already have)") from exc
    return yt_dlp


def download_video(url: str, dest_dir: Union[str, os.PathLike], name: str, *, socket_timeout: float = 30,
                   retries: int = 3) -> Path:
    """Download ``url`` with yt-dlp (<= 360p, merged into MKV when ffmpeg is there) to ``dest_dir/name.EXT``."""
    yt_dlp = _import_yt_dlp()
    from yt_dlp.postprocessor import FFmpegMergerPP

    options = {
        "outtmpl": {"default": str(Path(dest_dir) / f"{name}.%(ext)s")},
        "merge_output_format": "mkv", "noplaylist": True, "quiet": True, "no_warnings": True,
        "noprogress": True, "retries": retries, "socket_timeout": socket_timeout, "logger": _YtDlpLogger(),
    }
    with yt_dlp.YoutubeDL(options) as ydl:
        ydl.params["format"] = FORMAT_MERGED if FFmpegMergerPP(ydl).available else FORMAT_SINGLE
        try:
            info = ydl.extract_info(url, download=True)
        except yt_dlp.utils.DownloadError as exc:
            raise MediaError(f"{url}: download failed ({str(exc).removeprefix('ERROR: ')})") from exc
    files = [Path(d["filepath"]) for d in info.get("requested_downloads") or [] if d.get("filepath")]
    if not files or not files[0].is_file():
        raise MediaError(f"{url}: yt-dlp reported no downloaded file")
    return files[0]


def convert_clip(src: Union[str, os.PathLike], dst: Union[str, os.PathLike], *, end_time: Optional[float] = None,
                 max_side: Optional[int] = None, tolerance: float = TRIM_TOLERANCE) -> tuple[Path, bool]:
    """MP4 of ``src``, cut at ``end_time`` seconds when the file runs longer (the advert tail); returns (path, trimmed)."""
    src, dst = Path(src), Path(dst)
    duration = probe(src).duration  # decodes one frame: an unusable file fails here with its reason
    if end_time is None or end_time <= 0 or duration <= end_time + tolerance:
        return to_mp4(src, dst, max_side=max_side), False
    return to_mp4(src, dst, max_side=max_side, end_time=float(end_time)), True


def fetch_clip(item: dict[str, Any], *, out_dir: str, download: bool = True, url_template: str = WATCH_URL,
               max_side: Optional[int] = None, keep_downloads: bool = False) -> Outcome:
    """Get one clip's video (its ``local_file`` or a yt-dlp download), convert and trim it; return its row."""
    videoid = item["videoid"]
    downloaded: Optional[Path] = None
    if not download:
        if not item.get("local_file"):
            return Outcome(rejects=[reject(STAGE, f"no video file named {videoid}.* in --from-dir",
                                           clip_id=item["clip_id"], origin=item["origin"])])
        src = Path(item["local_file"])
    else:
        src = downloaded = download_video(url_template.format(videoid=videoid), Path(out_dir) / "downloads", videoid)
    try:
        path, trimmed = convert_clip(src, Path(out_dir) / "clips" / f"{item['clip_id']}.mp4",
                                     end_time=item.get("listed_duration"), max_side=max_side)
    finally:
        if downloaded is not None and not keep_downloads:
            downloaded.unlink(missing_ok=True)
    return Outcome(rows=[{**{k: v for k, v in item.items() if k != "videoid"}, "video_path": str(path),
                          "advert_trimmed": trimmed}])


def movie_inputs(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stage inputs: metadata records with the manifest's id, source and (YouTube) origin."""
    return [{"clip_id": f"cmd-{safe_remote_id(r['videoid'])}", "source": "movie",
             "origin": WATCH_URL.format(videoid=r["videoid"]), **r} for r in records]


def run_fetch_movies(metadata: Union[str, os.PathLike], out_dir: Union[str, os.PathLike], *,
                     from_dir: Optional[Union[str, os.PathLike]] = None, limit: Optional[int] = None,
                     workers: int = 1, url_template: str = WATCH_URL, max_side: Optional[int] = None,
                     keep_downloads: bool = False, retry_rejects: bool = False,
                     progress: bool = True) -> StageSummary:
    """Fetch every CMD clip (the first ``limit`` in story order) not yet in ``out_dir``'s manifest or rejects."""
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
    else:
        _import_yt_dlp()  # fail once, clearly, rather than once per clip
    work = FunctionStage(STAGE, functools.partial(fetch_clip, out_dir=str(out_dir), download=from_dir is None, url_template=url_template,
                             max_side=max_side, keep_downloads=keep_downloads))
    return run_stage(work, inputs, out_dir, workers=workers, retry_rejects=retry_rejects,
                     progress=progress)


def _command(args: argparse.Namespace) -> int:
    try:
        summary = run_fetch_movies(args.metadata, args.out, from_dir=args.from_dir, limit=args.limit, workers=args.workers,
                         url_template=args.url_template, max_side=args.max_side,
                         keep_downloads=args.keep_downloads, retry_rejects=args.retry_rejects)
    except ImportError as exc:
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
    p.add_argument("--retry-rejects", action="store_true", help="try again the clips rejected by an earlier run")
    add_engine_arguments(p)
    p.set_defaults(func=with_engine(_command))
