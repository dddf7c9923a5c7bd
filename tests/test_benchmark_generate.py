"""`emovid benchmark generate` with the tiny random models: every benchmark clip's video, i2v first frames,
resume, data parallelism across processes, a saved diffusers folder and the prompts file."""

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from factory import make_dataset
from PIL import Image

from emovid_datasets.cli import main
from emovid_datasets.evaluation.generation import RECORD, benchmark_clips, clip_seed, process_share
from emovid_datasets.media import iter_frames, probe, read_frames
from emovid_datasets.taxonomy import emotion_prompt
from emovid_datasets.training.families import check_pipeline_task
from emovid_datasets.training.models import build_tiny

pytestmark = pytest.mark.usefixtures("torch_one_thread")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """The demo-sized benchmark: one clip per (source, emotion), 24 in all, colour coding the emotion."""
    return make_dataset(tmp_path_factory.mktemp("bench"), per_cell=1, benchmark_per_cell=1, evaluator=False)


@pytest.fixture(scope="module")
def bench(dataset):
    """{clip_id: (prompt, first frame as uint8)} read straight from the benchmark split."""
    return {c.clip_id: (emotion_prompt(c.dataset[c.index]["caption"], c.emotion), next(iter_frames(c.video())).array)
            for c in benchmark_clips(str(dataset))}


def generate(dataset, out, *extra):
    """`emovid benchmark generate` in this process; its exit code."""
    return main(["benchmark", "generate", "--benchmark", str(dataset), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def t2v_run(dataset, tmp_path_factory):
    """One tiny-wan t2v run over the whole benchmark, in this process, with the family's (tiny) defaults."""
    out = tmp_path_factory.mktemp("t2v") / "run"
    assert generate(dataset, out, "--task", "t2v", "--model", "tiny-wan") == 0
    return out


def test_every_benchmark_clip_gets_one_playable_video_and_the_run_is_recorded(t2v_run, bench):
    videos = sorted(t2v_run.glob("*.mp4"))
    assert [p.stem for p in videos] == sorted(bench) and len(videos) == 24
    for path in videos:
        info = probe(path)
        assert (info.num_frames, info.width, info.height, info.video_codec) == (9, 32, 32, "h264")
        assert abs(info.fps - 16) < 0.1 and read_frames(path).std() > 0
    record = json.loads((t2v_run / RECORD).read_text())
    assert (record["model"], record["family"], record["pipeline"], record["task"]) == \
        ("tiny-wan", "tiny-wan", "WanPipeline", "t2v")
    assert record["settings"] == {"num_frames": 9, "height": 32, "width": 32, "steps": 2, "guidance": 5.0,
                                  "fps": 16, "extra": {}}
    assert record["loras"] == [] and record["dtype"] == "fp32" and record["seed"]["base"] == 0
    assert record["revision"] == {"requested": None, "commit": None}
    # the per-clip seeds differ, so clips with the same prompt layout still get their own noise
    assert len({clip_seed(c) for c in bench}) == 24


def test_a_second_run_skips_everything_and_a_killed_run_resumes(t2v_run, dataset, tmp_path, monkeypatch, capsys):
    import emovid_datasets.training.families as families

    before = {p.name: p.read_bytes() for p in t2v_run.glob("*.mp4")}
    real_loader = families.load_video_pipeline
    monkeypatch.setattr(families, "load_video_pipeline", lambda *a, **k: pytest.fail("nothing was left to generate"))
    capsys.readouterr()
    assert generate(dataset, t2v_run, "--task", "t2v", "--model", "tiny-wan") == 0
    assert "wrote 0 videos, skipped 24" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in t2v_run.glob("*.mp4")} == before

    # a run killed mid-write left a hidden temporary and no video for one clip: the rerun makes just that one
    monkeypatch.setattr(families, "load_video_pipeline", real_loader)
    out = tmp_path / "resumed"
    shutil.copytree(t2v_run, out)
    (out / "movie-fear-01.mp4").unlink()
    leftover = out / ".movie-fear-01.mp4.tmp-0badf00d.mp4"
    leftover.write_bytes(b"half a video")
    assert generate(dataset, out, "--task", "t2v", "--model", "tiny-wan") == 0
    assert "wrote 1 videos, skipped 23" in capsys.readouterr().out
    assert not leftover.exists()
    assert (out / "movie-fear-01.mp4").read_bytes() == before["movie-fear-01.mp4"]  # the same seed, the same video

    # other settings into the same folder would mix two runs: refused, nothing written
    assert generate(dataset, out, "--task", "t2v", "--model", "tiny-wan", "--steps", "3") == 2
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(before)


def test_a_run_dying_mid_video_leaves_no_half_file(t2v_run, dataset, tmp_path, monkeypatch):
    from emovid_datasets.media import Mp4Writer

    original, calls = Mp4Writer.write_frame, []

    def dies_in_the_second_video(self, frame):
        calls.append(1)
        if len(calls) == 13:  # frame 4 of the second clip's 9
            raise KeyboardInterrupt("killed")
        original(self, frame)

    monkeypatch.setattr(Mp4Writer, "write_frame", dies_in_the_second_video)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        generate(dataset, out, "--task", "t2v", "--model", "tiny-wan", "--limit", "2")
    first, second = sorted(p.name for p in t2v_run.glob("*.mp4"))[:2]
    assert sorted(p.name for p in out.iterdir()) == sorted([RECORD, first])  # no half second video, no temporary
    monkeypatch.setattr(Mp4Writer, "write_frame", original)
    assert generate(dataset, out, "--task", "t2v", "--model", "tiny-wan", "--limit", "2") == 0
    assert (out / second).read_bytes() == (t2v_run / second).read_bytes()


def test_i2v_passes_each_clips_own_first_frame_to_the_pipeline(dataset, bench, tmp_path, monkeypatch):
    from diffusers import WanImageToVideoPipeline

    calls = []
    original = WanImageToVideoPipeline.__call__

    @functools.wraps(original)
    def spy(self, *args, **kwargs):
        calls.append({"image": np.asarray(kwargs["image"]), "prompt": kwargs["prompt"],
                      "seed": kwargs["generator"].initial_seed()})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WanImageToVideoPipeline, "__call__", spy)
    out = tmp_path / "i2v"
    assert generate(dataset, out, "--task", "i2v", "--model", "tiny-wan", "--limit", "6") == 0
    ids = sorted(bench)[:6]
    assert sorted(p.stem for p in out.glob("*.mp4")) == ids and len(calls) == 6
    for cid, call in zip(ids, calls):
        prompt, frame = bench[cid]
        assert np.array_equal(call["image"], frame)
        assert call["prompt"] == prompt and call["seed"] == clip_seed(cid)
    assert len({call["image"].tobytes() for call in calls}) == 6  # each clip's own frame, not one for all
    assert probe(out / f"{ids[0]}.mp4").num_frames == 9


def test_two_processes_split_the_clips_and_write_the_bytes_of_one(t2v_run, dataset, tmp_path):
    out = tmp_path / "parallel"
    env = {**os.environ, "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "emovid_datasets.cli", "benchmark", "generate", "--benchmark", str(dataset),
           "--task", "t2v", "--model", "tiny-wan", "--out", str(out), "--limit", "6"]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for r in range(2)]
    logs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    written = [{Path(line.split("wrote ", 1)[1]).stem for line in err.splitlines() if "INFO wrote " in line}
               for _, err in logs]
    ids = sorted(p.stem for p in t2v_run.glob("*.mp4"))[:6]
    assert written == [set(ids[0::2]), set(ids[1::2])]  # rank r takes positions i % 2 == r: no overlap
    assert sorted(p.stem for p in out.glob("*.mp4")) == ids
    for cid in ids:
        assert (out / f"{cid}.mp4").read_bytes() == (t2v_run / f"{cid}.mp4").read_bytes()
    assert "process 1 of 2: wrote 3 videos" in logs[1][0]
    assert process_share(list("abcde"), 1, 2) == ["b", "d"]
    with pytest.raises(ValueError, match="RANK"):
        process_share(ids, 2, 2)


def test_a_saved_diffusers_folder_loads_by_its_model_index(t2v_run, dataset, tmp_path):
    """The real loading path: DiffusionPipeline.from_pretrained on a folder, family wan2.1 from model_index.json."""
    model = tmp_path / "wan-folder"
    build_tiny("t2v").save_pretrained(model)
    out = tmp_path / "from-folder"
    assert generate(dataset, out, "--task", "t2v", "--model", str(model), "--limit", "2", "--num-frames", "9",
                    "--height", "32", "--width", "32", "--steps", "2", "--dtype", "fp32") == 0
    record = json.loads((out / RECORD).read_text())
    assert (record["family"], record["pipeline"]) == ("wan2.1", "WanPipeline")
    assert record["settings"]["guidance"] == 5.0 and record["settings"]["fps"] == 16  # Wan2.1's, not given
    for path in out.glob("*.mp4"):  # the same weights and seeds as tiny-wan: the same videos
        assert path.read_bytes() == (t2v_run / path.name).read_bytes()
    assert generate(dataset, tmp_path / "x", "--task", "i2v", "--model", str(model), "--limit", "1") == 2
    assert generate(dataset, tmp_path / "y", "--task", "t2v", "--model", str(tmp_path)) == 2  # no model_index.json
    assert not (tmp_path / "x").exists() or not list((tmp_path / "x").glob("*.mp4"))


def test_tiny_cogvideox_for_both_tasks(dataset, tmp_path):
    for task, pipeline in (("t2v", "CogVideoXPipeline"), ("i2v", "CogVideoXImageToVideoPipeline")):
        out = tmp_path / task
        assert generate(dataset, out, "--task", task, "--model", "tiny-cogvideox", "--limit", "2") == 0
        videos = sorted(out.glob("*.mp4"))
        assert len(videos) == 2
        info = probe(videos[0])
        assert (info.num_frames, info.width, info.height) == (9, 32, 32) and abs(info.fps - 8) < 0.1
        assert json.loads((out / RECORD).read_text())["pipeline"] == pipeline


def test_prompts_file_for_models_outside_diffusers(dataset, bench, tmp_path, capsys):
    path = tmp_path / "prompts.jsonl"
    assert main(["benchmark", "generate", "--benchmark", str(dataset), "--task", "i2v", "--prompts-out", str(path)]) == 0
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["clip_id"] for e in lines] == sorted(bench)
    for entry in lines:
        prompt, frame = bench[entry["clip_id"]]
        assert entry["prompt"] == prompt and entry["seed"] == clip_seed(entry["clip_id"])
        assert Path(entry["first_frame"]).parent == tmp_path / "prompts_first_frames"
        assert np.array_equal(np.asarray(Image.open(entry["first_frame"])), frame)
    assert main(["benchmark", "generate", "--benchmark", str(dataset), "--task", "t2v"]) == 2  # nothing to do


def test_a_t2v_pipeline_refuses_the_i2v_task():
    with pytest.raises(ValueError, match="text-to-video pipeline"):
        check_pipeline_task(build_tiny("t2v"), "i2v", "tiny")
    with pytest.raises(ValueError, match="needs an image"):
        check_pipeline_task(build_tiny("i2v"), "t2v", "tiny")
