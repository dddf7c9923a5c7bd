"""Benchmark metrics against hand-computed values, and the pluggable extractors with tiny random models."""

import pickle

import numpy as np
import pytest
import scipy.linalg
from factory import make_video
from tiny_models import HueClassifier, InputProbe, ReversedClassifier, TinyI3D, save_tiny_clip, save_torchscript

from emovid_datasets.evaluation.extractors import ClipEncoder, OrderedClassifier, load_classifier, load_video_extractor
from emovid_datasets.evaluation.metrics import (
    SmallSampleWarning,
    argmax_emotions,
    clip_score,
    ea_scores,
    flicker,
    frechet_distance,
    frechet_from_stats,
    gaussian_stats,
    sd_score,
    wilson_interval,
)
from emovid_datasets.media import read_frames
from emovid_datasets.taxonomy import EMOTIONS


def direct_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(ca @ cb).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca + cb - 2 * root))


def test_frechet_matches_scipy_sqrtm_on_full_rank_data():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6))
    b = rng.normal(size=(250, 6)) @ rng.normal(size=(6, 6)) + 0.5
    assert frechet_distance(a, b) == pytest.approx(direct_frechet(a, b), rel=1e-9)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-9)


def test_frechet_identical_sets_is_zero_and_shift_gives_squared_mean_difference():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(100, 4))
    shift = np.array([1.0, -2.0, 0.5, 3.0])
    assert abs(frechet_distance(a, a)) < 1e-9
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


def test_frechet_one_dimensional_by_hand_and_covariance_convention():
    # N(0, 1) vs N(3, 4): 9 + 1 + 4 - 2 * sqrt(1 * 4) = 10
    assert frechet_from_stats(np.zeros(1), np.eye(1), np.full(1, 3.0), 4 * np.eye(1)) == pytest.approx(10.0)
    x = np.array([[0.0], [2.0]])
    assert gaussian_stats(x)[1][0, 0] == pytest.approx(2.0)       # /(N-1)
    assert gaussian_stats(x, ddof=0)[1][0, 0] == pytest.approx(1.0)  # /N


def test_frechet_warns_when_samples_are_fewer_than_dimensions():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 10)), rng.normal(size=(5, 10)) + 1
    with pytest.warns(SmallSampleWarning) as caught:
        value = frechet_distance(a, b)
    assert [str(w.message).split(";")[0] for w in caught] == ["FVD: 5 real samples < 10 feature dims",
                                                              "FVD: 5 generated samples < 10 feature dims"]
    assert value == pytest.approx(direct_frechet(a, b), abs=1e-5)
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance(a[:1], b)


def test_flicker_known_answers():
    constant = [np.full((4, 6, 3), 90, np.uint8)] * 5
    alternating = [np.full((4, 6, 3), 255 * (i % 2), np.uint8) for i in range(6)]
    ramp = [np.full((2, 2, 3), 51 * i, np.uint8) for i in range(4)]  # every step 51 / 255 = 0.2
    assert flicker(constant) == 0.0
    assert flicker(alternating) == 1.0
    assert flicker(ramp) == pytest.approx(0.2)
    half = [np.zeros((2, 2, 3), np.uint8), np.concatenate([np.zeros((1, 2, 3)), np.full((1, 2, 3), 255)]).astype(np.uint8)]
    assert flicker(half) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="two frames"):
        flicker(constant[:1])


def test_flicker_on_encoded_videos(tmp_path):
    still = make_video(tmp_path / "still.mp4", frames=8, color=(40, 160, 90), audio=False)
    blink = make_video(tmp_path / "blink.mp4", frames=8, audio=False,
                       color=lambda i: np.full((48, 64, 3), 255 * (i % 2), np.uint8))
    assert flicker(read_frames(still)) < 0.005
    assert flicker(read_frames(blink)) > 0.95


def test_sd_and_clip_scores_by_hand():
    e0, e1 = np.array([1.0, 0.0]), np.array([0.0, 3.0])
    frames = np.stack([e0, 2 * e0, e1])
    assert sd_score(frames) == pytest.approx(0.5)                       # frames 1.. vs frame 0: (1 + 0) / 2
    assert sd_score(frames, reference_embedding=e1) == pytest.approx(1 / 3)  # every frame vs reference
    assert clip_score(np.stack([e0, e1]), np.array([1.0, 1.0])) == pytest.approx(1 / np.sqrt(2))
    assert clip_score(np.stack([e0]), np.array([-1.0, 0.0])) == pytest.approx(-1.0)  # raw cosine, no clamp
    with pytest.raises(ValueError):
        sd_score(frames[:1])


def test_wilson_interval_and_ea_scores_by_hand():
    low, high = wilson_interval(5, 10)
    assert (low, high) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    targets = ["amusement", "awe", "anger", "fear"]
    predicted = ["amusement", "contentment", "sadness", "awe"]
    scores = ea_scores(predicted, targets)
    assert scores["ea8"]["value"] == 25.0 and scores["ea8"]["correct"] == 1
    assert scores["ea2"]["value"] == 75.0 and scores["ea2"]["n"] == 4
    assert scores["ea2"]["ci_low"] == pytest.approx(100 * wilson_interval(3, 4)[0])
    assert argmax_emotions(np.eye(8)[[3, 7]]) == ["excitement", "sadness"]
    assert argmax_emotions(np.zeros((1, 8))) == [None]  # a classifier that could not answer names no emotion
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        argmax_emotions(np.ones((2, 3)))


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    return ClipEncoder.load(str(save_tiny_clip(tmp_path_factory.mktemp("clip"))), device="cpu")


def test_clip_encoder_loads_from_folder_and_embeds(tiny_clip, tmp_path):
    video = make_video(tmp_path / "v.mp4", frames=6, color=(200, 40, 40), audio=False)
    emb = tiny_clip.encode_images(read_frames(video), batch_size=4)
    assert emb.shape == (6, 8)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert sd_score(emb) == pytest.approx(1.0, abs=1e-3)  # a still video is consistent with its first frame
    raw = ClipEncoder(tiny_clip.model, tiny_clip.processor, preprocessing="evalcrafter").encode_images(read_frames(video))
    assert not np.allclose(raw, emb)
    text, cut = tiny_clip.encode_texts(["short", "x " * 200])
    assert text.shape == (2, 8) and cut == [False, True]
    with pytest.raises(FileNotFoundError, match="cannot be loaded"):
        ClipEncoder.load(str(tmp_path / "nothing"))


def test_torchscript_i3d_input_convention(tmp_path):
    extractor = load_video_extractor(str(save_torchscript(InputProbe(), tmp_path / "probe.pt")), device="cpu")
    white = np.full((10, 48, 64, 3), 255, np.uint8)
    mean, low, high, t, h, w = extractor(white)
    # Resizing rounds differently with other thread counts (1 + 2e-7); a wrong convention is off by >= 0.5:
    # [0, 1] puts black at 0, [0, 255] white at 255, the last 16 frames instead of the first give mean 1 below.
    close = dict(abs=1e-4)
    assert (mean, low, high) == pytest.approx((1.0, 1.0, 1.0), **close)  # [-1, 1]
    assert (t, h, w) == (16, 224, 224)  # 16 frames, 224 px
    black_then_white = np.concatenate([np.zeros((8, 48, 64, 3), np.uint8), np.full((20, 48, 64, 3), 255, np.uint8)])
    mean, low, high = extractor(black_then_white)[:3]
    assert (mean, low, high) == pytest.approx((0.0, -1.0, 1.0), **close)  # first 16 frames: 8 black + 8 white
    tiny = load_video_extractor(str(save_torchscript(TinyI3D(), tmp_path / "i3d.pt")), device="cpu")
    assert tiny(white).shape == (6,)
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(ValueError, match="junk.pt: not a TorchScript"):
        load_video_extractor(str(tmp_path / "junk.pt"))
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_video_extractor(str(tmp_path / "missing.pt"))


def test_load_classifier_from_pickle_and_module_spec_and_reorders_columns(tmp_path):
    video = make_video(tmp_path / "v.mp4", frames=3, color=(0, 0, 255), audio=False).read_bytes()  # hue 240
    target = [EMOTIONS[round(240 / 45) % 8]]
    path = tmp_path / "clf.pkl"
    path.write_bytes(pickle.dumps(HueClassifier()))
    for spec in (str(path), "tiny_models:HueClassifier", "tiny_models:ReversedClassifier"):
        clf = load_classifier(spec)
        assert argmax_emotions(clf.predict_proba([video])) == target
    with pytest.raises(ValueError, match="no predict_proba"):
        load_classifier("tiny_models:save_torchscript.__doc__")
    with pytest.raises(FileNotFoundError):
        load_classifier(str(tmp_path / "none.pkl"))

    class Wrong:
        classes_ = ["a"] * 8

        def predict_proba(self, videos):
            return np.ones((len(videos), 8))

    with pytest.raises(ValueError, match="not the 8 emotions"):
        OrderedClassifier(Wrong())
    assert ReversedClassifier.classes_[0] == "sadness"


def test_load_classifier_reads_the_labeller_saved_by_annotate(tmp_path):
    from emovid_datasets.labelling.labeller import FeatureClassifier

    colours = {"contentment": (40, 200, 60), "sadness": (30, 30, 160)}
    videos, labels = [], []
    for emotion, colour in colours.items():
        for k in range(3):
            shade = tuple(min(255, c + 12 * k) for c in colour)
            videos.append(make_video(tmp_path / f"{emotion}{k}.mp4", frames=4, color=shade, audio=False).read_bytes())
            labels.append(emotion)
    labeller = FeatureClassifier()
    labeller.fit(videos, labels, holdout=0)
    path = labeller.save(tmp_path / "labeller.skops")
    probs = load_classifier(str(path)).predict_proba(videos)
    assert probs.shape == (6, 8) and np.allclose(probs.sum(axis=1), 1.0)
    assert argmax_emotions(probs) == labels


def test_clip_text_rules():
    from emovid_datasets.evaluation.evaluate import clip_text

    assert clip_text(" A cat runs. ", "fear") == 'The video is in the "fear" emotion. A cat runs.'
    assert clip_text("A cat runs.", "fear", "paper") == 'A cat runs. The video is in the "fear" emotion.'
    assert clip_text(" A cat runs. ", "fear", "caption") == "A cat runs."
    with pytest.raises(ValueError, match="unknown CLIP text rule"):
        clip_text("A cat runs.", "fear", "both")
