"""The paper's labeller: a video-language model (tiny Qwen2-VL, random weights) fine-tuned on the human
votes through `emovid-build annotate finetune`, then predict (killed and resumed), review of low-confidence
labels, and the pieces a careful labeller needs (soft targets, stratified split, balancing, calibration)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from emotion_clips import make_emotion_rows

from builder_scripts.cli import main as build_cli
from builder_scripts.engine.manifest import read_manifest, write_manifest
from builder_scripts.stages import annotate
from emovid_datasets.labelling import simulate_votes, write_vote_file
from emovid_datasets.labelling.finetune import (
    FineTunedVLMLabeller,
    FinetuneSettings,
    settings_from,
    soft_cross_entropy,
    training_targets,
)
from emovid_datasets.labelling.quality import (
    balanced_weights,
    expected_calibration_error,
    fit_temperature,
    softmax,
    stratified_holdout,
    vote_target,
)
from emovid_datasets.taxonomy import EMOTIONS

FAST = ["--num-frames", "4", "--epochs", "12", "--batch-size", "4", "--gradient-accumulation", "1", "--lr", "1e-3",
        "--head-lr", "1e-2", "--device", "cpu"]


@pytest.fixture(scope="module")
def voted(tmp_path_factory):
    """96 clips where emotion is visible; three simulated annotators voted on 60 % of each source."""
    root = tmp_path_factory.mktemp("finetune")
    rows = make_emotion_rows(root / "clips", per_emotion=4, seed=11)
    truth = {r["clip_id"]: r.pop("true_emotion") for r in rows}
    tasks = annotate.sample_tasks(rows, fraction=0.6, seed=0)
    votes = simulate_votes({t["clip_id"]: truth[t["clip_id"]] for t in tasks}, error_rate=0.15, none_rate=0.05, seed=4)
    write_vote_file(root / "votes.csv", votes)
    annotate.import_votes(rows, [root / "votes.csv"], root / "human")
    return root, truth


@pytest.fixture(scope="module")
def finetuned(voted, torch_one_thread):
    root, _ = voted
    assert build_cli(["annotate", "finetune", str(root / "human"), "--out", str(root / "labeller"), "--vlm", "tiny",
                      *FAST]) == 0
    return root / "labeller"


def test_finetuned_tiny_vlm_beats_twice_chance_on_its_held_out_clips(voted, finetuned):
    root, _ = voted
    record = json.loads((finetuned / "labeller.json").read_text())
    human = {r["clip_id"]: r for r in read_manifest(root / "human") if r.get("label_source") == "human"}
    held, train = record["held_out_clip_ids"], record["train_clip_ids"]
    assert set(held) | set(train) == set(human) and not set(held) & set(train)
    # The held-out accuracy, recomputed here from the saved labeller and the human majority labels.
    labeller = FineTunedVLMLabeller.load(finetuned, device="cpu")
    predicted = labeller.predict([human[c]["video_path"] for c in held])
    accuracy = np.mean([p == human[c]["emotion"] for p, c in zip(predicted, held)])
    assert accuracy == pytest.approx(record["metrics"]["heldout_accuracy"])
    counts = {e: sum(human[c]["emotion"] == e for c in train) for e in EMOTIONS}
    majority = max(counts, key=counts.get)
    chance = max(np.mean([human[c]["emotion"] == majority for c in held]), 1 / len(EMOTIONS))
    assert accuracy >= 2 * chance
    m = record["metrics"]
    assert set(m["accuracy_per_source"]) == {"animation", "movie", "sticker"}
    assert set(m["kappa_vs_annotators"]) == {"sim-1", "sim-2", "sim-3"} and m["kappa_vs_majority"] > 0
    assert 0 <= m["macro_f1"] <= 1 and m["ece_after_calibration"] is not None
    assert record["base_model"] == "tiny" and record["settings"]["lora_rank"] == 16
    assert (finetuned / "adapter" / "adapter_config.json").is_file() and (finetuned / "head.safetensors").is_file()


def test_soft_targets_are_the_vote_shares():
    fear, sadness = EMOTIONS.index("fear"), EMOTIONS.index("sadness")
    target = vote_target({"emotion": "fear", "human_votes": ["fear", "fear", "sadness"]})
    assert target[fear] == pytest.approx(2 / 3) and target[sadness] == pytest.approx(1 / 3) and target.sum() == 1
    none_vote = vote_target({"emotion": "fear", "human_votes": ["fear", "none", "fear"]})
    assert none_vote[fear] == 1.0  # a `none` vote is no emotion: left out of the shares
    rows = [{"emotion": "fear", "human_votes": ["fear", "fear", "sadness"]}]
    assert training_targets(rows, FinetuneSettings())[0, sadness] == pytest.approx(1 / 3)
    assert training_targets(rows, FinetuneSettings(soft_targets=False))[0, sadness] == 0.0


def test_soft_cross_entropy_by_hand():
    import torch

    logits = torch.tensor([[2.0, 0.0] + [-1e9] * 6])
    target = torch.tensor([[0.75, 0.25] + [0.0] * 6])
    p0 = np.exp(2) / (np.exp(2) + 1)
    expected = -(0.75 * np.log(p0) + 0.25 * np.log(1 - p0))
    loss = soft_cross_entropy(logits, target, torch.tensor([2.0]), denominator=4)
    assert float(loss) == pytest.approx(2.0 * expected / 4, rel=1e-5)


def test_holdout_is_stratified_by_source_and_emotion():
    rows = [{"clip_id": f"{s}-{e}-{k}", "source": s, "emotion": e}
            for s in ("movie", "sticker") for e in ("fear", "awe") for k in range(5)]
    rows.append({"clip_id": "lonely", "source": "animation", "emotion": "anger"})
    train, held = stratified_holdout(rows, 0.2, seed=1)
    assert "lonely" in train and len(held) == 4  # one of each five-clip cell; the one-clip cell stays in training
    assert {tuple(c.split("-")[:2]) for c in held} == {(s, e) for s in ("movie", "sticker") for e in ("fear", "awe")}
    assert stratified_holdout(rows, 0.2, seed=1) == (train, held)
    assert {stratified_holdout(rows, 0.2, seed=k)[1][0] for k in range(8)} != {held[0]}  # seeded, not the first clip


def test_balanced_weights_make_every_class_weigh_the_same():
    weights = balanced_weights(["fear", "fear", "fear", "awe"])
    assert list(weights) == pytest.approx([4 / 6, 4 / 6, 4 / 6, 2.0])  # n / (k * count)


def test_temperature_brings_an_over_confident_model_to_its_accuracy():
    rng = np.random.default_rng(0)
    n = 4000
    labels = rng.integers(0, 8, n)
    logits = rng.normal(0, 1, (n, 8))
    logits[np.arange(n), labels] += 1.5  # right about 60 % of the time...
    logits *= 6  # ...but nearly certain every time
    names = [EMOTIONS[i] for i in labels]
    before = expected_calibration_error(softmax(logits), names)
    temperature = fit_temperature(logits, np.eye(8)[labels])
    after = expected_calibration_error(softmax(logits, temperature), names)
    accuracy = np.mean(logits.argmax(1) == labels)
    assert 0.4 < accuracy < 0.8 and softmax(logits).max(1).mean() > 0.85
    assert temperature > 3 and before > 0.3 and after < 0.05
    assert np.array_equal(softmax(logits, temperature).argmax(1), logits.argmax(1))  # ranking unchanged


def test_ece_by_hand():
    proba = np.zeros((4, 8))
    proba[:, 0] = [0.9, 0.9, 0.6, 0.6]
    proba[:, 1] = 1 - proba[:, 0]
    labels = ["amusement", "awe", "amusement", "amusement"]
    # bins: 0.9 -> accuracy 1/2 (|0.5 - 0.9| = 0.4), 0.6 -> accuracy 1 (|1 - 0.6| = 0.4); each half the clips
    assert expected_calibration_error(proba, labels) == pytest.approx(0.4)


def test_settings_refuse_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown labeller setting\(s\) \['lora_rnak'\]"):
        settings_from({"lora_rnak": 8})


def _rows_now(path):
    """The manifest's rows from one read of its bytes (the writer may replace the file between reads)."""
    import io

    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(path.read_bytes())).to_pylist()


def _predict_command(human, out, labeller):
    return [sys.executable, "-m", "builder_scripts.cli", "annotate", "predict", str(human), "--out", str(out),
            "--labeller", str(labeller), "--batch-size", "1", "--device", "cpu"]


def test_predict_resumes_after_sigkill_to_the_same_labels(voted, finetuned, tmp_path):
    root, _ = voted
    human = read_manifest(root / "human")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    clean = tmp_path / "clean"
    subprocess.run(_predict_command(root / "human", clean, finetuned), check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_predict_command(root / "human", out, finetuned), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if (out / "manifest.parquet").exists() and len(_rows_now(out / "manifest.parquet")) >= 5:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "predict finished before it could be killed"
    partial = read_manifest(out)
    assert 5 <= len(partial) < len(human)

    subprocess.run(_predict_command(root / "human", out, finetuned), check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = read_manifest(out)
    assert len(resumed) == len({r["clip_id"] for r in resumed}) == len(human)
    summary = json.loads((out / "stage.json").read_text())
    assert summary["skipped"] == len(partial) and summary["done"] == len(human) - len(partial)
    key = ("clip_id", "emotion", "label_source", "label_confidence")
    assert [tuple(r[k] for k in key) for r in resumed] == [tuple(r[k] for k in key) for r in read_manifest(clean)]


def test_low_confidence_labels_go_back_to_people_and_their_votes_replace_the_model(voted, finetuned, tmp_path):
    root, truth = voted
    labeller = FineTunedVLMLabeller.load(finetuned, device="cpu")
    annotate.predict_labels(read_manifest(root / "human"), tmp_path / "labels", labeller=labeller, progress=False)
    labels = {r["clip_id"]: r for r in read_manifest(tmp_path / "labels")}
    model = [r for r in labels.values() if r["label_source"] == "model"]
    assert model and all(r["labeller"] == "vlm-finetuned" and 0 < r["label_confidence"] <= 1 for r in model)
    threshold = float(np.median([r["label_confidence"] for r in model]))
    expected = {r["clip_id"] for r in model if r["label_confidence"] < threshold}
    assert expected

    assert build_cli(["annotate", "export", str(tmp_path / "labels"), "--clips", "low-confidence", "--below",
                      str(threshold), "--out", str(tmp_path / "review")]) == 0
    tasks = [json.loads(line) for line in (tmp_path / "review" / "tasks.jsonl").read_text().splitlines()]
    assert {t["clip_id"] for t in tasks} == expected

    # Reviewers agree on the true emotion; their votes replace the model label on import.
    votes = [{"clip_id": c, "annotator": a, "label": truth[c]} for c in sorted(expected) for a in ("r1", "r2", "r3")]
    write_vote_file(tmp_path / "review-votes.csv", votes)
    assert build_cli(["annotate", "import", str(tmp_path / "labels"), str(tmp_path / "review-votes.csv"),
                      "--out", str(tmp_path / "reviewed")]) == 0
    reviewed = {r["clip_id"]: r for r in read_manifest(tmp_path / "reviewed")}
    assert set(reviewed) == set(labels)
    for clip_id, row in reviewed.items():
        if clip_id in expected:
            assert (row["emotion"], row["label_source"], row["human_votes"], row["label_confidence"]) == (
                truth[clip_id], "human", [truth[clip_id]] * 3, 1.0)
            assert row["labeller"] is None
        else:
            assert (row["emotion"], row["label_source"]) == (labels[clip_id]["emotion"],
                                                             labels[clip_id]["label_source"])


def test_export_low_confidence_needs_a_threshold(voted, tmp_path):
    root, _ = voted
    write_manifest(tmp_path / "in", read_manifest(root / "human"))
    assert build_cli(["annotate", "export", str(tmp_path / "in"), "--clips", "low-confidence",
                      "--out", str(tmp_path / "t")]) == 2
