"""The stage runner: resume without duplicates, rejects with reasons, parallel workers."""

import json

import pytest

from builder_scripts.engine.manifest import read_manifest, read_rejects, write_manifest
from builder_scripts.engine.runner import run_stage
from builder_scripts.engine.stage import FunctionStage, Outcome


def double(item):
    if item["clip_id"] == "bad":
        raise ValueError("bad.mp4: cannot decode")
    return Outcome(rows=[{"clip_id": f"{item['clip_id']}-{k}", "value": item["n"] * 2} for k in range(2)],
                   rejects=[{"clip_id": f"{item['clip_id']}-short", "reason": "too short"}])


ITEMS = [{"clip_id": f"c{i}", "n": i} for i in range(6)] + [{"clip_id": "bad", "n": 0}]


def test_rows_rejects_and_summary(tmp_path):
    summary = run_stage(FunctionStage("double", double), ITEMS, tmp_path, progress=False)
    rows = read_manifest(tmp_path)
    assert len(rows) == 12 and {r["input_id"] for r in rows} == {f"c{i}" for i in range(6)}
    rejects = read_rejects(tmp_path)
    failed = [r for r in rejects if r["input_id"] == "bad"]
    assert failed[0]["reason"] == "ValueError: bad.mp4: cannot decode" and failed[0]["stage"] == "double"
    assert summary.done == 7 and summary.skipped == 0 and summary.rows == 12
    assert json.loads((tmp_path / "stage.json").read_text())["rows"] == 12


def test_rerun_skips_done_items_and_never_duplicates(tmp_path):
    run_stage(FunctionStage("double", double), ITEMS[:3], tmp_path, progress=False)
    calls = []

    def counting(item):
        calls.append(item["clip_id"])
        return double(item)

    summary = run_stage(FunctionStage("double", counting), ITEMS, tmp_path, progress=False)
    assert sorted(calls) == ["bad", "c3", "c4", "c5"]
    assert summary.skipped == 3
    ids = [r["clip_id"] for r in read_manifest(tmp_path)]
    assert len(ids) == len(set(ids)) == 12
    run_stage(FunctionStage("double", counting), ITEMS, tmp_path, progress=False)
    assert len(calls) == 4  # a third run has nothing left to do
    assert len(read_rejects(tmp_path)) == 7


def test_retry_rejects_runs_failed_inputs_again(tmp_path):
    run_stage(FunctionStage("double", double), ITEMS, tmp_path, progress=False)
    calls = []

    def fixed(item):  # the cause of the failure has been repaired
        calls.append(item["clip_id"])
        return double(dict(item, clip_id="fixed")) if item["clip_id"] == "bad" else double(item)

    run_stage(FunctionStage("double", fixed), ITEMS, tmp_path, retry_rejects=True, progress=False)
    assert calls == ["bad"]
    assert not [r for r in read_rejects(tmp_path) if r["reason"].startswith("ValueError")]
    assert {r["input_id"] for r in read_manifest(tmp_path)} == {f"c{i}" for i in range(6)} | {"bad"}
    assert len([r for r in read_rejects(tmp_path) if r["reason"] == "too short"]) == 7


def test_parallel_workers_give_the_same_manifest(tmp_path):
    run_stage(FunctionStage("double", double), ITEMS, tmp_path / "one", progress=False)
    run_stage(FunctionStage("double", double), ITEMS, tmp_path / "two", workers=2, progress=False)
    assert read_manifest(tmp_path / "one") == read_manifest(tmp_path / "two")


def test_duplicate_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        run_stage(FunctionStage("double", double), ITEMS + ITEMS[:1], tmp_path, progress=False)


def test_manifest_requires_clip_id(tmp_path):
    with pytest.raises(ValueError, match="clip_id"):
        write_manifest(tmp_path, [{"value": 1}])


def test_a_stage_command_whose_inputs_all_failed_exits_non_zero(tmp_path):
    from factory import make_video

    from builder_scripts.cli import main
    from builder_scripts.engine.manifest import write_manifest as write

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 100)
    write(tmp_path / "in-bad", [{"clip_id": "bad", "video_path": str(bad)}])
    assert main(["attributes", str(tmp_path / "in-bad"), "--out", str(tmp_path / "out-bad")]) == 1
    good = make_video(tmp_path / "good.mp4")
    write(tmp_path / "in", [{"clip_id": "bad", "video_path": str(bad)}, {"clip_id": "good", "video_path": str(good)}])
    assert main(["attributes", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0  # one row is enough
    assert main(["attributes", str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0  # resumed, all done
