"""Stage `attributes`: one decoding pass per clip, whose values predict and caption then read instead of decoding."""

import numpy as np
import pytest
from emotion_clips import make_emotion_rows
from factory import make_video

from builder_scripts.engine.manifest import read_manifest
from builder_scripts.stages import annotate, attributes, captions
from emovid_datasets.color import color_attributes
from emovid_datasets.labelling import captioner as captioner_module
from emovid_datasets.labelling import features as features_module
from emovid_datasets.labelling import labeller as labeller_module
from emovid_datasets.labelling.features import FEATURE_NAMES, clip_features
from emovid_datasets.media import probe
from emovid_datasets.media.probe import PROBE_COLUMNS


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    root = tmp_path_factory.mktemp("attributes")
    rows = make_emotion_rows(root / "clips", per_emotion=2, sources=("animation", "movie"))
    gradient = lambda i: np.linspace(0, 255, 854 * 480 * 3).reshape(480, 854, 3).astype(np.uint8) + i  # noqa: E731
    long = make_video(root / "clips" / "long.mp4", frames=90, size=(854, 480), color=gradient)  # odd chroma width
    rows.append({"clip_id": "long", "source": "movie", "video_path": str(long), "origin": "test:long"})
    attributes.run_attributes(rows, root / "attributes", progress=False)
    return root, rows, {r["clip_id"]: r for r in read_manifest(root / "attributes")}


def test_one_pass_gives_what_the_three_separate_measurements_give(measured):
    _, rows, out = measured
    assert set(out) == {r["clip_id"] for r in rows}
    for clip_id, row in out.items():
        path = row["video_path"]
        info = probe(path)
        assert {k: row[k] for k in PROBE_COLUMNS} == {k: getattr(info, k) for k in PROBE_COLUMNS}, clip_id
        colour = color_attributes(path)
        colour.pop("frames_sampled")
        assert {k: row[k] for k in colour} == pytest.approx(colour), clip_id
        np.testing.assert_allclose(row["label_features"], clip_features(path), rtol=1e-6, atol=1e-6)
        assert row["motion"] == pytest.approx(row["label_features"][FEATURE_NAMES.index("motion")])


def _no_decoding(*args, **kwargs):
    raise AssertionError("the clip was decoded again")


def test_predict_and_caption_read_the_stored_values_and_decode_nothing(measured, monkeypatch, tmp_path):
    root, rows, out = measured
    truth = {r["clip_id"]: r.get("true_emotion") for r in rows}
    manifest = [dict(r, emotion=truth[r["clip_id"]], label_source="human") if i % 2 and truth[r["clip_id"]]
                else dict(r) for i, r in enumerate(out.values())]
    for module, name in ((features_module, "clip_features"), (labeller_module, "clip_features"),
                         (captioner_module, "sample_frames"), (captioner_module, "color_attributes"),
                         (captioner_module, "probe")):
        monkeypatch.setattr(module, name, _no_decoding)
    summary = annotate.predict_labels(manifest, tmp_path / "labels", progress=False)
    assert summary.rejected == 0 and summary.rows == len(manifest)
    labels = read_manifest(tmp_path / "labels")
    captions.run_captions(labels, tmp_path / "captions", progress=False)
    captioned = read_manifest(tmp_path / "captions")
    assert len(captioned) == len(manifest) and all(r["caption"] for r in captioned)

    # Without the stored values the same stages must decode (so the patch above is what they avoid).
    bare = [{k: v for k, v in r.items() if k not in ("label_features", "motion")} for r in labels]
    captions.run_captions(bare, tmp_path / "captions-bare", progress=False)
    assert len(read_manifest(tmp_path / "captions-bare")) == 0
