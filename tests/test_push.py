"""`emovid-build push` against a loopback Hub: upload, resume, verification, then load_dataset through it.

huggingface_hub and datasets read HF_ENDPOINT at import and conftest makes this process offline,
so every push and load runs in a subprocess with the loopback endpoint in its environment.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from factory import make_dataset
from hub_server import FakeHub

from builder_scripts.publish.push import local_files
from emovid_datasets.loading import load_emovid

TOKEN = "hf_test_token_5f1c"
REPO = "emovid-test/emovid"
SHARD = "data/sticker/train-00000-of-00002.parquet"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("built"))


@pytest.fixture
def hub(tmp_path: Path):
    with FakeHub(tmp_path / "hub", token=TOKEN) as server:
        yield server
    assert server.unhandled == [], f"requests the loopback Hub does not serve: {server.unhandled}"


def run(hub: FakeHub, args: list[str], tmp_path: Path, *, env_token: bool = True) -> subprocess.CompletedProcess:
    """Run a command with the loopback endpoint (and the token, through HF_TOKEN only) in its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HOME=str(tmp_path / "hf-home"),
               HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    if env_token:
        env["HF_TOKEN"] = TOKEN
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert TOKEN not in proc.stdout + proc.stderr, "the token leaked into the output"
    return proc


def push(hub: FakeHub, dataset: Path, tmp_path: Path, *, verbose: bool = False) -> subprocess.CompletedProcess:
    """`emovid-build push` in a subprocess; ``verbose`` turns on debug logging (HTTP traffic included)."""
    return run(hub, [sys.executable, "-m", "builder_scripts.cli", *(["-v"] if verbose else []), "push", str(dataset),
                     "--repo-id", REPO], tmp_path)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_push_uploads_everything_but_build_then_skips_it_all(hub: FakeHub, dataset: Path, tmp_path: Path) -> None:
    local = local_files(dataset)
    assert SHARD in local and "README.md" in local and not any(p.startswith("_build/") for p in local)

    first = push(hub, dataset, tmp_path, verbose=True)  # run() checks the token is in no debug line
    assert first.returncode == 0, first.stderr
    assert f"{len(local)} file(s) uploaded" in first.stdout and f"{len(local)} verified" in first.stdout
    remote = hub.files(REPO)
    assert set(remote) == set(local) | {".gitattributes"}
    assert {p: sha256(remote[p]) for p in local} == {p: sha256(f.read_bytes()) for p, f in local.items()}
    assert (dataset / "_build" / "stats.json").exists() and not any(p.startswith("_build/") for p in remote)
    # one commit per config folder, the card last; every shard went through LFS, the card inline
    parquet = sum(p.endswith(".parquet") for p in local)
    assert hub.commit_count == len({str(Path(p).parent) for p in local})
    assert (hub.lfs_puts, hub.regular_files) == (parquet, len(local) - parquet)

    uploads, commits = hub.uploads, hub.commit_count
    second = push(hub, dataset, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "0 file(s) uploaded" in second.stdout and f"{len(local)} already present" in second.stdout
    assert (hub.uploads, hub.commit_count) == (uploads, commits)


def test_killed_push_resumes_without_uploading_twice(hub: FakeHub, dataset: Path, tmp_path: Path) -> None:
    local = local_files(dataset)
    hub.fail_commits_after = 2  # the server dies at the third commit (data/movie), after its LFS uploads
    crashed = push(hub, dataset, tmp_path)
    assert crashed.returncode == 1
    assert "run the same command again to resume" in crashed.stderr
    committed = {p for p in hub.files(REPO) if p != ".gitattributes"}
    assert committed and len(committed) < len(local)

    hub.fail_commits_after = None
    resumed = push(hub, dataset, tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(committed)} already present" in resumed.stdout
    assert f"{len(local) - len(committed)} file(s) uploaded" in resumed.stdout
    parquet = sum(p.endswith(".parquet") for p in local)
    assert hub.lfs_puts == parquet  # the crashed commit's LFS objects were not sent again
    assert {p: sha256(b) for p, b in hub.files(REPO).items() if p in local} == \
        {p: sha256(f.read_bytes()) for p, f in local.items()}


def test_corrupted_remote_file_fails_verification_and_a_second_push_repairs_it(
        hub: FakeHub, dataset: Path, tmp_path: Path) -> None:
    hub.tamper_on_commit = {SHARD}  # the Hub stores a damaged copy of one shard
    bad = push(hub, dataset, tmp_path)
    assert bad.returncode == 2
    assert SHARD in bad.stderr and "sha256" in bad.stderr and "1 file(s)" in bad.stderr

    hub.tamper_on_commit = set()  # the damaged copy stays at rest: the next push finds it and sends it again
    uploads = hub.uploads
    fixed = push(hub, dataset, tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "1 file(s) uploaded" in fixed.stdout and hub.uploads == uploads + 1
    assert hub.files(REPO)[SHARD] == (dataset / SHARD).read_bytes()


def test_python_api_token_private_branch_and_stale_shards(hub: FakeHub, dataset: Path, tmp_path: Path) -> None:
    smaller = tmp_path / "smaller"
    code = textwrap.dedent(f"""
        import os, shutil
        from huggingface_hub.errors import HfHubHTTPError
        from builder_scripts.publish.push import push_dataset
        try:  # no HF_TOKEN in this environment: the Hub refuses an anonymous push
            push_dataset({str(dataset)!r}, {REPO!r}, endpoint={hub.url!r})
        except HfHubHTTPError as exc:
            print("ANONYMOUS", exc.response.status_code)
        kw = dict(private=True, revision="v1", token={TOKEN!r}, endpoint={hub.url!r})
        print(push_dataset({str(dataset)!r}, {REPO!r}, **kw).summary())
        shutil.copytree({str(dataset)!r}, {str(smaller)!r})
        os.remove({str(smaller / "data/movie/train-00001-of-00002.parquet")!r})
        report = push_dataset({str(smaller)!r}, {REPO!r}, **kw)
        print(report.summary(), report.deleted)
        from huggingface_hub import HfApi  # the listings push relies on, as the real client parses them
        api = HfApi(endpoint={hub.url!r}, token={TOKEN!r})
        tree = api.list_repo_tree({REPO!r}, repo_type="dataset", revision="v1", recursive=True, expand=True)
        shard = next(f for f in tree if f.path == {SHARD!r})
        readme, = api.get_paths_info({REPO!r}, ["README.md"], repo_type="dataset", revision="v1", expand=True)
        print("LISTED", shard.lfs.sha256, shard.last_commit.oid == report.commits[-1], readme.blob_id)
    """)
    proc = run(hub, [sys.executable, "-c", code], tmp_path, env_token=False)
    assert proc.returncode == 0, proc.stderr
    assert "ANONYMOUS 401" in proc.stdout
    assert "1 stale deleted" in proc.stdout and "['data/movie/train-00001-of-00002.parquet']" in proc.stdout
    shard_sha, same_commit, readme_oid = proc.stdout.split("LISTED", 1)[1].split()
    assert shard_sha == sha256((smaller / SHARD).read_bytes()) and same_commit == "True"
    readme = (smaller / "README.md").read_bytes()
    assert readme_oid == hashlib.sha1(b"blob %d\0" % len(readme) + readme).hexdigest()
    repo = hub.repos[("dataset", REPO)]
    assert repo.private and set(repo.branches) == {"main", "v1"}
    assert set(hub.files(REPO, "main")) == {".gitattributes"}
    assert set(hub.files(REPO, "v1")) == set(local_files(smaller)) | {".gitattributes"}


def test_load_dataset_streams_and_downloads_through_the_same_hub(hub: FakeHub, dataset: Path,
                                                                 tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import hashlib, json
        import datasets
        from builder_scripts.publish.push import push_dataset
        push_dataset({str(dataset)!r}, {REPO!r})  # HF_TOKEN and HF_ENDPOINT from the environment
        stream = datasets.load_dataset({REPO!r}, "default", split="train", streaming=True)
        rows = list(stream.decode(False))
        full = datasets.load_dataset({REPO!r}, "default", split="train").cast_column(
            "video", datasets.Video(decode=False)).cast_column("audio", datasets.Audio(decode=False))
        print(json.dumps({{
            "stream": {{r["clip_id"]: hashlib.sha256(r["video"]["bytes"]).hexdigest() for r in rows}},
            "full": sorted(full["clip_id"]),
            "emotion": stream.features["emotion"].names, "source": full.features["source"].names,
            "shards": stream.num_shards,
        }}))
    """)
    proc = run(hub, [sys.executable, "-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    ours = load_emovid(str(dataset), "default", split="train", decode_media=False)
    expected = {r["clip_id"]: sha256(r["video"]["bytes"]) for r in ours}
    assert got["stream"] == expected  # every clip, with its exact video bytes
    assert got["full"] == sorted(expected)
    assert got["emotion"] == ours.features["emotion"].names
    assert got["source"] == ours.features["source"].names
    assert got["shards"] == 6 and hub.ranged_reads > 0  # every source's 2 files; Parquet read with Range requests


def test_push_to_an_unreachable_endpoint_says_so_in_one_line(tmp_path):
    from ports import refused_port

    with refused_port() as port:
        refused = f"http://127.0.0.1:{port}"
        dataset = make_dataset(tmp_path / "dataset", evaluator=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
        env.update(HF_ENDPOINT=refused, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf-home"))
        proc = subprocess.run([sys.executable, "-m", "builder_scripts.cli", "push", str(dataset), "--repo-id", REPO],
                              env=env, capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert refused in lines[0] and "run the same command again to resume" in lines[0] and TOKEN not in proc.stderr
