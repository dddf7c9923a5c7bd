"""Stage `rehydrate`: rebuild the media of a metadata-only release from each row's origin and timestamps.

`emovid-build rehydrate DATASET_OR_METADATA --out DIR` reads the `metadata` config (a dataset folder, a
Hub repo id or its Parquet files), finds each clip's source (a local `--from-dir SOURCE=FOLDER`; movies
by YouTube URL or a `--download-url` mirror with the fetch-movies machinery; stickers by id from a
Tenor-compatible `--tenor-endpoint`), cuts ``start_time``-``end_time`` out of it frame-accurately, checks
the cut against the row's frame count and duration, and builds a normal dataset folder with the same
clip ids, labels and captions. Downloads, clips and the stage's manifest and rejects live in the work
folder (default ``DIR.work``), so a re-run resumes; a row whose source cannot be had is rejected with
its reason and the rest goes on.
"""

from __future__ import annotations

import argparse
import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import parse_qs, urlsplit

import datasets

from builder_scripts.engine.executors import add_engine_arguments, with_engine
from builder_scripts.engine.runner import StageSummary, exit_status, run_stage
from builder_scripts.engine.stage import FunctionStage
from builder_scripts.publish.build import build_dataset
from emovid_datasets.atomic import atomic_write_bytes
from emovid_datasets.builder import read_table_file
from emovid_datasets.media import MediaError, convert, probe
from emovid_datasets.media.files import safe_remote_id, scan_media
from emovid_datasets.media.probe import PROBE_COLUMNS
from emovid_datasets.schema import METADATA_CONFIG, METADATA_FEATURES
from emovid_datasets.taxonomy import SOURCES

log = logging.getLogger("emovid.build")

STAGE = "rehydrate"


def origin_key(origin: str) -> str:
    """The id a row's source is found by: a YouTube URL's ``v``, the id ending a Tenor view URL, the part
    after ``tenor:``, else the last path component's stem (``demo:film/film-00`` -> ``film-00``)."""
    text = str(origin or "").strip()
    parts = urlsplit(text)
    if parts.scheme in ("http", "https"):
        video_id = parse_qs(parts.query).get("v")
        if video_id:
            return video_id[0]
        last = parts.path.rstrip("/").rsplit("/", 1)[-1]
        return last.rsplit("-", 1)[-1] if parts.netloc.endswith("tenor.com") else Path(last).stem
    if text.startswith("tenor:"):
        return text.removeprefix("tenor:")
    return Path(text.split(":", 1)[-1]).stem


@dataclass(frozen=True)
class SourceAccess:
    """Where rehydrate finds each source's raw media (nothing secret: the Tenor key comes from the environment)."""

    from_dirs: dict[str, str] = field(default_factory=dict)  # source -> local folder, looked up by `origin_key`
    tenor_endpoint: Optional[str] = None
    download_url: Optional[str] = None  # movies: a mirror with {videoid}; default the origin (YouTube) URL


@functools.lru_cache(maxsize=None)
def _folder_index(folder: str) -> dict[str, Path]:
    """File stem -> media file under ``folder`` (recursive, first in sorted order wins)."""
    found: dict[str, Path] = {}
    for rel in scan_media(folder):
        found.setdefault(rel.stem, Path(folder) / rel)
    return found


def _download_sticker(key: str, endpoint: str, dest: Path) -> Path:
    """The sticker ``key`` from a Tenor-compatible service's `/posts`, as its MP4 (else GIF) rendition."""
    from builder_scripts.sources.crawl_stickers import client_from_env
    from builder_scripts.sources.tenor import download_media, pick_media

    result = client_from_env(endpoint=endpoint, media_format="mp4").post(key)
    picked = pick_media(result, "mp4") or pick_media(result, "gif")
    if picked is None:
        raise MediaError(f"sticker {key}: the service lists no mp4 or gif rendition")
    name, media = picked
    suffix = ".gif" if "gif" in name else ".mp4"
    return atomic_write_bytes(dest.with_suffix(suffix), download_media(media["url"], expected_size=media.get("size")))


def locate_source(row: dict[str, Any], access: SourceAccess, cache: Path) -> Path:
    """The raw media file of ``row``: from a local folder, else downloaded once into ``cache``."""
    source, key = row["source"], origin_key(row.get("origin") or "")
    if not key:
        raise MediaError(f"{row['clip_id']}: the row has no origin to rehydrate from")
    if source in access.from_dirs:
        found = _folder_index(access.from_dirs[source]).get(key)
        if found is None:
            raise MediaError(f"{row['clip_id']}: no file named {key}.* under {access.from_dirs[source]} "
                             f"(origin {row.get('origin')})")
        return found
    name = safe_remote_id(key)
    done = sorted((cache / source).glob(f"{name}.*")) if (cache / source).is_dir() else []
    if done:
        return done[0]
    if source == "sticker" and access.tenor_endpoint:
        return _download_sticker(key, access.tenor_endpoint, cache / source / name)
    if source == "movie":
        from builder_scripts.sources.fetch_movies import DownloadOptions, download_video

        url = access.download_url.format(videoid=key) if access.download_url else row["origin"]
        return download_video(url, cache / source, name, options=DownloadOptions.from_env())
    raise MediaError(f"{row['clip_id']}: no way to fetch a {source} source (origin {row.get('origin')}); "
                     f"pass --from-dir {source}=FOLDER" + (" or --tenor-endpoint" if source == "sticker" else ""))


def rehydrate_clip(row: dict[str, Any], *, work: str, access: SourceAccess) -> dict[str, Any]:
    """Cut one row's clip from its source and return its build-manifest row (the release's own values, with
    the probe columns measured again on the new file); MediaError when the cut does not match the row."""
    work_dir = Path(work)
    src = locate_source(row, access, work_dir / "sources")
    start, end = float(row["start_time"] or 0.0), float(row["end_time"])
    side = max(int(row["width"]), int(row["height"]))
    clip = convert(src, work_dir / "clips" / f"{row['clip_id']}.mp4", fps=float(row["fps"]), max_side=side,
                   start_time=start, end_time=end, keep_audio=bool(row.get("has_audio"))).path
    info = probe(clip)
    frame = 1.0 / float(row["fps"])
    if abs(info.num_frames - int(row["num_frames"])) > 1 or abs(info.duration - float(row["duration"])) > 1.001 * frame:
        raise MediaError(f"{row['clip_id']}: the cut from {src.name} has {info.num_frames} frames, "
                         f"{info.duration:.3f} s; the release has {row['num_frames']} frames, {row['duration']:.3f} s "
                         f"(a different source file?)")
    return {**{k: v for k, v in row.items() if k not in PROBE_COLUMNS}, "video_path": str(clip)}


def release_rows(release: Union[str, Path]) -> list[dict[str, Any]]:
    """The metadata rows of a release (a dataset folder or Hub id, or a Parquet/CSV/JSONL file of them), with
    class labels as names and each row's split."""
    if Path(release).is_file():
        rows = read_table_file(release)
    else:
        from emovid_datasets.loading import load_emovid

        dsd = load_emovid(str(release), METADATA_CONFIG)
        rows = [dict(r, split=split) for split, ds in dsd.items() for r in ds]
    for row in rows:
        for name, feature in METADATA_FEATURES.items():
            if isinstance(feature, datasets.ClassLabel) and isinstance(row.get(name), int):
                row[name] = feature.int2str(row[name])
    return rows


def rehydrate(release: Union[str, Path], out_dir: Union[str, Path], *, access: SourceAccess = SourceAccess(),
              work_dir: Optional[Union[str, Path]] = None, workers: int = 1, retry_rejects: bool = False,
              progress: bool = True) -> StageSummary:
    """Cut every release row's clip from its source into ``work_dir`` and build the dataset folder ``out_dir``."""
    unknown = set(access.from_dirs) - set(SOURCES)
    if unknown:
        raise ValueError(f"--from-dir names unknown sources {sorted(unknown)}; expected {', '.join(SOURCES)}")
    out_dir = Path(out_dir)
    work = Path(work_dir) if work_dir else out_dir.with_name(out_dir.name + ".work")
    rows = release_rows(release)
    log.info("%s: %d clips in %s", STAGE, len(rows), release)
    stage = FunctionStage(STAGE, functools.partial(rehydrate_clip, work=str(work), access=access))
    summary = run_stage(stage, rows, work, workers=workers, retry_rejects=retry_rejects, progress=progress)
    if summary.rows:
        build_dataset(work, out_dir, progress=progress)
    return summary


def _from_dir(text: str) -> tuple[str, str]:
    source, sep, folder = text.partition("=")
    if not sep or not folder:
        raise argparse.ArgumentTypeError(f"expected SOURCE=FOLDER, got {text!r}")
    return source, folder


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser("rehydrate", help="rebuild a metadata-only release's media from its sources")
    p.add_argument("release", help="dataset folder, Hub repo id, or a Parquet/CSV/JSONL file of metadata rows")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--work", help="downloads, cut clips, manifest and rejects (default OUT.work); re-run to resume")
    p.add_argument("--from-dir", action="append", type=_from_dir, default=[], metavar="SOURCE=FOLDER",
                   help="local raw media of a source, files named by the origin's id (e.g. animation=raw/animation)")
    p.add_argument("--tenor-endpoint", help="Tenor-compatible API for stickers by id (key from $TENOR_API_KEY)")
    p.add_argument("--download-url", help="movies: download URL with {videoid} (a mirror); default the origin URL")
    p.add_argument("--workers", type=int, default=1, help="parallel processes")
    p.add_argument("--retry-rejects", action="store_true", help="try rows rejected by an earlier run again")
    add_engine_arguments(p)

    def run(args: argparse.Namespace) -> int:
        access = SourceAccess(from_dirs=dict(args.from_dir), tenor_endpoint=args.tenor_endpoint,
                              download_url=args.download_url)
        return exit_status(rehydrate(args.release, args.out, access=access, work_dir=args.work,
                                     workers=args.workers, retry_rejects=args.retry_rejects))

    p.set_defaults(func=with_engine(run))
