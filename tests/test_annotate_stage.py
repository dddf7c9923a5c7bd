"""`emovid-build annotate`: export tasks, import votes (2-of-3), predict (resumable), agreement report."""

import argparse
import csv
import json

import numpy as np
import pytest
from emotion_clips import make_emotion_rows

from builder_scripts.cli import COMMAND_MODULES
from builder_scripts.engine.manifest import read_manifest, read_rejects, write_manifest
from builder_scripts.stages import annotate
from emovid_datasets.labelling import FeatureClassifier, simulate_votes, write_vote_file
from emovid_datasets.taxonomy import VOTE_CHOICES


def cli(*argv):
    """Run `emovid-build annotate ...` through this module's own subcommand wiring."""
    parser = argparse.ArgumentParser()
    annotate.add_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["annotate", *map(str, argv)])
    return args.func(args)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotate")
    rows = make_emotion_rows(root / "clips", per_emotion=4, seed=3)
    truth = {r["clip_id"]: r.pop("true_emotion") for r in rows}
    write_manifest(root / "attributes", rows)
    return root, truth


def test_registered_in_cli():
    assert "builder_scripts.stages.annotate" in COMMAND_MODULES


def test_export_is_stratified_by_source_and_deterministic(clips, tmp_path):
    root, truth = clips
    cli("export", root / "attributes", "--out", tmp_path / "a", "--fraction", 0.25, "--seed", 5)
    tasks = [json.loads(line) for line in (tmp_path / "a" / "tasks.jsonl").read_text().splitlines()]
    assert len(tasks) == 24
    assert {s: sum(t["source"] == s for t in tasks) for s in ("animation", "movie", "sticker")} == {
        "animation": 8, "movie": 8, "sticker": 8}
    assert all(t["choices"] == list(VOTE_CHOICES) and t["preview"].endswith(f"{t['clip_id']}.mp4") for t in tasks)
    with open(tmp_path / "a" / "tasks.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["clip_id"] for r in table] == [t["clip_id"] for t in tasks]
    assert table[0]["choices"].split("|") == list(VOTE_CHOICES)
    cli("export", root / "attributes", "--out", tmp_path / "b", "--fraction", 0.25, "--seed", 5)
    assert (tmp_path / "b" / "tasks.jsonl").read_text() == (tmp_path / "a" / "tasks.jsonl").read_text()
    other = annotate.sample_tasks(read_manifest(root / "attributes"), fraction=0.25, seed=6)
    assert {t["clip_id"] for t in other} != {t["clip_id"] for t in tasks}


def test_import_applies_two_of_three_and_records_drops(clips, tmp_path):
    root, truth = clips
    rows = read_manifest(root / "attributes")
    ids = sorted(truth)
    agree, all_none, split, two_only = ids[0], ids[1], ids[2], ids[3]
    votes = [
        {"clip_id": agree, "annotator": "a", "label": truth[agree]},
        {"clip_id": agree, "annotator": "b", "label": truth[agree]},
        {"clip_id": agree, "annotator": "c", "label": "none"},
        *({"clip_id": all_none, "annotator": a, "label": "none"} for a in "abc"),
        *({"clip_id": split, "annotator": a, "label": e} for a, e in zip("abc", ("fear", "anger", "awe"))),
        {"clip_id": two_only, "annotator": "a", "label": "awe"},
        {"clip_id": "not-a-clip", "annotator": "a", "label": "awe"},
    ]
    # Annotator c's votes come as JSONL, the others as CSV with an extra column.
    (tmp_path / "ab.csv").write_text("clip_id,annotator,label,seconds\n" + "".join(
        f"{v['clip_id']},{v['annotator']},{v['label'].upper()},1.5\n" for v in votes if v["annotator"] != "c"))
    write_vote_file(tmp_path / "c.jsonl", [v for v in votes if v["annotator"] == "c"])
    cli("import", root / "attributes", tmp_path / "ab.csv", tmp_path / "c.jsonl", "--out", tmp_path / "out")

    out = {r["clip_id"]: r for r in read_manifest(tmp_path / "out")}
    assert len(out) == len(rows) - 3  # all-none, all-different and the single vote are dropped
    kept = out[agree]
    assert (kept["emotion"], kept["label_source"]) == (truth[agree], "human")
    assert kept["human_votes"] == [truth[agree], truth[agree], "none"]
    assert kept["label_confidence"] == pytest.approx(2 / 3)
    assert out[ids[4]].get("label_source") is None  # no votes: passes through for the model
    reasons = {r["clip_id"]: r["reason"] for r in read_rejects(tmp_path / "out")}
    assert "all votes are none" in reasons[all_none]
    assert "all votes differ" in reasons[split]
    assert "only 1 vote" in reasons[two_only]
    assert "not in the input manifest" in reasons["not-a-clip"]
    assert all(r["stage"] == "annotate" for r in read_rejects(tmp_path / "out"))


def test_import_rejects_unknown_labels_naming_file_and_line(clips, tmp_path):
    root, truth = clips
    bad = tmp_path / "votes.csv"
    bad.write_text(f"clip_id,annotator,label\n{sorted(truth)[0]},a,fear\n{sorted(truth)[0]},b,happy\n")
    with pytest.raises(ValueError, match=r"votes\.csv line 3: unknown label 'happy'"):
        cli("import", root / "attributes", bad, "--out", tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.parquet").exists()


@pytest.fixture(scope="module")
def imported(clips):
    """Half of each source voted on by three simulated annotators, imported."""
    root, truth = clips
    rows = read_manifest(root / "attributes")
    tasks = annotate.sample_tasks(rows, fraction=0.5, seed=0)
    votes = simulate_votes({t["clip_id"]: truth[t["clip_id"]] for t in tasks}, error_rate=0.1, none_rate=0.05, seed=0)
    write_vote_file(root / "votes.csv", votes)
    annotate.import_votes(rows, [root / "votes.csv"], root / "human")
    return root / "human"


@pytest.fixture(scope="module")
def predicted(clips, imported):
    root, _ = clips
    summary = annotate.predict_labels(read_manifest(imported), root / "pred", progress=False)
    return root / "pred", summary


def test_predict_labels_the_rest_and_beats_chance(clips, imported, predicted):
    root, truth = clips
    folder, summary = predicted
    human = read_manifest(imported)
    out = read_manifest(folder)
    assert len(out) == len(human) == summary.rows
    model = [r for r in out if r["label_source"] == "model"]
    humans = {r["clip_id"]: r for r in human if r.get("label_source") == "human"}
    assert len(model) == len(human) - len(humans) > 0
    for r in out:
        if r["clip_id"] in humans:
            assert r["emotion"] == humans[r["clip_id"]]["emotion"] and r["human_votes"]
        else:
            assert r["human_votes"] == [] and 0 < r["label_confidence"] <= 1 and r["labeller"] == "feature-classifier"
    assert np.mean([r["emotion"] == truth[r["clip_id"]] for r in model]) >= 0.5  # chance is 1/8
    saved = FeatureClassifier.load(folder / annotate.LABELLER_FILE)
    assert saved.metrics["heldout_accuracy"] is not None and saved.metrics["heldout_accuracy"] > 0.3
    # Re-running does nothing new.
    again = annotate.predict_labels(human, folder, progress=False)
    assert again.done == 0 and again.skipped == len(human)


def test_agreement_report_for_a_validation_set(clips, predicted, tmp_path):
    root, truth = clips
    folder, _ = predicted
    cli("export", folder, "--out", tmp_path / "val", "--clips", "model", "--fraction", 0.5)
    tasks = [json.loads(line) for line in (tmp_path / "val" / "tasks.jsonl").read_text().splitlines()]
    rows = {r["clip_id"]: r for r in read_manifest(folder)}
    assert tasks and all(rows[t["clip_id"]]["label_source"] == "model" for t in tasks)
    votes = simulate_votes({t["clip_id"]: truth[t["clip_id"]] for t in tasks}, seed=9, prefix="val")
    write_vote_file(tmp_path / "val" / "votes.jsonl", votes)
    cli("report", tmp_path / "val" / "votes.jsonl", "--labels", folder, "--out", tmp_path / "report")
    report = json.loads((tmp_path / "report" / "agreement.json").read_text())
    assert report["sources"] == ["val-1", "val-2", "val-3", "model"]
    assert len(report["pairs"]) == 6 and report["fleiss"]["items"] == len(tasks)
    assert sum(p["kind"] == "human-model" for p in report["pairs"]) == 3
    assert all(p["kappa"] is not None and p["kappa"] > 0 for p in report["pairs"])
    assert report["model_vs_majority"]["items"] > 0
    text = (tmp_path / "report" / "agreement.txt").read_text()
    assert "val-1 / model" in text and "Fleiss' kappa" in text and "Model vs the annotators" in text


def test_report_with_a_saved_labeller_covers_human_labelled_clips(clips, imported, predicted, tmp_path):
    root, truth = clips
    folder, _ = predicted
    human_ids = sorted(r["clip_id"] for r in read_manifest(imported) if r.get("label_source") == "human")[:6]
    votes = simulate_votes({c: truth[c] for c in human_ids}, seed=2)
    write_vote_file(tmp_path / "v.csv", votes)
    rows = read_manifest(folder)
    with pytest.raises(ValueError, match="none of the voted clips has a model label"):
        annotate.agreement_from_files([tmp_path / "v.csv"], rows)
    labeller = FeatureClassifier.load(folder / annotate.LABELLER_FILE)
    cli("report", tmp_path / "v.csv", "--labels", folder, "--labeller", folder / annotate.LABELLER_FILE,
        "--out", tmp_path / "report")
    assert json.loads((tmp_path / "report" / "agreement.json").read_text())["fleiss"]["items"] == 6
    report = annotate.agreement_from_files([tmp_path / "v.csv"], rows, labeller=labeller)
    assert report["fleiss"]["items"] == 6 and "model" in report["sources"]


def test_predict_with_a_vlm_labeller_records_unparseable_answers(imported, tmp_path):
    from emovid_datasets.labelling import VLMLabeller

    human = read_manifest(imported)[:10]
    answers = iter(["Fear.", "hmm, happy?", "none"] * 10)
    labeller = VLMLabeller("fake/vlm", generate=lambda conv, videos, n: [next(answers) for _ in conv],
                           num_frames=2, frame_size=(16, 12))
    annotate.predict_labels(human, tmp_path / "vlm", labeller=labeller, progress=False)
    out = read_manifest(tmp_path / "vlm")
    model = [r for r in out if r["label_source"] == "model"]
    assert model and all(r["emotion"] == "fear" and r["label_confidence"] == 1.0 and r["labeller"] == "vlm"
                         for r in model)
    reasons = [r["reason"] for r in read_rejects(tmp_path / "vlm")]
    assert any("unparseable (answer 'hmm, happy?')" in r for r in reasons)
    assert any("labeller gave no emotion: none (answer 'none')" in r for r in reasons)
    assert len(out) + len(reasons) == len(human)
    assert not (tmp_path / "vlm" / annotate.LABELLER_FILE).exists()  # nothing trained
