"""The stage contract on both executors: setup once per worker, declared resources, rejects, resume, kills."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from builder_scripts.engine.executors import EngineSettings, LocalExecutor, RayExecutor, use_engine
from builder_scripts.engine.manifest import read_manifest, read_rejects
from builder_scripts.engine.runner import run_stage
from builder_scripts.engine.stage import FunctionStage, Resources, Stage

ROOT = Path(__file__).resolve().parents[1]
ITEMS = [{"clip_id": f"c{i}", "n": i} for i in range(6)] + [{"clip_id": "bad", "n": 0}]


def double(item):
    if item["clip_id"] == "bad":
        raise ValueError("bad.mp4: cannot decode")
    return {"clip_id": item["clip_id"], "value": item["n"] * 2}


class Counting(Stage):
    """Records which worker process handled each item and how often that worker ran its setup."""

    name = "counting"

    def __init__(self, resources=Resources()):
        self.resources = resources
        self.setups = 0

    def setup(self):
        self.setups += 1
        self.pid = os.getpid()
        self.assigned, self.gpu_ids = {}, []
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():  # inside a Ray worker
            import ray

            self.assigned = {k: float(v) for k, v in ray.get_runtime_context().get_assigned_resources().items()}
            self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]

    def process(self, item):
        return {"clip_id": item["clip_id"], "pid": self.pid, "setups": self.setups, "assigned": json.dumps(self.assigned, sort_keys=True),
                "gpu_ids": self.gpu_ids, "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}


@pytest.mark.parametrize("workers", [1, 2])
def test_local_setup_runs_once_per_worker(tmp_path, workers):
    run_stage(Counting(), ITEMS, tmp_path, workers=workers, progress=False, executor=LocalExecutor())
    rows = read_manifest(tmp_path)
    assert len(rows) == len(ITEMS) and {r["setups"] for r in rows} == {1}
    assert len({r["pid"] for r in rows}) <= workers
    assert (workers == 1) == ({r["pid"] for r in rows} == {os.getpid()})


def test_ray_gives_the_local_manifest_and_rejects(local_ray, tmp_path):
    run_stage(FunctionStage("double", double), ITEMS, tmp_path / "local", progress=False, executor=LocalExecutor())
    with use_engine(EngineSettings(engine="ray")) as executor:
        assert isinstance(executor, RayExecutor)
        run_stage(FunctionStage("double", double), ITEMS, tmp_path / "ray", progress=False)
    assert local_ray.is_initialized()  # an instance the executor joined is left running
    assert read_manifest(tmp_path / "ray") == read_manifest(tmp_path / "local")
    assert read_rejects(tmp_path / "ray") == read_rejects(tmp_path / "local")
    assert "bad.mp4: cannot decode" in read_rejects(tmp_path / "ray")[0]["reason"]


def test_ray_resume_skips_what_is_done(local_ray, tmp_path):
    run_stage(FunctionStage("double", double), ITEMS[:3], tmp_path, progress=False, executor=RayExecutor())
    summary = run_stage(Counting(), ITEMS, tmp_path, progress=False, executor=RayExecutor())
    assert (summary.skipped, summary.done) == (3, 4)
    rows = {r["clip_id"]: r for r in read_manifest(tmp_path)}
    assert len(rows) == 7 and rows["c0"]["pid"] is None and rows["c5"]["pid"] is not None


def test_a_gpu_stage_gets_its_gpu_share_from_ray_and_sets_up_once_per_actor(local_ray, tmp_path):
    run_stage(Counting(Resources(cpus=1, gpus=0.5)), ITEMS, tmp_path, progress=False, executor=RayExecutor())
    rows = read_manifest(tmp_path)
    assert len(rows) == len(ITEMS)
    assert {r["setups"] for r in rows} == {1}  # each actor ran the setup once, however many items it took
    assert all(r["gpu_ids"] == ["0"] and r["visible"] == "0" for r in rows)  # the one (fake) GPU, shared
    assert {r["assigned"] for r in rows} <= {json.dumps({"CPU": 1.0, "GPU": 0.5})}
    assert os.getpid() not in {r["pid"] for r in rows}


def test_a_stage_declaring_a_custom_resource_is_scheduled_with_it(local_ray, tmp_path):
    stage = Counting(Resources(cpus=0.5, custom={"fake_gpu": 1}))
    run_stage(stage, ITEMS, tmp_path, progress=False, executor=RayExecutor())
    assert {r["assigned"] for r in read_manifest(tmp_path)} == {json.dumps({"CPU": 0.5, "fake_gpu": 1.0})}


def test_negative_resources_and_an_unknown_engine_are_refused():
    with pytest.raises(ValueError, match="negative"):
        Resources(gpus=-1)
    with pytest.raises(ValueError, match="engine must be one of local, ray"):
        EngineSettings(engine="spark")


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from builder_scripts.engine.executors import EngineSettings, use_engine
    from builder_scripts.engine.runner import run_stage
    from builder_scripts.engine.stage import FunctionStage
    from tests.test_executors import slow_double

    items = [{"clip_id": f"c{i}", "n": i} for i in range(int(sys.argv[2]))]
    with use_engine(EngineSettings(engine=sys.argv[3])):
        run_stage(FunctionStage("double", slow_double), items, sys.argv[1], workers=2, checkpoint_every=1,
                  progress=False)
""")


def slow_double(item):
    time.sleep(0.3)
    return double(item)


def _session_processes(sid: int) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "sid=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in ps.splitlines() if line.split()[0] == str(sid)]


def _run_and_kill(out: Path, count: int, engine: str, patience: float) -> int:
    """Start the stage in its own session, SIGKILL the driver mid-stage; wait ``patience`` s for its processes."""
    ray_tmp = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_TMPDIR": ray_tmp}
    driver = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out), str(count), engine], cwd=ROOT, env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(read_manifest(out)) < 3:  # killed mid-stage, after some checkpoints
        assert driver.poll() is None and time.monotonic() < deadline, "the run ended before it was killed"
        time.sleep(0.2)
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + patience
    while _session_processes(driver.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    assert not _session_processes(driver.pid), "processes outlived their killed driver"
    done_before = len(read_manifest(out))
    assert done_before < count
    return done_before


def test_killed_local_pool_leaves_no_orphan_worker(tmp_path):
    _run_and_kill(tmp_path / "out", 40, "local", patience=5)


def test_a_killed_ray_driver_resumes_to_the_same_manifest_and_leaves_no_ray_process(tmp_path):
    pytest.importorskip("ray")
    out, count = tmp_path / "out", 40
    # Ray's processes follow their driver; its agents take up to a minute (they try to report to the dead GCS).
    done_before = _run_and_kill(out, count, "ray", patience=120)

    resumed = run_stage(FunctionStage("double", double), [{"clip_id": f"c{i}", "n": i} for i in range(count)],
                        out, progress=False, executor=LocalExecutor())
    assert resumed.skipped >= done_before and resumed.skipped + resumed.done == count
    rows = read_manifest(out)
    assert sorted(r["clip_id"] for r in rows) == sorted(f"c{i}" for i in range(count))
    assert all(r["value"] == 2 * int(r["clip_id"][1:]) for r in rows)
