"""`emovid-build splits`: benchmark selection counts (incl. scale-down) and the paper's training mix."""

import argparse
import json
from collections import Counter

import pytest

from builder_scripts.cli import COMMAND_MODULES
from builder_scripts.engine.manifest import read_manifest, read_rejects, write_manifest
from builder_scripts.stages import splits
from emovid_datasets.taxonomy import EMOTIONS, SOURCES


def make_rows(human_per_cell, model_per_cell=0, sources=SOURCES):
    """Manifest rows: ``human_per_cell`` (int or {(source, emotion): n}) human-labelled clips per cell, plus model ones."""
    rows = []
    for source in sources:
        for emotion in EMOTIONS:
            n_human = human_per_cell.get((source, emotion), 0) if isinstance(human_per_cell, dict) else human_per_cell
            n_model = model_per_cell(source, emotion) if callable(model_per_cell) else model_per_cell
            for k in range(n_human + n_model):
                rows.append({"clip_id": f"{source}-{emotion}-{k:04d}", "source": source, "emotion": emotion,
                             "label_source": "human" if k < n_human else "model",
                             "caption": f"A {source} clip.", "origin": f"test:{source}-{emotion}-{k}"})
    return rows


def test_registered_in_cli():
    assert "builder_scripts.stages.splits" in COMMAND_MODULES


def test_benchmark_is_ten_human_clips_per_cell_240_in_all():
    rows = make_rows(15, model_per_cell=20)
    out, rejects = splits.assign_splits(rows, seed=0)
    bench = [r for r in out if r["split"] == "benchmark"]
    assert len(bench) == 240 and not rejects
    assert set(Counter((r["source"], r["emotion"]) for r in bench).values()) == {10}
    assert all(r["label_source"] == "human" for r in bench)
    train_ids = {r["clip_id"] for r in out if r["split"] == "train"}
    assert not train_ids & {r["clip_id"] for r in bench}
    assert len(train_ids) == len(rows) - 240 and len(out) == len(rows)


def test_benchmark_is_deterministic_by_seed():
    rows = make_rows(15)
    a = splits.select_benchmark(rows, seed=1)
    assert a == splits.select_benchmark(list(reversed(rows)), seed=1)  # input order does not matter
    assert a != splits.select_benchmark(rows, seed=2)


def test_benchmark_scales_down_for_small_cells():
    cells = {(s, e): 12 for s in SOURCES for e in EMOTIONS}
    cells[("animation", "awe")] = 3
    cells[("sticker", "fear")] = 0
    rows = make_rows(cells, model_per_cell=5)
    chosen = splits.select_benchmark(rows, per_cell=10)
    counts = Counter(tuple(c.split("-")[:2]) for c in chosen)
    assert counts[("animation", "awe")] == 3 and counts[("sticker", "fear")] == 0
    assert len(chosen) == 22 * 10 + 3
    half = Counter(tuple(c.split("-")[:2]) for c in splits.select_benchmark(rows, per_cell=10, max_cell_fraction=0.5))
    assert half[("animation", "awe")] == 1 and half[("movie", "fear")] == 6
    assert len(splits.select_benchmark(rows, per_cell=2)) == 23 * 2  # 23 non-empty cells


def test_paper_mix_counts_for_the_full_dataset():
    # EmoVid after removing 80 benchmark clips per type: the paper's 2,727 / 8,000 / 6,616.
    assert splits.mix_counts({"animation": 2727, "movie": 13175, "sticker": 6616}) == splits.PAPER_TRAIN_MIX
    assert splits.mix_counts({"animation": 5000, "movie": 20000, "sticker": 9000}) == splits.PAPER_TRAIN_MIX


def test_paper_mix_proportions_scaled_to_the_data():
    # Movies dominate and are imbalanced (anger, sadness frequent), like the paper's data.
    human = {(s, e): 11 for s in SOURCES for e in EMOTIONS}
    rows = make_rows(human, model_per_cell=lambda s, e: {"animation": 30, "sticker": 80}.get(
        s, 400 if e in ("anger", "sadness") else 150))
    out, rejects = splits.assign_splits(rows, paper_mix=True, seed=0)
    train = Counter(r["source"] for r in out if r["split"] == "train")
    available = {s: sum(r["source"] == s for r in rows) - 80 for s in SOURCES}
    scale = min(available[s] / n for s, n in splits.PAPER_TRAIN_MIX.items())
    for source, target in splits.PAPER_TRAIN_MIX.items():
        assert train[source] == int(target * scale)
    assert train["animation"] == available["animation"]  # the limiting source is kept whole
    ratio = train["movie"] / train["animation"]
    assert ratio == pytest.approx(8000 / 2727, rel=0.01)
    assert train["sticker"] / train["animation"] == pytest.approx(6616 / 2727, rel=0.01)
    # Movies are capped evenly over emotions: rare emotions kept whole, frequent ones cut.
    movie = Counter(r["emotion"] for r in out if r["split"] == "train" and r["source"] == "movie")
    assert max(movie.values()) - min(movie.values()) <= 1
    assert len(rejects) == len(rows) - len(out)
    assert all("paper's training mix" in r["reason"] and r["stage"] == "splits" for r in rejects)
    assert Counter(r["split"] for r in out)["benchmark"] == 240


def test_balanced_pick_keeps_rare_emotions_and_prefers_human_labels():
    import numpy as np

    rows = make_rows({("movie", "awe"): 2, ("movie", "fear"): 3}, model_per_cell=lambda s, e: {
        "awe": 0, "fear": 50}.get(e, 10), sources=("movie",))
    picked = splits.balanced_pick(rows, 30, np.random.default_rng(0))
    counts = Counter(r["emotion"] for r in picked)
    assert len(picked) == 30 and counts["awe"] == 2 and max(counts.values()) - min(
        v for e, v in counts.items() if e != "awe") <= 1
    fear = [r for r in picked if r["emotion"] == "fear"]
    assert sum(r["label_source"] == "human" for r in fear) == 3


def test_write_splits_through_the_cli(tmp_path):
    rows = make_rows(3, model_per_cell=4)
    write_manifest(tmp_path / "labels", rows)
    parser = argparse.ArgumentParser()
    splits.add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["splits", str(tmp_path / "labels"), "--out", str(tmp_path / "out"), "--per-cell", "2"])
    assert args.func(args) == 0
    out = read_manifest(tmp_path / "out")
    assert Counter(r["split"] for r in out) == {"benchmark": 48, "train": len(rows) - 48}
    assert read_rejects(tmp_path / "out") == []
    bench = [json.loads(line) for line in (tmp_path / "out" / "benchmark.jsonl").read_text().splitlines()]
    assert len(bench) == 48
    assert bench[0]["prompt"] == f'A {bench[0]["source"]} clip. The video is in the "{bench[0]["emotion"]}" emotion.'


def test_unlabelled_clips_are_refused():
    rows = make_rows(1)
    rows[0]["emotion"] = None
    with pytest.raises(ValueError, match="no emotion.*annotate predict"):
        splits.assign_splits(rows)
