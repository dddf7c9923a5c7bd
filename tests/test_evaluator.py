"""The EA evaluator: trained on human-labelled train clips only, versioned by sha256, and never stale."""

import json

import pytest
from emotion_clips import make_emotion_rows

from emovid_datasets.evaluation.evaluator import (
    LeakingClassifierError,
    check_not_leaking,
    evaluator_record,
    train_evaluator,
)
from emovid_datasets.labelling.saved import labeller_sha256, load_labeller


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    rows = make_emotion_rows(tmp_path_factory.mktemp("clips"), per_emotion=3, seed=5, sources=("animation", "movie"))
    for i, row in enumerate(rows):
        row["emotion"] = row.pop("true_emotion")
        row["split"] = "benchmark" if i % 3 == 0 else "train"
        row["label_source"] = "model" if i % 3 == 2 else "human"
    return rows


def test_evaluator_learns_from_human_train_clips_only_and_scores_the_benchmark(rows, tmp_path):
    record = train_evaluator(rows, tmp_path / "dataset" / "evaluator", progress=False)
    expected = sorted(r["clip_id"] for r in rows if r["split"] == "train" and r["label_source"] == "human")
    assert record["train_clip_ids"] == expected
    assert evaluator_record(tmp_path / "dataset") == json.loads(json.dumps(record))
    assert record["sha256"] == labeller_sha256(tmp_path / "dataset" / "evaluator")
    bench = [r for r in rows if r["split"] == "benchmark"]
    model = load_labeller(tmp_path / "dataset" / "evaluator")
    predicted = model.predict([r["video_path"] for r in bench])
    hits = sum(p == r["emotion"] for p, r in zip(predicted, bench))
    assert record["real_benchmark"]["ea8"]["correct"] == hits and record["real_benchmark"]["n"] == len(bench)
    assert check_not_leaking(model, "evaluator", [r["clip_id"] for r in bench]) == len(expected)
    with pytest.raises(LeakingClassifierError, match="was trained on 1 benchmark clip"):
        check_not_leaking(model, "evaluator", [expected[0], "other"])


def test_a_rebuild_without_human_train_clips_leaves_no_stale_evaluator(rows, tmp_path):
    folder = tmp_path / "evaluator"
    assert train_evaluator(rows, folder, progress=False) is not None
    no_train_humans = [dict(r, label_source="model") if r["split"] == "train" else r for r in rows]
    assert train_evaluator(no_train_humans, folder, progress=False) is None
    assert not folder.exists()
