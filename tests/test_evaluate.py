"""`emovid evaluate` end to end: generated MP4s matched by clip id, tiny random CLIP/I3D/classifier, Table 3 output."""

import json
import pickle

import numpy as np
import pytest
from factory import make_dataset, make_video
from PIL import Image
from tiny_models import HueClassifier, TinyI3D, save_tiny_clip, save_torchscript

from emovid_datasets.cli import main
from emovid_datasets.evaluation.evaluate import clip_text
from emovid_datasets.evaluation.extractors import ClipEncoder, load_video_extractor
from emovid_datasets.evaluation.metrics import clip_score, flicker, frechet_distance, sd_score
from emovid_datasets.loading import load_emovid
from emovid_datasets.media import read_frames
from emovid_datasets.taxonomy import EMOTIONS, SOURCES

# clip id -> emotion whose colour the "generated" video shows (the hue classifier reads it back)
GENERATED = {
    "animation-amusement-01": "amusement",
    "animation-anger-01": "anger",
    "movie-awe-01": "contentment",       # wrong class, right valence
    "movie-fear-01": "fear",
    "sticker-sadness-01": "excitement",  # wrong class and valence
    "sticker-excitement-01": "excitement",
}


def emotion_colour(emotion: str) -> tuple[int, int, int]:
    """The factory's colour code: hue = emotion index x 45 degrees."""
    rgb = Image.new("HSV", (1, 1), (EMOTIONS.index(emotion) * 32, 200, 150)).convert("RGB").getpixel((0, 0))
    return tuple(int(c) for c in rgb)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    # No EA evaluator in this dataset: EA is null unless a --classifier is given.
    dataset = make_dataset(root / "ds", per_cell=1, benchmark_per_cell=1, evaluator=False)
    generated = root / "generated"
    generated.mkdir()
    for cid, shown in GENERATED.items():
        make_video(generated / f"{cid}.mp4", frames=16, color=emotion_colour(shown), audio=False)
    make_video(generated / "not-a-benchmark-clip.mp4", frames=4, audio=False)
    (generated / "sticker-awe-01.mp4").write_bytes(b"this is not a video")
    models = {"clip": save_tiny_clip(root / "clip"), "fvd": save_torchscript(TinyI3D(), root / "i3d.pt")}
    models["pickle"] = root / "hue.pkl"
    models["pickle"].write_bytes(pickle.dumps(HueClassifier()))
    return {"dataset": dataset, "generated": generated, "root": root, **models}


def run(setup, task, out_name, *extra):
    out = setup["root"] / out_name
    code = main(["evaluate", "--generated", str(setup["generated"]), "--benchmark", str(setup["dataset"]),
                 "--task", task, "--out", str(out), "--device", "cpu", *extra])
    assert code == 0
    return json.loads(out.read_text())


def test_t2v_end_to_end_matches_direct_computation(setup, capsys):
    result = run(setup, "t2v", "t2v.json", "--clip-model", str(setup["clip"]), "--fvd-model", str(setup["fvd"]),
                 "--classifier", str(setup["pickle"]))
    table = capsys.readouterr().out
    assert result["matched"] == 6 and result["unmatched"] == ["not-a-benchmark-clip"]
    assert [f["clip_id"] for f in result["failed"]] == ["sticker-awe-01"]
    assert len(result["missing"]) == 24 - 7

    overall = result["overall"]
    assert overall["ea8"]["value"] == pytest.approx(100 * 4 / 6) and overall["ea2"]["value"] == pytest.approx(100 * 5 / 6)
    assert result["per_source"]["movie"]["ea8"]["value"] == 50.0 and result["per_source"]["movie"]["ea2"]["value"] == 100.0
    assert result["per_source"]["sticker"]["ea2"]["value"] == 50.0
    assert result["per_emotion"]["awe"]["ea8"]["value"] == 0.0
    assert set(result["per_emotion"]) == {c.split("-")[1] for c in GENERATED}

    bench = load_emovid(str(setup["dataset"]), split="benchmark", decode_media=False)
    real = {r["clip_id"]: r for r in bench}
    clip = ClipEncoder.load(str(setup["clip"]), device="cpu")
    i3d = load_video_extractor(str(setup["fvd"]), device="cpu")
    real_f, fake_f = [], []
    for entry in result["per_clip"]:
        frames = read_frames(setup["generated"] / f"{entry['clip_id']}.mp4")
        row = real[entry["clip_id"]]
        emotion = bench.features["emotion"].int2str(row["emotion"])
        text, _ = clip.encode_texts([clip_text(row["caption"], emotion)])
        assert entry["flicker"] == pytest.approx(flicker(frames))
        assert entry["clip"] == pytest.approx(clip_score(clip.encode_images(frames), text[0]), abs=1e-6)
        assert entry["predicted"] == GENERATED[entry["clip_id"]]
        real_f.append(i3d(read_frames(row["video"])))
        fake_f.append(i3d(frames))
    assert overall["fvd"] == pytest.approx(frechet_distance(np.stack(real_f), np.stack(fake_f)), rel=1e-6)
    assert overall["clip"] == pytest.approx(np.mean([c["clip"] for c in result["per_clip"]]))
    assert overall["flicker"] < 0.01
    assert result["per_source"]["animation"]["fvd_small_sample"] is True  # 2 clips, 6-d features
    assert "fvd_small_sample" not in overall

    header = next(line for line in table.splitlines() if "FVD↓" in line)
    assert [c.strip() for c in header.strip("|").split("|")] == ["Task", "Group", "N", "FVD↓", "CLIP↑", "Flicker↓",
                                                                  "EA-2↑", "EA-8↑"]
    row = next(line for line in table.splitlines() if "| overall" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["T2V", "overall", "6", f"{overall['fvd']:.1f}", f"{overall['clip']:.4f}",
                     f"{overall['flicker']:.4f}", "83.33", "66.67"]
    assert sum("source=" in line for line in table.splitlines()) == len(SOURCES)


def test_i2v_sd_score_with_both_references(setup):
    first = run(setup, "i2v", "i2v.json", "--clip-model", str(setup["clip"]),
                "--classifier", "tiny_models:HueClassifier")
    assert first["overall"]["sd"] == pytest.approx(1.0, abs=1e-3)  # still videos match their first frame
    assert "clip" not in first["overall"] and first["per_clip"][0]["clip"] is None
    assert first["overall"]["fvd"] is None and any("--fvd-model" in n for n in first["notes"])
    assert first["overall"]["ea8"]["value"] == pytest.approx(100 * 4 / 6)

    bench = run(setup, "i2v", "i2v-bench.json", "--clip-model", str(setup["clip"]),
                "--sd-reference", "benchmark-first-frame")
    assert bench["settings"]["sd_reference"] == "benchmark-first-frame"
    real = {r["clip_id"]: r for r in load_emovid(str(setup["dataset"]), split="benchmark", decode_media=False)}
    clip = ClipEncoder.load(str(setup["clip"]), device="cpu")
    entry = next(c for c in bench["per_clip"] if c["clip_id"] == "movie-awe-01")
    frames = read_frames(setup["generated"] / "movie-awe-01.mp4")
    reference = clip.encode_images(read_frames(real["movie-awe-01"]["video"])[:1])[0]
    assert entry["sd"] == pytest.approx(sd_score(clip.encode_images(frames), reference), abs=1e-6)


def test_metrics_without_models_are_null_with_notes(setup, capsys):
    result = run(setup, "t2v", "bare.json")
    overall = result["overall"]
    assert overall["fvd"] is None and overall["clip"] is None and overall["ea2"] is None and overall["ea8"] is None
    assert overall["flicker"] is not None
    notes = " ".join(result["notes"])
    assert "--clip-model" in notes and "--fvd-model" in notes and "--classifier" in notes
    table = capsys.readouterr().out
    assert "| T2V  | overall" in table and "note:" in table and "–" in table


def test_bad_inputs_are_clear_errors(setup, tmp_path):
    base = ["evaluate", "--benchmark", str(setup["dataset"]), "--task", "t2v", "--out", str(tmp_path / "x.json")]
    assert main(base + ["--generated", str(tmp_path / "nope")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(base + ["--generated", str(tmp_path / "empty")]) == 2
    assert main(base + ["--generated", str(setup["generated"]), "--classifier", str(tmp_path / "none.pkl")]) == 2
    assert not (tmp_path / "x.json").exists()


class RefusesExcitement(HueClassifier):
    """Fails on any batch holding an excitement-coloured video (as a real model might on a bad file)."""

    def predict_proba(self, videos):
        probs = super().predict_proba(videos)
        if probs[:, EMOTIONS.index("excitement")].any():
            raise ValueError("cannot classify this video")
        return probs


def test_classifier_failures_leave_only_those_clips_out_of_ea(setup):
    from emovid_datasets.evaluation.evaluate import evaluate
    from emovid_datasets.evaluation.extractors import OrderedClassifier

    bench = load_emovid(str(setup["dataset"]), split="benchmark", decode_media=False)
    result = evaluate(setup["generated"], bench, "t2v", classifier=OrderedClassifier(RefusesExcitement()), batch_size=4)
    failed = sorted(c["clip_id"] for c in result["per_clip"] if c.get("classifier_error"))
    assert failed == ["sticker-excitement-01", "sticker-sadness-01"]
    assert result["overall"]["ea8"]["n"] == 4 and result["overall"]["ea8"]["value"] == 75.0
    assert result["overall"]["ea2"]["value"] == 100.0 and result["per_source"]["sticker"]["ea8"] is None


class AbstainsOnExcitement(HueClassifier):
    """Answers an all-zero row for excitement-coloured videos, as the VLM labeller does for an unparsable reply."""

    def predict_proba(self, videos):
        probs = super().predict_proba(videos)
        probs[probs[:, EMOTIONS.index("excitement")] > 0] = 0.0
        return probs


def test_a_row_without_probability_mass_is_left_out_of_ea_not_counted_as_amusement(setup):
    from emovid_datasets.evaluation.evaluate import evaluate
    from emovid_datasets.evaluation.extractors import OrderedClassifier

    bench = load_emovid(str(setup["dataset"]), split="benchmark", decode_media=False)
    result = evaluate(setup["generated"], bench, "t2v", classifier=OrderedClassifier(AbstainsOnExcitement()))
    abstained = [c for c in result["per_clip"] if c["predicted"] is None]
    assert sorted(c["clip_id"] for c in abstained) == ["sticker-excitement-01", "sticker-sadness-01"]  # excitement hue
    assert all("no emotion" in c["classifier_error"] for c in abstained)
    assert result["overall"]["ea8"]["n"] == len(result["per_clip"]) - 2


def test_clip_text_and_preprocessing_options_reach_the_scores(setup):
    """--clip-text caption --preprocessing evalcrafter: the score is CLIP(raw 0-255 frames, caption alone)."""
    default = run(setup, "t2v", "t2v-default.json", "--clip-model", str(setup["clip"]))
    result = run(setup, "t2v", "t2v-options.json", "--clip-model", str(setup["clip"]), "--clip-text", "caption",
                 "--preprocessing", "evalcrafter")
    bench = load_emovid(str(setup["dataset"]), split="benchmark", decode_media=False)
    captions = {r["clip_id"]: r["caption"] for r in bench}
    clip = ClipEncoder.load(str(setup["clip"]), device="cpu", preprocessing="evalcrafter")
    for entry in result["per_clip"]:
        frames = read_frames(setup["generated"] / f"{entry['clip_id']}.mp4")
        text, _ = clip.encode_texts([clip_text(captions[entry["clip_id"]], "fear", "caption")])
        assert entry["clip"] == pytest.approx(clip_score(clip.encode_images(frames), text[0]), abs=1e-6)
    before = {c["clip_id"]: c["clip"] for c in default["per_clip"]}
    assert any(abs(c["clip"] - before[c["clip_id"]]) > 1e-4 for c in result["per_clip"])


def test_several_runs_share_one_table_with_the_papers_rows_and_the_ceiling(setup, capsys):
    from emovid_datasets.evaluation.evaluator import REFERENCE_NAME

    other = setup["root"] / "generated-other"
    other.mkdir()
    for cid in list(GENERATED)[:4]:  # another "model": every video in fear's colour, fewer frames
        make_video(other / f"{cid}.mp4", frames=8, color=emotion_colour("fear"), audio=False)
    models = ["--clip-model", str(setup["clip"]), "--fvd-model", str(setup["fvd"]), "--classifier", str(setup["pickle"])]
    singles = {"wan": run(setup, "t2v", "single-wan.json", *models)}
    capsys.readouterr()
    code = main(["evaluate", "--generated", str(other), "--benchmark", str(setup["dataset"]), "--task", "t2v",
                 "--out", str(setup["root"] / "single-other.json"), "--device", "cpu", *models])
    assert code == 0
    singles["other"] = json.loads((setup["root"] / "single-other.json").read_text())
    capsys.readouterr()

    out = setup["root"] / "table3.json"
    assert main(["evaluate", "--generated", f"wan={setup['generated']}", f"other={other}", "--benchmark",
                 str(setup["dataset"]), "--task", "t2v", "--out", str(out), "--device", "cpu", *models]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    lines = {cells[1]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                           for line in printed.splitlines() if line.startswith("| T2V"))}
    for name, single in singles.items():
        assert report["runs"][name]["overall"] == single["overall"]
        assert report["runs"][name]["per_emotion"] == single["per_emotion"]
        o = single["overall"]
        assert lines[name] == ["T2V", name, "measured", str(o["n"]), f"{o['fvd']:.1f}", f"{o['clip']:.4f}",
                               f"{o['flicker']:.4f}", f"{o['ea2']['value']:.2f}", f"{o['ea8']['value']:.2f}"]
        ref = single["reference"]  # the two runs cover different clips: one ceiling row each
        assert lines[f"{REFERENCE_NAME}, clips of {name}"][2:] == [
            "evaluator ceiling", str(ref["n"]), "–", "–", "–", f"{ref['ea2']['value']:.2f}", f"{ref['ea8']['value']:.2f}"]
    reported = [cells for cells in lines.values() if cells[2] == "reported (paper)"]
    assert len(reported) == 5 and lines["Wan (after)"][3:] == ["240", "573.7", "0.3021", "0.0143", "88.33", "48.33"]
    assert "I2V" not in printed and "DynamiCrafter512" not in printed

    markdown = out.with_suffix(".md").read_text()
    assert "| T2V  | Wan (after)" in markdown and "### EA-8↑ per emotion" in markdown
    page = out.with_suffix(".html").read_text()
    assert page.count("data:image/png;base64,") == 1 + 2 * 4  # the heatmaps, then 4 shared clips per run
    assert "VideoCrafter-V2" in page and 'alt="other movie-awe-01"' in page
    assert main(["evaluate", "--generated", f"a={other}", "--benchmark", str(setup["dataset"]), "--task", "t2v",
                 "--out", str(setup["root"] / "table3.txt")]) == 2  # the .md and .html need a .json beside them
