"""Build manifest -> Parquet shards + card -> load_dataset (local and streaming)."""

import hashlib
import shutil

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from factory import make_manifest, make_video

from builder_scripts.engine.manifest import read_rejects
from builder_scripts.publish.build import build_dataset
from emovid_datasets import FEATURES, load_emovid
from emovid_datasets.export import SHARD_NAME, parse_size, shard_count
from emovid_datasets.media import decode_audio
from emovid_datasets.schema import METADATA_FEATURES


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("emovid")
    manifest = make_manifest(root / "raw", per_cell=2, benchmark_per_cell=1)
    rows = pq.read_table(manifest).to_pylist()
    broken = root / "raw" / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    rows.append(dict(rows[0], clip_id="sticker-broken", video_path=str(broken), origin="test:broken"))
    pq.write_table(pa.Table.from_pylist(rows), manifest)
    build_dataset(manifest, root / "dataset", min_shards=3)
    return root, manifest


def test_parse_size_and_shard_count():
    assert parse_size("500MB") == 500_000_000
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size(123) == 123
    assert shard_count(num_rows=100, num_bytes=2_600, max_shard_bytes=1_000, min_shards=1) == 3
    assert shard_count(num_rows=100, num_bytes=10, max_shard_bytes=1_000, min_shards=8) == 8
    assert shard_count(num_rows=5, num_bytes=10, max_shard_bytes=1_000, min_shards=8) == 5
    assert shard_count(num_rows=0, num_bytes=0, max_shard_bytes=1_000, min_shards=8) == 0


def test_layout_and_shard_names(built):
    root, _ = built
    data = root / "dataset" / "data"
    assert sorted(p.name for p in data.iterdir()) == ["animation", "metadata", "movie", "sticker"]
    train = sorted((data / "sticker").glob("train-*.parquet"))
    assert [p.name for p in train] == [f"train-{i:05d}-of-00003.parquet" for i in range(3)]
    assert all(SHARD_NAME.match(p.name) for p in data.rglob("*.parquet"))
    assert not list((root / "dataset").rglob("*.py"))
    assert sum(pq.read_metadata(p).num_rows for p in train) == 16
    assert load_emovid(str(root / "dataset"), "default", split="train", decode_media=False).num_rows == 48


def _media_rows(data):
    """(clip_id, video bytes, audio bytes) of every row stored with media anywhere under ``data``."""
    out = []
    for shard in sorted(data.rglob("*.parquet")):
        table = pq.read_table(shard)
        if "video" in table.column_names:
            for row in table.select(["clip_id", "video", "audio"]).to_pylist():
                out.append((row["clip_id"], row["video"]["bytes"], (row["audio"] or {}).get("bytes") or b""))
    return out


def test_each_clip_is_stored_once_across_configs(built):
    root, _ = built
    ids = [clip_id for clip_id, _, _ in _media_rows(root / "dataset" / "data")]
    assert len(ids) == len(set(ids)) == 72  # every built clip, each once


def test_the_shards_hold_little_beyond_the_unique_media(tmp_path, built):
    # clips of a realistic size (noise does not compress), so Parquet's fixed cost per file is not what is measured
    _, manifest = built
    rng = np.random.default_rng(0)
    rows = pq.read_table(manifest).to_pylist()[::8]
    for row in rows:
        row["video_path"] = str(make_video(tmp_path / f"{row['clip_id']}.mp4", frames=24, size=(160, 120),
                                           color=lambda i: rng.integers(0, 256, (120, 160, 3), dtype=np.uint8),
                                           audio=row["source"] != "sticker"))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    build_dataset(tmp_path / "manifest.parquet", tmp_path / "ds", min_shards=2, evaluator=False, progress=False)
    stored = _media_rows(tmp_path / "ds" / "data")
    assert sorted(c for c, _, _ in stored) == sorted(r["clip_id"] for r in rows)
    media = sum(len(v) + len(a) for _, v, a in stored)
    shards = sum(p.stat().st_size for p in (tmp_path / "ds" / "data").rglob("*.parquet"))
    assert shards <= 1.1 * media


def test_the_default_config_lists_every_sources_shards(built):
    root, _ = built
    card = yaml.safe_load((root / "dataset" / "README.md").read_text().split("---")[1])
    default = next(c for c in card["configs"] if c["config_name"] == "default")
    assert default["default"] is True
    assert {f["split"]: f["path"] for f in default["data_files"]} == {
        split: [f"data/{source}/{split}-*" for source in ("animation", "movie", "sticker")]
        for split in ("train", "benchmark")}
    streamed = load_emovid(str(root / "dataset"), split="benchmark", streaming=True, decode_media=False)
    assert sorted(r["clip_id"] for r in streamed) == sorted(
        load_emovid(str(root / "dataset"), "default", split="benchmark", decode_media=False)["clip_id"])


def test_the_metadata_config_has_every_column_but_the_media(built):
    root, _ = built
    meta = load_emovid(str(root / "dataset"), "metadata")
    full = load_emovid(str(root / "dataset"), "default", decode_media=False)
    assert set(meta) == {"train", "benchmark"}
    for split in meta:
        assert meta[split].features == METADATA_FEATURES
        assert meta[split].column_names == [c for c in FEATURES if c not in ("video", "audio")]
        assert sorted(meta[split].to_list(), key=lambda r: r["clip_id"]) == sorted(
            full[split].remove_columns(["video", "audio"]).to_list(), key=lambda r: r["clip_id"])
    files = sorted((root / "dataset" / "data" / "metadata").glob("*.parquet"))
    assert len(files) == 2 and sum(f.stat().st_size for f in files) < 100_000


def test_byte_target_splits_shards(tmp_path, built):
    _, manifest = built
    small = build_dataset(manifest, tmp_path / "ds", max_shard_size="20KB", min_shards=1)
    paths = small.shards[("sticker", "train")]
    assert len(paths) > 1
    assert sum(pq.read_metadata(p).num_rows for p in paths) == 16


def test_features_round_trip(built):
    root, _ = built
    dsd = load_emovid(str(root / "dataset"), "default")
    assert set(dsd) == {"train", "benchmark"}
    assert dsd["train"].features == FEATURES
    assert dsd["train"].features["emotion"].names[:2] == ["amusement", "awe"]
    movie = load_emovid(str(root / "dataset"), "movie", split="benchmark", decode_media=False)
    assert len(movie) == 8 and set(movie["source"]) == {FEATURES["source"].str2int("movie")}
    row = movie[0]
    assert row["video"]["bytes"][4:8] == b"ftyp" and row["audio"]["bytes"][4:8] == b"ftyp"  # M4A
    assert row["audio"]["path"] == f"{row['clip_id']}.m4a"
    assert row["valence"] == FEATURES["valence"].str2int("positive" if row["emotion"] < 4 else "negative")
    # probed by the builder from the factory's 12-frame, 12 fps, 64x48 clips
    assert (row["width"], row["height"], row["num_frames"]) == (64, 48, 12)
    assert row["fps"] == pytest.approx(12) and row["duration"] == pytest.approx(1.0, abs=0.01)
    assert row["start_time"] == 0 and row["end_time"] == pytest.approx(row["duration"])
    assert row["label_confidence"] == pytest.approx(2 / 3) and row["human_votes"] == [
        FEATURES["emotion"].int2str(row["emotion"])] * 2 + ["none"]


def test_datasets_own_decoding_gives_torchcodec_decoders(built, torchcodec_decoding):
    """What a plain `load_dataset` user gets: torchcodec decoders over the embedded MP4 and M4A."""
    root, _ = built
    row = load_emovid(str(root / "dataset"), "movie", split="train")[0]
    video, audio = row["video"], row["audio"]
    assert video.metadata.num_frames == 12 and video.metadata.average_fps == pytest.approx(12)
    frames = video.get_frames_in_range(start=0, stop=12).data
    assert tuple(frames.shape) == (12, 3, 48, 64)
    samples = audio.get_all_samples()
    assert samples.sample_rate == 16000 and samples.data.shape[-1] == pytest.approx(16000, abs=1024)
    assert samples.data.abs().max() > 0.1  # the factory's 440 Hz tone
    # the very samples the clip's MP4 plays (PyAV over the video bytes, an independent decode path)
    raw = load_emovid(str(root / "dataset"), "movie", split="train", decode_media=False)[0]
    expected = decode_audio(raw["video"]["bytes"], sample_rate=16000)
    assert samples.data.shape == expected.shape
    assert np.allclose(samples.data.numpy(), expected, atol=1e-6)
    streamed = next(iter(load_emovid(str(root / "dataset"), "movie", split="train", streaming=True)))
    assert streamed["video"].metadata.num_frames == 12


def test_streaming_restores_features(built):
    root, _ = built
    it = load_emovid(str(root / "dataset"), "sticker", split="train", streaming=True)
    assert it.features == FEATURES
    assert it.num_shards == 3
    rows = list(it.decode(False))
    assert len(rows) == 16 and all(r["audio"] is None and not r["has_audio"] for r in rows)
    assert len({r["clip_id"] for r in rows}) == 16


def test_corrupt_clip_is_rejected_and_the_build_goes_on(built):
    root, _ = built
    rejects = read_rejects(root / "dataset" / "_build")
    assert [r["clip_id"] for r in rejects] == ["sticker-broken"]
    assert "broken.mp4" in rejects[0]["reason"] and rejects[0]["stage"] == "build"
    ids = load_emovid(str(root / "dataset"), "default", split="train", decode_media=False)["clip_id"]
    assert "sticker-broken" not in ids and len(ids) == 48


def test_card_is_generated_from_measurements(built):
    root, _ = built
    card = (root / "dataset" / "README.md").read_text()
    assert "This build holds **72 clips**" in card
    assert "| sticker | 24 |" in card
    assert "| `emotion` | ClassLabel [amusement, awe, contentment, excitement, anger, disgust, fear, sadness] |" in card


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_rebuild_is_deterministic_and_removes_stale_shards(tmp_path, built):
    root, manifest = built
    copy = tmp_path / "again"
    shutil.copytree(root / "dataset", copy)
    stale = copy / "data" / "default" / "train-00007-of-00009.parquet"  # the old layout's copy of every clip
    stale.parent.mkdir()
    stale.write_bytes(b"old shard")
    killed = tmp_path / ".again.building" / "data" / "sticker" / "train-00000-of-00003.parquet"  # a killed build's
    killed.parent.mkdir(parents=True)
    killed.write_bytes(b"half a shard")
    (copy / ".git").mkdir()  # not the build's: kept
    build_dataset(manifest, copy, min_shards=3)
    assert not stale.parent.exists() and not killed.exists() and (copy / ".git").is_dir()
    (copy / ".git").rmdir()
    assert _digests(copy / "data") == _digests(root / "dataset" / "data")
    assert (copy / "README.md").read_text() == (root / "dataset" / "README.md").read_text()
    before = load_emovid(str(copy), "default", split="train", decode_media=False).num_rows  # cached now

    # a rebuild in place with the same card (a caption fixed) is not served from the earlier build's cache,
    # which `datasets` alone would do: it keys a local folder's cache on its name and card
    fixed = [dict(r, caption="A corrected caption.") if r["clip_id"] == "movie-fear-00" else r
             for r in pq.read_table(manifest).to_pylist()]
    pq.write_table(pa.Table.from_pylist(fixed), tmp_path / "fixed.parquet")
    build_dataset(tmp_path / "fixed.parquet", copy, min_shards=3)
    assert (copy / "README.md").read_text() == (root / "dataset" / "README.md").read_text()
    reloaded = load_emovid(str(copy), "default", split="train", decode_media=False)
    assert reloaded[reloaded["clip_id"].index("movie-fear-00")]["caption"] == "A corrected caption."

    # a rebuild without a benchmark split (or without a source) leaves none of its old shards behind
    rows = [dict(r, split="train") for r in pq.read_table(manifest).to_pylist() if r["source"] == "sticker"]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifest.parquet")
    build_dataset(tmp_path / "manifest.parquet", copy, min_shards=3)
    assert not list((copy / "data").glob("*/benchmark-*.parquet"))
    assert sorted(p.name for p in (copy / "data").iterdir()) == ["metadata", "sticker"]
    after = load_emovid(str(copy), "default", split="train", decode_media=False).num_rows
    assert after == len(rows) < before


def test_local_path_origin_is_rejected(tmp_path, built):
    _, manifest = built
    rows = pq.read_table(manifest).to_pylist()[:2]
    rows[1]["origin"] = "/home/me/videos/clip.mp4"
    bad = tmp_path / "m.parquet"
    pq.write_table(pa.Table.from_pylist(rows), bad)
    result = build_dataset(bad, tmp_path / "ds", min_shards=1)
    assert [r["clip_id"] for r in result.rejects] == [rows[1]["clip_id"]]
    assert "local path" in result.rejects[0]["reason"]
    assert isinstance(result.dataset["train"], datasets.Dataset)


def test_without_media_decoding_on_every_split(built):
    root, _ = built
    dsd = load_emovid(str(root / "dataset"), "animation", decode_media=False)
    assert all(ds.features["video"].decode is False for ds in dsd.values())
    assert dsd["benchmark"][0]["video"]["bytes"][4:8] == b"ftyp"


def test_two_folders_with_the_same_name_do_not_share_a_cache(tmp_path, built):
    root, manifest = built
    rows = pq.read_table(manifest).to_pylist()
    few = tmp_path / "few.parquet"
    # Every config and split again, with fewer clips: the same folder name and the same card YAML.
    pq.write_table(pa.Table.from_pylist([r for r in rows if not r["clip_id"].endswith("-01")]), few)
    other = tmp_path / "elsewhere" / "dataset"
    build_dataset(few, other, min_shards=3)
    assert (other / "README.md").read_text().split("---")[1] == (root / "dataset" / "README.md").read_text().split("---")[1]
    assert len(load_emovid(str(root / "dataset"), "default", split="train")) == 48
    assert len(load_emovid(str(other), "default", split="train")) == 24


def test_build_and_inspect_commands(tmp_path, built, capsys):
    from builder_scripts.cli import main as build_main
    from emovid_datasets.cli import main as user_main

    _, manifest = built
    assert build_main(["build", str(manifest), "--out", str(tmp_path / "ds"), "--min-shards", "2"]) == 0
    assert user_main(["inspect", str(tmp_path / "ds"), "--config", "movie", "--rows", "1"]) == 0
    out = capsys.readouterr().out
    assert "train: 16 clips" in out and "benchmark: 8 clips" in out and "audio yes" in out
    assert build_main(["build", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "x")]) == 2


def test_an_unparsable_manifest_is_named(tmp_path):
    from emovid_datasets.builder import read_table_file

    bad = tmp_path / "clips.csv"
    bad.write_text("clip_id,video_path\na,b\nc\n")
    with pytest.raises(ValueError, match=r"clips\.csv: cannot read it as a csv manifest"):
        read_table_file(bad)
    lines = tmp_path / "clips.jsonl"
    lines.write_text('{"clip_id": "a"}\n{"clip_id": \n')
    with pytest.raises(ValueError, match=r"clips\.jsonl: cannot read it as a jsonl manifest"):
        read_table_file(lines)


def test_the_build_cache_stays_in_the_output_and_a_killed_builds_leftover_is_removed(tmp_path, monkeypatch):
    import tempfile

    from emovid_datasets.export import BUILD_DIR, CACHE_NAME

    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    out = tmp_path / "dataset"
    # what a SIGKILLed build leaves: its half-written folder beside the output, with the Arrow cache inside
    leftover = tmp_path / ".dataset.building" / BUILD_DIR / CACHE_NAME / "default" / "half-written.arrow"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"\0" * 4096)
    build_dataset(make_manifest(tmp_path / "src"), out, min_shards=1, evaluator=False, progress=False)
    assert not (out / BUILD_DIR / CACHE_NAME).exists() and not leftover.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "src", "system-tmp"]
    assert not [p for p in system_tmp.rglob("*") if p.suffix == ".arrow" or p.name.startswith("emovid-build-")]
    assert load_emovid(str(out), "default", decode_media=False)["train"].num_rows > 0


def test_the_build_shows_one_bar_over_shards_and_none_of_the_datasets_bars(tmp_path, capsys, monkeypatch):
    import sys

    from datasets.utils import logging as ds_logging

    # As a user's shell has them: the tests turn them off with an environment variable, which has priority.
    monkeypatch.setattr(sys.modules[ds_logging.enable_progress_bar.__module__], "HF_DATASETS_DISABLE_PROGRESS_BARS",
                        None)
    ds_logging.enable_progress_bar()
    try:
        build_dataset(make_manifest(tmp_path / "src"), tmp_path / "out", min_shards=1, evaluator=False, progress=True)
        assert ds_logging.is_progress_bar_enabled()  # restored afterwards
    finally:
        ds_logging.disable_progress_bar()
    err = capsys.readouterr().err
    assert "build shards" in err
    assert "Creating parquet" not in err and "Filter" not in err and "Generating" not in err


KILLED_REBUILD = """
import os, signal, sys
from builder_scripts.publish import build

def die(*args, **kwargs):  # the shards of the new build are written; SIGKILL before the card and the swap
    os.kill(os.getpid(), signal.SIGKILL)

build.write_card = die
build.build_dataset(sys.argv[1], sys.argv[2], min_shards=3, evaluator=False, progress=False)
"""


def test_a_killed_rebuild_leaves_the_previous_build_whole(tmp_path, built):
    import os
    import subprocess
    import sys

    root, manifest = built
    out = tmp_path / "dataset"
    shutil.copytree(root / "dataset", out)
    before = _digests(out)
    rows = pq.read_table(manifest).to_pylist()
    pq.write_table(pa.Table.from_pylist([dict(r, caption="Rewritten.") for r in rows]), tmp_path / "new.parquet")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    killed = subprocess.run([sys.executable, "-c", KILLED_REBUILD, str(tmp_path / "new.parquet"), str(out)], env=env)
    assert killed.returncode == -9
    assert list((tmp_path / ".dataset.building" / "data").glob("*/*.parquet"))  # it was killed mid-way
    assert _digests(out) == before  # the old build, untouched: it loads, with its own rows only
    old = load_emovid(str(out), "default", split="train", decode_media=False)
    assert old.num_rows == 48 and "Rewritten." not in old["caption"]

    build_dataset(tmp_path / "new.parquet", out, min_shards=3, evaluator=False, progress=False)
    new = load_emovid(str(out), "default", split="train", decode_media=False)
    assert new.num_rows == 48 and set(new["caption"]) == {"Rewritten."}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "new.parquet"]
