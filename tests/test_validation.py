"""Validation during training (`--validate-every`) on `--model tiny`: samples, EA from the evaluator, baseline, DDP."""

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from factory import make_dataset
from launch import train_on_two_processes

from emovid_datasets.cli import main
from emovid_datasets.evaluation import extractors
from emovid_datasets.evaluation.extractors import load_classifier
from emovid_datasets.evaluation.metrics import argmax_emotions, ea_scores
from emovid_datasets.media import read_frames
from emovid_datasets.taxonomy import EMOTIONS
from emovid_datasets.training.config import TrainConfig
from emovid_datasets.training.generate import generate
from emovid_datasets.training.trainer import train
from emovid_datasets.training.validation import BUILTIN_CAPTIONS, validation_prompts

SMALL = dict(model="tiny", num_frames=9, height=32, width=32, rank=4, alpha=4)
FAST = dict(validation_frames=5, validation_steps=2)

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def bench_dataset(tmp_path_factory) -> str:
    """A dataset with a benchmark split (one clip per source and emotion) and its EA evaluator."""
    return str(make_dataset(tmp_path_factory.mktemp("emovid"), per_cell=1, benchmark_per_cell=1))


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_validation_renders_and_scores_the_benchmark_prompts_with_the_evaluator(bench_dataset, tmp_path):
    common = dict(task="t2v", data=bench_dataset, sources=["sticker"], limit=2, max_steps=4, lr=1e-2,
                  cache_dir=str(tmp_path / "cache"), **SMALL)
    out = tmp_path / "out"
    result = train(TrainConfig(output=str(out), validate_every=2, **common, **FAST))
    plain = train(TrainConfig(output=str(tmp_path / "plain"), **common))
    assert result.losses == pytest.approx(plain.losses, rel=1e-6)  # validation leaves training as it was
    assert not (tmp_path / "plain" / "samples").exists() and not (tmp_path / "plain" / "validation.csv").exists()

    names = [f"sticker-{e}-01" for e in EMOTIONS]  # the benchmark clip of each emotion from the trained source
    for step in (0, 2, 4):
        folder = out / "samples" / f"step-{step}"
        assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.{x}" for n in names for x in ("mp4", "gif"))
        assert (folder / f"{names[0]}.gif").read_bytes()[:6] == b"GIF89a"
        assert read_frames(folder / f"{names[0]}.mp4").shape == (5, 32, 32, 3)
    rows = read_csv(out / "validation.csv")
    assert [(int(r["step"]), r["sample"]) for r in rows] == [(s, n) for s in (0, 2, 4) for n in names]

    # EA from the dataset's evaluator, asked again here on the saved files
    classifier = load_classifier(str(Path(bench_dataset) / "evaluator"))
    scores = {}
    for step in (0, 2, 4):
        files = [(out / "samples" / f"step-{step}" / f"{n}.mp4").read_bytes() for n in names]
        predicted = argmax_emotions(classifier.predict_proba(files))
        assert [r["predicted"] for r in rows if int(r["step"]) == step] == predicted
        assert [int(r["ea8"]) for r in rows if int(r["step"]) == step] == [p == e for p, e in zip(predicted, EMOTIONS)]
        scores[step] = ea_scores(predicted, list(EMOTIONS))
    assert result.validation == ("validation EA from step 0 to step 4: "
                                 f"EA-8 {scores[0]['ea8']['value']:.1f}% -> {scores[4]['ea8']['value']:.1f}% "
                                 f"({scores[4]['ea8']['value'] - scores[0]['ea8']['value']:+.1f}), "
                                 f"EA-2 {scores[0]['ea2']['value']:.1f}% -> {scores[4]['ea2']['value']:.1f}% "
                                 f"({scores[4]['ea2']['value'] - scores[0]['ea2']['value']:+.1f})")
    assert all(float(r["flicker"]) > 0 and r["clip"] == "" for r in rows)

    # step 0 is the base model at each prompt's fixed seed; step 4 is the trained LoRA at the same seeds
    prompt = rows[0]["prompt"]
    again = generate("tiny", prompt, tmp_path / "again.mp4", num_frames=5, height=32, width=32, steps=2,
                     seed=int(rows[0]["seed"]), device="cpu")
    step0 = read_frames(out / "samples" / "step-0" / f"{names[0]}.mp4")
    assert (read_frames(again.video) == step0).all()
    assert (read_frames(out / "samples" / "step-4" / f"{names[0]}.mp4") != step0).any()

    page = (out / "samples" / "index.html").read_text()
    assert "step 0 (baseline)" in page and all(f"step-{s}/{n}.gif" in page for s in (0, 2, 4) for n in names)

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    ea8 = events.Scalars("validation/ea8")
    assert [e.step for e in ea8] == [0, 2, 4]
    assert [e.value for e in ea8] == pytest.approx([scores[s]["ea8"]["value"] for s in (0, 2, 4)])


def test_resume_keeps_validation_up_to_the_checkpoint_and_redoes_what_came_after(bench_dataset, tmp_path):
    """A run killed after validating step 4 but resumed from its step-2 checkpoint: step 4 is validated again."""
    out = tmp_path / "out"
    common = dict(task="t2v", data=bench_dataset, sources=["sticker"], limit=2, max_steps=4, lr=1e-2,
                  checkpoint_every=2, keep_checkpoints=10, validate_every=2, validation_per_emotion=1,
                  output=str(out), cache_dir=str(tmp_path / "cache"), **SMALL, **FAST)
    train(TrainConfig(**common))
    rows = read_csv(out / "validation.csv")
    with (out / "validation.csv").open("w", newline="") as f:  # mark every row this run wrote
        writer = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(dict(r, flicker="-1") for r in rows)
    for step in (2, 4):
        (out / "samples" / f"step-{step}" / "marker").write_text("from the first run")

    resumed = train(TrainConfig(**dict(common, resume=str(out / "checkpoints" / "step-00000002"))))
    assert resumed.resumed_from == 2
    again = read_csv(out / "validation.csv")
    names = [f"sticker-{e}-01" for e in EMOTIONS]
    assert [(int(r["step"]), r["sample"]) for r in again] == [(s, n) for s in (0, 2, 4) for n in names]  # once each
    assert [r["flicker"] == "-1" for r in again] == [int(r["step"]) <= 2 for r in again]  # kept, not rendered again
    classifier = load_classifier(str(Path(bench_dataset) / "evaluator"))
    files = [(out / "samples" / "step-4" / f"{n}.mp4").read_bytes() for n in names]
    assert [r["predicted"] for r in again if r["step"] == "4"] == argmax_emotions(classifier.predict_proba(files))
    assert (out / "samples" / "step-2" / "marker").exists() and not (out / "samples" / "step-4" / "marker").exists()
    assert resumed.validation.startswith("validation EA from step 0 to step 4:")  # the baseline survives the resume

    # a fresh run into the same folder keeps nothing of the earlier runs' validation
    train(TrainConfig(**dict(common, validate_every=3, max_steps=3, overwrite=True)))
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["index.html", "step-0", "step-3"]
    assert sorted({r["step"] for r in read_csv(out / "validation.csv")}) == ["0", "3"]


def test_resuming_a_finished_run_trains_nothing_and_makes_up_its_last_validation(bench_dataset, tmp_path):
    """Killed after its last checkpoint but before its last validation: the resume only validates."""
    from safetensors.torch import load_file

    out = tmp_path / "out"
    common = dict(task="t2v", data=bench_dataset, sources=["sticker"], limit=2, max_steps=3, lr=1e-2,
                  checkpoint_every=1, validate_every=2, validation_per_emotion=1, output=str(out),
                  cache_dir=str(tmp_path / "cache"), **SMALL, **FAST)
    train(TrainConfig(**common))
    lora = load_file(str(out / "pytorch_lora_weights.safetensors"))
    rows = read_csv(out / "validation.csv")
    assert sorted({r["step"] for r in rows}) == ["0", "2", "3"]
    with (out / "validation.csv").open("w", newline="") as f:  # as if killed before step 3's validation
        writer = csv.DictWriter(f, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(r for r in rows if r["step"] != "3")

    resumed = train(TrainConfig(**dict(common, resume="latest")))
    assert (resumed.resumed_from, resumed.global_step, resumed.losses) == (3, 3, [])
    steps = [json.loads(line)["step"] for line in (out / "loss.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    again = load_file(str(out / "pytorch_lora_weights.safetensors"))
    assert all(torch.equal(lora[k], again[k]) for k in lora) and lora.keys() == again.keys()
    assert [(r["step"], r["sample"]) for r in read_csv(out / "validation.csv")] == \
        [(r["step"], r["sample"]) for r in rows]  # step 3 validated again, once


def test_validation_out_of_memory_skips_that_step_and_training_goes_on(bench_dataset, tmp_path, monkeypatch, caplog):
    from emovid_datasets.training import validation

    real, calls = validation.call_pipeline, []

    def render(*args, **kwargs):  # the 9th render (the first prompt at step 2) runs out of memory
        calls.append(1)
        if len(calls) == 9:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(*args, **kwargs)

    monkeypatch.setattr(validation, "call_pipeline", render)
    out = tmp_path / "out"
    common = dict(task="t2v", data=bench_dataset, sources=["sticker"], limit=2, max_steps=4, lr=1e-2,
                  cache_dir=str(tmp_path / "cache"), **SMALL)
    result = train(TrainConfig(output=str(out), validate_every=2, **common, **FAST))
    assert result.global_step == 4
    assert result.losses == pytest.approx(train(TrainConfig(output=str(tmp_path / "plain"), **common)).losses, rel=1e-6)
    assert sorted({int(r["step"]) for r in read_csv(out / "validation.csv")}) == [0, 4]
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["index.html", "step-0", "step-4"]  # no half step
    assert "validation at step 2 skipped: out of accelerator memory" in caplog.text
    assert result.validation.startswith("validation EA from step 0 to step 4:")


class ByteHash:
    """A stand-in evaluator whose emotion is a hash of the video file: each file gets its own answer."""

    classes_ = EMOTIONS

    def predict_proba(self, videos):
        return np.eye(len(EMOTIONS))[[hashlib.sha256(v).digest()[0] % len(EMOTIONS) for v in videos]]


def test_cli_validates_given_prompts_at_step_0_every_n_and_the_last_step(tmp_path, capsys, monkeypatch):
    dataset = make_dataset(tmp_path / "emovid", per_cell=1)  # no benchmark split
    monkeypatch.setattr(extractors, "load_classifier", lambda spec: extractors.OrderedClassifier(ByteHash()))
    out = tmp_path / "out"
    argv = ["train", "--task", "t2v", "--model", "tiny", "--data", str(dataset), "--output", str(out),
            "--num-frames", "9", "--height", "32", "--width", "32", "--rank", "4", "--alpha", "4",
            "--sources", "animation", "--limit", "2", "--max-steps", "3", "--validate-every", "2",
            "--validation-frames", "5", "--validation-steps", "2",
            "--validation-prompts", "anger: a man shouts at a table", "a quiet lake"]
    assert main(argv) == 0
    rows = read_csv(out / "validation.csv")
    assert [(r["step"], r["sample"]) for r in rows] == [(s, n) for s in ("0", "2", "3")
                                                        for n in ("00-anger", "01-prompt")]
    anger, lake = rows[0], rows[1]
    assert anger["prompt"] == 'a man shouts at a table The video is in the "anger" emotion.' and anger["predicted"]
    assert lake["prompt"] == "a quiet lake" and lake["emotion"] == lake["ea8"] == lake["ea2"] == ""
    for r in rows:  # each row's emotion is the evaluator's answer for that row's own file
        video = (out / "samples" / f"step-{r['step']}" / f"{r['sample']}.mp4").read_bytes()
        assert r["predicted"] == argmax_emotions(ByteHash().predict_proba([video]))[0]
    first, last = (ea_scores([r["predicted"]], ["anger"]) for r in (rows[0], rows[4]))  # only anger is EA-scored
    moves = [f"{name} {first[k]['value']:.1f}% -> {last[k]['value']:.1f}% ({last[k]['value'] - first[k]['value']:+.1f})"
             for k, name in (("ea8", "EA-8"), ("ea2", "EA-2"))]
    assert f"validation EA from step 0 to step 3: {', '.join(moves)}" in capsys.readouterr().out
    # defaults without a benchmark split: the built-in captions, per emotion
    prompts = validation_prompts(str(dataset), "default", None, 2, None, 42)
    assert [p.caption for p in prompts] == [c for e in EMOTIONS for c in BUILTIN_CAPTIONS[e]]
    assert [p.seed for p in prompts] == [p.seed for p in validation_prompts(str(dataset), "default", None, 2, None, 42)]


def test_validation_options_are_checked():
    settings = dict(task="t2v", model="tiny", data="unused", output="unused")
    with pytest.raises(ValueError, match="--validate-every"):
        TrainConfig(**settings, validate_every=0).validate()
    with pytest.raises(ValueError, match="--validation-frames must be 4k\\+1"):
        TrainConfig(**settings, validate_every=2, validation_frames=6).validate()
    with pytest.raises(ValueError, match="--validation-steps"):
        TrainConfig(**settings, validation_steps=0).validate()


def test_two_processes_validate_once_on_the_main_process(bench_dataset, tmp_path):
    """torchrun, gloo on CPU: rank 0 renders and scores, rank 1 waits at the barrier; nobody deadlocks."""
    done = train_on_two_processes([
        "--task", "t2v", "--model", "tiny", "--data", bench_dataset, "--num-frames", "9", "--height", "32",
        "--width", "32", "--rank", "4", "--alpha", "4", "--sources", "animation", "--limit", "4", "--epochs", "1",
        "--validate-every", "1", "--validation-frames", "5", "--validation-steps", "2",
        "--validation-per-emotion", "1", "--output", str(tmp_path / "ddp")])
    assert done.stdout.count("trained to step 2") == 1 and done.stdout.count("validation EA from step 0") == 1
    for step in (0, 1, 2):
        assert done.stderr.count(f"validation at step {step}:") == 1
    rows = read_csv(tmp_path / "ddp" / "validation.csv")
    assert [int(r["step"]) for r in rows] == [s for s in (0, 1, 2) for _ in EMOTIONS]
