"""The VLM labeller and captioner through real `transformers` code: a tiny randomly initialised Qwen2-VL
(`labelling.tiny`), saved to a folder and loaded by `TransformersVLM` through the Auto classes, exactly as a
hub checkpoint would be."""

import numpy as np
import pytest
from emotion_clips import write_emotion_clip

from emovid_datasets.labelling import VLMCaptioner, VLMLabeller, parse_emotion
from emovid_datasets.labelling.tiny import build_tiny_vlm


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_vlm(tmp_path_factory.mktemp("tiny-qwen2-vl")))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    return [write_emotion_clip(root / f"{e}.mp4", e, rng) for e in ("fear", "awe", "sadness")]


def test_vlm_labeller_runs_a_real_transformers_model(tiny_model, clips):
    labeller = VLMLabeller(tiny_model, num_frames=4, frame_size=(56, 56), max_new_tokens=4, batch_size=2)
    labeller.generate.device = "cpu"
    predictions = labeller.label(clips)
    assert len(predictions) == 3
    for pred in predictions:
        assert isinstance(pred.raw, str)
        assert len(pred.raw.split()) <= 4  # at most max_new_tokens words from the word-level vocabulary
        assert (pred.emotion, pred.reason) == (parse_emotion(pred.raw).emotion, parse_emotion(pred.raw).reason)
    # Greedy decoding is deterministic: batched and one-by-one answers agree.
    assert [labeller.label([c])[0].raw for c in clips] == [p.raw for p in predictions]
    proba = labeller.predict_proba(clips)
    assert proba.shape == (3, 8) and set(proba.sum(axis=1)) <= {0.0, 1.0}


def test_vlm_captioner_runs_a_real_transformers_model(tiny_model, clips):
    captioner = VLMCaptioner(tiny_model, num_frames=4, frame_size=(56, 56), max_new_tokens=6)
    captioner.generate.device = "cpu"
    rows = [{"clip_id": c.stem, "video_path": str(c)} for c in clips]
    texts = captioner.caption(rows)  # seeded random weights: greedy decoding yields words, not an instant stop
    assert len(texts) == 3 and all(t and t == " ".join(t.split()) and len(t.split()) <= 6 for t in texts)
