"""The whole chain: the offline demo through every stage, resume, and a config waiting for human votes."""

import json

import pytest
import yaml

from builder_scripts.demo.command import DemoSize, generate_raw, run_demo
from builder_scripts.engine.manifest import read_manifest
from builder_scripts.engine.pipeline import story_order
from emovid_datasets import FEATURES, load_emovid
from emovid_datasets.taxonomy import EMOTIONS, SOURCES

SMALL = DemoSize(animation_per_emotion=3, stickers_per_emotion=3, films=2, shots_per_film=8)
# One benchmark clip per cell leaves human-labelled train clips for the evaluator in this small demo.
SMALL_CONFIG = {"splits": {"per_cell": 1}}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    run_demo(out, seed=3, workers=2, size=SMALL, progress=False, overrides=SMALL_CONFIG)
    return out


def test_demo_builds_a_loadable_dataset_through_every_stage(demo):
    dsd = load_emovid(str(demo / "dataset"), "default", decode_media=False)
    assert set(dsd) == {"train", "benchmark"}
    assert load_emovid(str(demo / "dataset"), "sticker", split="train").features == FEATURES
    every = [row for ds in dsd.values() for row in ds]
    sources = {FEATURES["source"].int2str(r["source"]) for r in every}
    assert sources == set(SOURCES)
    assert {FEATURES["emotion"].int2str(r["emotion"]) for r in every} == set(EMOTIONS)
    bench = {r["clip_id"] for r in dsd["benchmark"]}
    assert bench and not bench & set(dsd["train"]["clip_id"])
    assert all(r["label_source"] == 0 for r in dsd["benchmark"])  # human-labelled only
    for row in every:
        assert (row["audio"] is None) == (FEATURES["source"].int2str(row["source"]) == "sticker")
        assert row["caption"] and row["origin"].startswith("demo:")
    movies = [r for r in every if FEATURES["source"].int2str(r["source"]) == "movie"]
    assert movies and all(r["sequence_id"] and r["sequence_index"] is not None for r in movies)
    assert all(4.0 <= r["duration"] <= 30.0 for r in movies)  # segment kept 4-30 s shots only
    model = [r for r in every if r["label_source"] == 1]
    assert model and all(r["human_votes"] == [] and 0 < r["label_confidence"] <= 1 for r in model)


def test_demo_exercises_labelling_loop_and_segmentation(demo):
    work = demo / "work"
    assert (work / "annotate" / "labeller" / "labeller.json").exists()  # the fine-tuned VLM labelled the rest
    assert {r["labeller"] for r in read_manifest(work / "annotate" / "labels") if r["label_source"] == "model"} == {
        "vlm-finetuned"}
    report = json.loads((work / "annotate" / "validation" / "agreement.json").read_text())
    assert len(report["pairs"]) == 6  # three validation annotators and the model
    segments = read_manifest(work / "segment" / "movie")
    assert {r["parent_id"] for r in segments} == {"movie-film-00", "movie-film-01"}
    assert all(r["end_frame"] > r["start_frame"] for r in segments)
    card = (demo / "dataset" / "README.md").read_text()
    assert "EmoVid demo" in card and "| movie |" in card


def test_rerunning_the_chain_redoes_nothing(demo):
    before = {p: p.stat().st_mtime_ns for p in (demo / "work" / "segment").rglob("*.mp4")}
    run_demo(demo, seed=3, workers=2, size=SMALL, progress=False, overrides=SMALL_CONFIG)
    for stage in ("sources/animation", "segment/movie", "attributes", "annotate/labels"):
        summary = json.loads((demo / "work" / stage / "stage.json").read_text())
        assert summary["done"] == 0 and summary["skipped"] == summary["inputs"], stage
    assert before == {p: p.stat().st_mtime_ns for p in (demo / "work" / "segment").rglob("*.mp4")}


def test_demo_is_deterministic_given_the_seed(tmp_path):
    size = DemoSize(animation_per_emotion=1, stickers_per_emotion=1, films=1, shots_per_film=3)
    a = generate_raw(tmp_path / "a", seed=5, size=size, workers=1, progress=False)
    b = generate_raw(tmp_path / "b", seed=5, size=size, workers=1, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_run_waits_for_human_votes_then_finishes(tmp_path, demo):
    from builder_scripts.cli import main
    from builder_scripts.demo.votes import truth_for_rows
    from emovid_datasets.labelling import simulate_votes, write_vote_file

    config = {
        "work_dir": "work", "workers": 1,
        "sources": {"sticker": {"import": {"src": str(demo / "raw" / "stickers"),
                                           "metadata": str(demo / "raw" / "stickers" / "metadata.csv")}}},
        "annotate": {"fraction": 0.5, "votes": ["votes/*.csv"]},
        "splits": {"per_cell": 1}, "build": {"min_shards": 1},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", "--config", str(path)]) == 3  # waiting for votes: the README's exit code
    tasks = (tmp_path / "work" / "annotate" / "tasks" / "tasks.csv").read_text().splitlines()
    assert tasks[0].startswith("clip_id") and len(tasks) == 1 + 12

    # the annotators' file arrives (three votes per task clip); the same command now finishes the build
    wanted = {line.split(",")[0] for line in tasks[1:]}
    rows = [r for r in read_manifest(tmp_path / "work" / "attributes") if r["clip_id"] in wanted]
    votes = simulate_votes(truth_for_rows(rows, demo / "raw" / "truth.parquet"), seed=1, prefix="ann")
    write_vote_file(tmp_path / "votes" / "batch1.csv", votes)
    assert main(["run", "--config", str(path)]) == 0
    dsd = load_emovid(str(tmp_path / "dataset"), "default", decode_media=False)
    assert sum(len(ds) for ds in dsd.values()) == 24
    human = {r["clip_id"] for ds in dsd.values() for r in ds if r["label_source"] == 0}
    assert human and human <= wanted  # human labels only where votes were cast


def test_story_order_numbers_segments_within_each_film():
    rows = [
        {"clip_id": "b", "sequence_id": "f1", "sequence_index": 1, "start_time": 0.0},
        {"clip_id": "a", "sequence_id": "f1", "sequence_index": 0, "start_time": 9.0},
        {"clip_id": "c", "sequence_id": "f1", "sequence_index": 0, "start_time": 2.0},
        {"clip_id": "d", "sequence_id": "f2", "sequence_index": None, "start_time": 5.0},
        {"clip_id": "e", "sequence_id": None},
    ]
    order = {r["clip_id"]: r["sequence_index"] for r in story_order(rows)}
    assert order == {"c": 0, "a": 1, "b": 2, "d": 0, "e": None}


def test_tiny_vlm_finetuned_on_the_demos_human_labels_beats_twice_chance(demo, tmp_path):
    from builder_scripts.cli import main

    out = tmp_path / "labeller"
    assert main(["annotate", "finetune", str(demo / "work" / "annotate" / "human"), "--out", str(out), "--vlm", "tiny",
                 "--num-frames", "4", "--epochs", "12", "--batch-size", "4", "--gradient-accumulation", "1",
                 "--lr", "1e-3", "--head-lr", "1e-2", "--device", "cpu"]) == 0
    metrics = json.loads((out / "labeller.json").read_text())["metrics"]
    assert metrics["heldout_clips"] >= 8
    assert metrics["heldout_accuracy"] >= 2 * max(metrics["chance_accuracy"], 1 / len(EMOTIONS))


def _benchmark_as_generated(dataset, folder):
    """The benchmark clips themselves stand in for generated videos."""
    bench = load_emovid(str(dataset), "default", split="benchmark", decode_media=False)
    folder.mkdir()
    for row in bench:
        (folder / f"{row['clip_id']}.mp4").write_bytes(row["video"]["bytes"])
    return bench


def test_the_evaluator_never_saw_a_benchmark_clip(demo):
    dataset = demo / "dataset"
    record = json.loads((dataset / "evaluator" / "evaluator.json").read_text())
    dsd = load_emovid(str(dataset), "default", decode_media=False)
    human_train = {r["clip_id"] for r in dsd["train"] if r["label_source"] == 0}
    assert record["train_clip_ids"] and set(record["train_clip_ids"]) <= human_train
    assert not set(record["train_clip_ids"]) & set(dsd["benchmark"]["clip_id"])
    saved = json.loads((dataset / "evaluator" / "evaluator.skops.json").read_text())
    assert saved["metrics"]["train_clip_ids"] == record["train_clip_ids"]  # what the model file itself declares
    from emovid_datasets.labelling.saved import labeller_sha256

    assert record["sha256"] == labeller_sha256(dataset / "evaluator")
    card = (dataset / "README.md").read_text()
    assert record["sha256"][:16] in card and f"{record['real_benchmark']['ea8']['value']:.1f} %" in card
    # The label model, by contrast, learned from the benchmark clips' human labels.
    labeller = json.loads((dataset / "labeller" / "labeller.json").read_text())
    assert set(labeller["train_clip_ids"] + labeller["held_out_clip_ids"]) & set(dsd["benchmark"]["clip_id"])


def test_evaluate_scores_ea_with_the_evaluator_and_shows_the_ceiling(demo, tmp_path, capsys):
    from emovid_datasets.cli import main

    dataset = demo / "dataset"
    bench = _benchmark_as_generated(dataset, tmp_path / "generated")
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--generated", str(tmp_path / "generated"), "--benchmark", str(dataset), "--task", "t2v",
                 "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    record = json.loads((dataset / "evaluator" / "evaluator.json").read_text())
    assert result["classifier"]["sha256"] == record["sha256"]
    assert result["overall"]["ea8"]["n"] == len(bench)
    # Generated = real here, so the scores equal the ceiling row, and both equal the build's own measurement.
    assert result["reference"]["ea8"] == result["overall"]["ea8"]
    assert result["reference"]["ea8"]["value"] == pytest.approx(record["real_benchmark"]["ea8"]["value"])
    printed = capsys.readouterr().out
    assert "real benchmark videos (evaluator ceiling)" in printed and record["sha256"] in printed


def test_evaluate_refuses_a_classifier_trained_on_benchmark_clips(demo, tmp_path, caplog):
    from emovid_datasets.cli import main

    dataset = demo / "dataset"
    _benchmark_as_generated(dataset, tmp_path / "generated")
    out = tmp_path / "scores.json"
    code = main(["evaluate", "--generated", str(tmp_path / "generated"), "--benchmark", str(dataset), "--task", "t2v",
                 "--out", str(out), "--classifier", str(dataset / "labeller")])
    assert code != 0 and not out.exists()
    assert "was trained on" in caplog.text and "benchmark clip" in caplog.text and "labeller" in caplog.text


def test_analyze_the_demo(demo, tmp_path):
    from html.parser import HTMLParser

    from emovid_datasets.cli import main

    assert main(["analyze", str(demo / "dataset"), "--out", str(tmp_path), "--split", "all", "--bootstrap", "50"]) == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["transitions"]["films"] == 2 and stats["transitions"]["transitions"] > 0

    class Images(HTMLParser):
        sources: list = []

        def handle_starttag(self, tag, attrs):
            if tag == "img":
                self.sources.append(dict(attrs).get("src", ""))

    parser = Images()
    parser.feed((tmp_path / "report.html").read_text())
    assert sum(s.startswith("data:image/png;base64,") for s in parser.sources) >= 4  # the plots
    assert sum(s.startswith("data:image/gif;base64,") for s in parser.sources) >= 8  # the gallery

    # the same numbers from the media-free metadata config (no gallery thumbnails there)
    meta_out = tmp_path / "metadata"
    assert main(["analyze", str(demo / "dataset"), "--config", "metadata", "--out", str(meta_out), "--split", "all",
                 "--bootstrap", "50"]) == 0
    meta_stats = json.loads((meta_out / "stats.json").read_text())
    for key in ("clips", "composition", "colour", "transitions", "phrases"):
        assert meta_stats[key] == stats[key], key


def _comparable(value, root):
    """A manifest value with the demo folder's path taken out (floats rounded: model scores are per process)."""
    if isinstance(value, str):
        return value.replace(str(root), "<demo>")
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return [_comparable(v, root) for v in value]
    return value


def test_the_demo_on_ray_equals_the_local_build(demo, local_ray, tmp_path):
    ray_demo = tmp_path / "ray-demo"
    run_demo(ray_demo, seed=3, workers=2, size=SMALL, progress=False, overrides={**SMALL_CONFIG, "engine": "ray"})
    for stage in ("sources/animation", "sources/sticker", "segment/movie", "attributes", "annotate/labels",
                  "captions", "splits"):
        ours, theirs = (sorted(read_manifest(root / "work" / stage), key=lambda r: r["clip_id"])
                        for root in (demo, ray_demo))
        assert [{k: _comparable(v, ray_demo) for k, v in r.items()} for r in theirs] == [
            {k: _comparable(v, demo) for k, v in r.items()} for r in ours], stage
    clips = sorted(p.relative_to(demo) for p in (demo / "work").rglob("*") if p.suffix in (".mp4", ".gif"))
    assert clips and clips == sorted(p.relative_to(ray_demo) for p in (ray_demo / "work").rglob("*")
                                     if p.suffix in (".mp4", ".gif"))
    differ = [str(c) for c in clips if (demo / c).read_bytes() != (ray_demo / c).read_bytes()]
    assert not differ, f"{len(differ)} of {len(clips)} clips differ: {differ[:3]}"


@pytest.mark.parametrize("typo, message", [
    ({"enigne": "ray"}, r"pipeline config: unknown key\(s\) \['enigne'\]"),
    ({"splits": {"per_cel": 1}}, r"splits: unknown key\(s\) \['per_cel'\]; expected some of per_cell"),
    ({"build": {"min_shard": 2}}, r"build: unknown key\(s\) \['min_shard'\]"),
    ({"sources": {"movie": {"import": {"src": "raw"}, "segment": {"min_second": 2}}}},
     r"sources.movie.segment: unknown key\(s\) \['min_second'\]"),
    ({"sources": {"movie": {"import": {"src": "raw", "max_size": 9}}}},
     r"sources.movie.import: unknown key\(s\) \['max_size'\]"),
    ({"sources": {"animation": {"import": {"src": "raw"}}, "sticker": {"crawl": {"per_emotions": 3}}}},
     r"sources.sticker.crawl: unknown key\(s\) \['per_emotions'\]"),
    ({"engine": "spark"}, "engine must be one of local, ray"),
])
def test_an_unknown_config_key_fails_with_its_name_before_any_stage_runs(tmp_path, typo, message):
    from builder_scripts.engine.pipeline import Pipeline

    config = {"sources": {"animation": {"import": {"src": "raw"}}}, "work_dir": "work", **typo}
    with pytest.raises(ValueError, match=message):
        Pipeline(config, tmp_path, progress=False).run()
    assert not (tmp_path / "work").exists()


def test_a_metadata_only_release_rehydrates_to_the_same_rows(demo, tmp_path):
    from builder_scripts.publish.build import build_dataset
    from builder_scripts.publish.rehydrate import SourceAccess, rehydrate

    release = tmp_path / "release"
    build_dataset(demo / "work" / "splits", release, metadata_only=True, evaluator=False, progress=False)
    assert sorted(p.name for p in (release / "data").iterdir()) == ["metadata"]
    assert "emovid-build rehydrate" in (release / "README.md").read_text()
    assert set(load_emovid(str(release))) == {"train", "benchmark"}  # `metadata` is this release's default

    raw = demo / "raw"
    access = SourceAccess(from_dirs={"animation": str(raw / "animation"), "sticker": str(raw / "stickers"),
                                     "movie": str(raw / "films")})
    summary = rehydrate(release, tmp_path / "again", access=access, progress=False)
    assert summary.rejected == 0
    original = load_emovid(str(demo / "dataset"), "default", decode_media=False)
    again = load_emovid(str(tmp_path / "again"), "default", decode_media=False)
    for split in ("train", "benchmark"):
        before = {r["clip_id"]: r for r in original[split]}
        after = {r["clip_id"]: r for r in again[split]}
        assert after.keys() == before.keys()
        for clip_id, row in after.items():
            old = before[clip_id]
            same = ("source", "emotion", "label_source", "human_votes", "caption", "origin", "sequence_id",
                    "sequence_index", "start_time", "end_time", "hue", "width", "height", "has_audio")
            assert {k: row[k] for k in same} == {k: old[k] for k in same}, clip_id
            assert abs(row["duration"] - old["duration"]) <= 1 / old["fps"] + 1e-6, clip_id
            assert abs(row["num_frames"] - old["num_frames"]) <= 1, clip_id
            assert row["video"]["bytes"][4:8] == b"ftyp"


def test_a_rehydrate_with_a_missing_source_records_it_and_goes_on(demo, tmp_path):
    import shutil

    from builder_scripts.engine.manifest import read_rejects
    from builder_scripts.publish.build import build_dataset
    from builder_scripts.publish.rehydrate import SourceAccess, rehydrate

    release = tmp_path / "release"
    build_dataset(demo / "work" / "splits", release, metadata_only=True, evaluator=False, progress=False)
    films = tmp_path / "films"
    shutil.copytree(demo / "raw" / "films", films)
    (films / "film-01.mp4").unlink()  # one film cannot be had any more
    access = SourceAccess(from_dirs={"animation": str(demo / "raw" / "animation"), "movie": str(films)})
    summary = rehydrate(release, tmp_path / "again", access=access, progress=False)
    rejects = read_rejects(tmp_path / "again.work")
    meta = load_emovid(str(release), "metadata")
    rows = [r for ds in meta.values() for r in ds]
    lost = {r["clip_id"] for r in rows if r["sequence_id"] == "film-01"}
    stickers = {r["clip_id"] for r in rows if r["source"] == SOURCES.index("sticker")}
    assert {r["clip_id"] for r in rejects} == lost | stickers
    assert all("film-01" in r["reason"] for r in rejects if r["clip_id"] in lost)
    assert all("--from-dir sticker=FOLDER" in r["reason"] for r in rejects if r["clip_id"] in stickers)
    built = load_emovid(str(tmp_path / "again"), "default", decode_media=False)
    assert {c for ds in built.values() for c in ds["clip_id"]} == {r["clip_id"] for r in rows} - lost - stickers
    assert summary.rows == len(rows) - len(lost) - len(stickers)
