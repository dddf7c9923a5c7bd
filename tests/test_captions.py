"""Captions: the honest factual captioner, the VLM captioner's prompt/cleanup, and the resumable batched stage."""

import argparse
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from emotion_clips import make_emotion_rows, write_emotion_clip

from builder_scripts.cli import COMMAND_MODULES
from builder_scripts.engine.manifest import read_manifest, read_rejects, write_manifest
from builder_scripts.stages import captions
from emovid_datasets.labelling import Captioner, FactualCaptioner, VLMCaptioner
from emovid_datasets.labelling.captioner import clean_caption, hue_name
from emovid_datasets.taxonomy import EMOTIONS


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    rows = make_emotion_rows(tmp_path_factory.mktemp("clips"), per_emotion=1, seed=4, sources=("movie", "sticker"))
    for row in rows:
        row.pop("true_emotion")
    return rows


def test_registered_in_cli():
    assert "builder_scripts.stages.captions" in COMMAND_MODULES


def test_hue_names():
    assert [hue_name(h) for h in (0, 30, 60, 120, 180, 230, 280, 320, 350)] == [
        "red", "orange", "yellow", "green", "cyan", "blue", "purple", "magenta", "red"]


def test_factual_caption_states_only_measurements(tmp_path):
    rng = np.random.default_rng(0)
    movie = write_emotion_clip(tmp_path / "m.mp4", "excitement", rng)  # green, bright, moving, loud
    sticker = write_emotion_clip(tmp_path / "s.mp4", "contentment", rng, audio=False)  # still
    captioner = FactualCaptioner()
    assert isinstance(captioner, Captioner)
    text_movie, text_sticker = captioner.caption([
        {"clip_id": "m", "source": "movie", "video_path": str(movie)},
        {"clip_id": "s", "source": "sticker", "video_path": str(sticker), "title": "cozy cat",
         "tags": "cozy;cat;nap"},
    ])
    assert text_movie.startswith("A 1.0-second film clip with sound.")
    assert "bright" in text_movie and "green" in text_movie and "some motion" in text_movie
    assert text_sticker.startswith("A 1.0-second animated sticker without sound.")
    assert 'Its title is "cozy cat".' in text_sticker and "tagged cozy, cat, nap" in text_sticker
    assert "almost no motion" in text_sticker
    for text in (text_movie, text_sticker):  # no claims about feelings or content it did not measure
        assert not any(e in text.lower() for e in EMOTIONS)


def test_factual_caption_uses_the_pipelines_measurements(tmp_path):
    clip = write_emotion_clip(tmp_path / "c.mp4", "excitement", np.random.default_rng(0))
    row = {"clip_id": "c", "source": "animation", "video_path": str(clip), "duration": 4.25, "has_audio": False,
           "brightness_raw": 0.1, "colorfulness_raw": 0.05, "hue_raw": 10.0}
    text = FactualCaptioner().describe(row)
    assert text.startswith("A 4.2-second animated clip without sound.") or text.startswith("A 4.3-second")
    assert "dark with muted, nearly grey colours" in text


def test_factual_caption_of_a_real_clip(shared_media):
    # Colour as the attributes stage measured it; duration, sound and motion measured here.
    text = FactualCaptioner().describe({"clip_id": "bbb", "source": "animation", "brightness": 0.6,
                                        "colorfulness": 0.3, "hue": 50,
                                        "video_path": str(shared_media / "big_buck_bunny_480p_30s.mp4")})
    assert text.startswith("A 30.0-second animated clip with sound.")
    assert "moderately lit and moderately colourful, mostly yellow, with a lot of motion." in text


def test_vlm_captioner_prompt_and_cleanup(rows):
    seen = []

    def fake(conversations, videos, max_new_tokens):
        seen.append((conversations, videos, max_new_tokens))
        return ['Caption: "A green field  at noon."', "  Two people argue\nin a kitchen. "]

    captioner = VLMCaptioner("org/model", generate=fake, num_frames=3, frame_size=(16, 12))
    assert captioner.caption(rows[:2]) == ["A green field at noon.", "Two people argue in a kitchen."]
    conversations, videos, max_new_tokens = seen[0]
    assert conversations[0][0]["content"][0] == {"type": "video"}
    assert "Describe this video" in conversations[0][0]["content"][1]["text"]
    assert videos[0].shape == (3, 12, 16, 3) and max_new_tokens == 96
    empty = VLMCaptioner("org/model", generate=lambda c, v, n: ["ok", "  "])
    with pytest.raises(ValueError, match=f"empty caption for {rows[1]['clip_id']}"):
        empty.caption(rows[:2])
    assert clean_caption("'quoted'") == "quoted"


KILL_SCRIPT = textwrap.dedent("""
    import json, os, signal, sys
    from builder_scripts.stages.captions import run_captions
    from emovid_datasets.labelling import FactualCaptioner

    real, calls = FactualCaptioner(), []

    class Dying:
        name = "factual"

        def caption(self, clips):
            calls.append(len(clips))
            if len(calls) == 3:  # killed outright in the third batch: no finally, no last checkpoint
                os.kill(os.getpid(), signal.SIGKILL)
            return real.caption(clips)

    run_captions(json.loads(open(sys.argv[1]).read()), sys.argv[2], captioner=Dying(), batch_size=4, progress=False)
""")


class Counting:
    """The factual captioner, recording the size of every batch it is given."""

    name = "factual"

    def __init__(self) -> None:
        self.real, self.calls = FactualCaptioner(), []

    def caption(self, clips):
        self.calls.append(len(clips))
        return self.real.caption(clips)


def test_caption_stage_checkpoints_each_batch_and_resumes_after_a_kill(rows, tmp_path):
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "rows.json"), str(out)],
                            cwd=Path(__file__).resolve().parents[1], timeout=300)
    assert killed.returncode == -signal.SIGKILL and not (out / "stage.json").exists()
    assert len(read_manifest(out)) == 8  # the two whole batches before the kill were checkpointed
    counting = Counting()
    captions.run_captions(rows, out, captioner=counting, batch_size=4, progress=False)
    assert sum(counting.calls) == len(rows) - 8  # only the rest
    done = read_manifest(out)
    assert sorted(r["clip_id"] for r in done) == sorted(r["clip_id"] for r in rows)
    assert all(r["caption"].startswith("A 1.0-second") and r["captioner"] == "factual" for r in done)
    again = Counting()
    captions.run_captions(rows, out, captioner=again, batch_size=4, progress=False)
    assert again.calls == []


def test_existing_captions_are_kept_and_bad_clips_rejected_alone(rows, tmp_path):
    batch = [dict(r) for r in rows[:5]]
    batch[0]["caption"] = "Hand-written caption."
    batch[2]["video_path"] = str(tmp_path / "missing.mp4")
    captions.run_captions(batch, tmp_path / "out", batch_size=8, progress=False)
    out = {r["clip_id"]: r for r in read_manifest(tmp_path / "out")}
    assert out[batch[0]["clip_id"]]["caption"] == "Hand-written caption."
    assert batch[2]["clip_id"] not in out and len(out) == 4
    (bad,) = read_rejects(tmp_path / "out")
    assert bad["clip_id"] == batch[2]["clip_id"] and "missing.mp4" in bad["reason"]
    # --overwrite through the CLI wiring replaces captions (in a fresh folder).
    write_manifest(tmp_path / "in", batch[:2])
    parser = argparse.ArgumentParser()
    captions.add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["caption", str(tmp_path / "in"), "--out", str(tmp_path / "o2"), "--overwrite"])
    assert args.func(args) == 0
    assert all(r["caption"].startswith("A 1.0-second") for r in read_manifest(tmp_path / "o2"))
