"""Labellers: the feature classifier beats chance on clips where emotion is visible; VLM prompt and parsing."""

import json

import numpy as np
import pytest
from emotion_clips import make_emotion_rows, write_emotion_clip

from emovid_datasets.labelling import (
    FEATURE_NAMES,
    FeatureClassifier,
    Labeller,
    VLMLabeller,
    clip_features,
    parse_emotion,
)
from emovid_datasets.labelling.labeller import emotion_question
from emovid_datasets.media import MediaError
from emovid_datasets.taxonomy import EMOTIONS


@pytest.fixture(scope="module")
def featured(tmp_path_factory):
    rows = make_emotion_rows(tmp_path_factory.mktemp("clips"), per_emotion=4, seed=1)
    return rows, np.stack([clip_features(r["video_path"]) for r in rows])


def test_clip_features_measure_colour_motion_and_audio(tmp_path):
    rng = np.random.default_rng(0)
    loud = clip_features(write_emotion_clip(tmp_path / "fear.mp4", "fear", rng))
    calm = clip_features(write_emotion_clip(tmp_path / "content.mp4", "contentment", rng, audio=False))
    f = dict(zip(FEATURE_NAMES, loud)), dict(zip(FEATURE_NAMES, calm))
    assert len(loud) == len(FEATURE_NAMES)
    assert f[0]["motion"] > 0.01 and f[1]["motion"] == pytest.approx(0, abs=1e-3)
    assert f[0]["has_audio"] == 1 and f[1]["has_audio"] == 0 and f[0]["audio_rms_db"] > -20 > f[1]["audio_rms_db"]
    assert f[1]["brightness"] > f[0]["brightness"]  # positive valence is brighter
    assert f[1]["hue_45"] + f[1]["hue_90"] > 0.9  # contentment: hue 90 +- 12 degrees
    assert f[0]["duration"] == pytest.approx(1.0, abs=0.05)


def test_clip_features_name_an_unreadable_file(tmp_path):
    with pytest.raises(MediaError, match="bad.mp4"):
        clip_features(tmp_path / "bad.mp4")


def test_classifier_beats_chance_on_heldout_clips(featured):
    rows, features = featured
    labels = [r["true_emotion"] for r in rows]
    labeller = FeatureClassifier(seed=0)
    metrics = labeller.fit_features(features, labels, holdout=0.25)
    assert metrics["heldout_clips"] == 24 and metrics["chance_accuracy"] == pytest.approx(1 / 8)
    assert metrics["heldout_accuracy"] >= 0.5  # chance is 0.125
    # Fresh clips never seen in training.
    fresh = make_emotion_rows(rows[0]["video_path"].rsplit("/", 1)[0] + "/fresh", per_emotion=1, seed=7,
                              sources=("movie",))
    predicted = labeller.predict([r["video_path"] for r in fresh])
    assert np.mean([p == r["true_emotion"] for p, r in zip(predicted, fresh)]) >= 0.5
    proba = labeller.predict_proba([fresh[0]["video_path"]])
    assert proba.shape == (1, 8) and proba.sum() == pytest.approx(1.0)
    assert isinstance(labeller, Labeller)


def test_classifier_probabilities_cover_all_emotions_even_if_untrained(featured):
    rows, features = featured
    keep = [i for i, r in enumerate(rows) if r["true_emotion"] in ("fear", "awe")]
    labeller = FeatureClassifier()
    labeller.fit_features(features[keep], [rows[i]["true_emotion"] for i in keep], holdout=0)
    proba = labeller.proba_from_features(features[keep[:2]])
    assert proba.shape == (2, 8)
    assert set(np.flatnonzero(proba.sum(axis=0))) == {EMOTIONS.index("fear"), EMOTIONS.index("awe")}
    with pytest.raises(ValueError, match="at least two emotions"):
        FeatureClassifier().fit_features(features[:2], ["fear", "fear"])
    with pytest.raises(ValueError, match="not emotions"):
        FeatureClassifier().fit_features(features[:2], ["fear", "happy"])


def test_save_load_round_trip_and_version_check(featured, tmp_path):
    rows, features = featured
    labeller = FeatureClassifier()
    labeller.fit_features(features, [r["true_emotion"] for r in rows])
    path = labeller.save(tmp_path / "labeller.skops")
    loaded = FeatureClassifier.load(path)
    np.testing.assert_allclose(loaded.proba_from_features(features), labeller.proba_from_features(features))
    assert loaded.metrics["heldout_accuracy"] == labeller.metrics["heldout_accuracy"]
    # The same model saves to the same bytes (the evaluator is versioned by its sha256): skops' object-id names
    # are renumbered. A second, separately fitted copy must match byte for byte.
    again = FeatureClassifier()
    again.fit_features(features, [r["true_emotion"] for r in rows])
    assert again.save(tmp_path / "again.skops").read_bytes() == path.read_bytes()
    meta_path = tmp_path / "labeller.skops.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(ValueError, match="v99 is not emovid-feature-classifier v1"):
        FeatureClassifier.load(path)
    meta_path.write_text(json.dumps({**meta, "feature_names": ["x"]}))
    with pytest.raises(ValueError, match="other emotions or features"):
        FeatureClassifier.load(path)
    with pytest.raises(FileNotFoundError, match="missing"):
        FeatureClassifier.load(tmp_path / "nothing.skops")


@pytest.mark.parametrize("answer, emotion, reason", [
    ("Sadness.", "sadness", None),
    ("  FEAR  ", "fear", None),
    ("The emotion is: Anger!", "anger", None),
    ("Answer: excited!!!", "excitement", None),
    ("It is not anger, it is sadness.", "sadness", None),
    ("No, it's fear.", "fear", None),
    ("mind blown", "awe", None),
    ("disgusted", "disgust", None),
    ("happy", None, "unparseable"),
    ("Joy", None, "unparseable"),
    ("None", None, "none"),
    ("No specific emotion.", None, "none"),
    ("anger or fear", None, "ambiguous: names anger, fear"),
    ("", None, "unparseable"),
])
def test_parse_emotion(answer, emotion, reason):
    parsed = parse_emotion(answer)
    assert (parsed.emotion, parsed.reason) == (emotion, reason)


class FakeGenerator:
    """Stands in for the transformers model at the `Generate` boundary and records what it was given."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, conversations, videos, max_new_tokens):
        self.calls.append((conversations, videos, max_new_tokens))
        return [self.answers.pop(0) for _ in conversations]


def test_vlm_labeller_prompt_frames_and_parsing(tmp_path):
    rng = np.random.default_rng(0)
    clips = [write_emotion_clip(tmp_path / f"c{i}.mp4", "fear", rng, frames=16) for i in range(3)]
    fake = FakeGenerator(["Fear.", "I think it is AWE", "happy"])
    labeller = VLMLabeller("some/model", generate=fake, num_frames=4, frame_size=(16, 12), batch_size=2)
    predictions = labeller.label(clips)
    assert [p.emotion for p in predictions] == ["fear", "awe", None]
    assert predictions[2].raw == "happy" and predictions[2].reason == "unparseable"
    assert predictions[0].confidence == 1.0 and predictions[2].confidence == 0.0
    assert [len(c[0]) for c in fake.calls] == [2, 1]  # batches of 2
    conversation, videos, max_new_tokens = fake.calls[0]
    message = conversation[0][0]
    assert message["role"] == "user" and message["content"][0] == {"type": "video"}
    prompt = message["content"][1]["text"]
    assert "exactly one" in prompt and all(e in prompt for e in EMOTIONS)
    assert videos[0].shape == (4, 12, 16, 3) and videos[0].dtype == np.uint8
    assert max_new_tokens == labeller.max_new_tokens
    fake.answers = ["sadness", "no idea", "Contentment"]
    proba = labeller.predict_proba(clips)
    assert proba.tolist()[0] == [0, 0, 0, 0, 0, 0, 0, 1.0] and proba[1].sum() == 0
    assert isinstance(labeller, Labeller)


def test_emotion_question_with_caption():
    assert emotion_question("A dog runs.").startswith('The video is described as: "A dog runs."')


def test_vlm_labeller_without_weights_fails_naming_the_model(tmp_path):
    rng = np.random.default_rng(0)
    clip = write_emotion_clip(tmp_path / "c.mp4", "awe", rng)
    labeller = VLMLabeller(str(tmp_path / "no-such-model"))
    with pytest.raises(OSError, match="no-such-model"):
        labeller.predict([clip])


def test_a_missing_sound_track_is_silence_and_a_broken_one_is_reported(tmp_path, monkeypatch, caplog):
    import logging

    from factory import make_video

    from emovid_datasets.labelling import features

    silent = make_video(tmp_path / "silent.mp4", audio=False)
    loud = make_video(tmp_path / "tone.mp4", audio=True)
    with caplog.at_level(logging.WARNING, logger="emovid"):
        assert features.audio_features(silent)["has_audio"] == 0.0
        assert features.audio_features(loud)["has_audio"] == 1.0
    assert not caplog.records  # no sound track is normal (stickers): nothing to warn about

    def broken(src, **kwargs):
        raise MediaError(f"{src}: audio decoding failed (Invalid data found when processing input)")

    monkeypatch.setattr(features, "decode_audio", broken)
    with caplog.at_level(logging.WARNING, logger="emovid"):
        assert features.audio_features(loud) == {"audio_rms_db": features.SILENCE_DB, "audio_zcr": 0.0,
                                                 "has_audio": 0.0}
    assert any("tone.mp4: audio decoding failed" in r.getMessage() for r in caplog.records)
