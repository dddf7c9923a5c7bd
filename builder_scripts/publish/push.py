"""Stage `push`: upload a built dataset folder to the Hugging Face Hub in resumable commits, then verify it.

`emovid-build push DATASET_DIR --repo-id NAMESPACE/NAME [--private] [--revision R]`. The token comes from
`HF_TOKEN` and the endpoint from `HF_ENDPOINT` (read by huggingface_hub). Files whose checksum on the Hub
already matches are skipped and each config folder is its own commit, so a killed push resumes where it
stopped; `_build/` (rejects, statistics) stays local.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Optional, Union

from tqdm.auto import tqdm

from builder_scripts.publish.build import BUILD_DIR

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger("emovid.push")
REPO_TYPE = "dataset"
DATA_DIR = "data"  # shard folder owned by the build: remote files there that the build lacks are stale
FILES_PER_COMMIT = 100
BYTES_PER_COMMIT = 5 * 1024**3


class PushVerificationError(ValueError):
    """The Hub's copy differs from the local build; the message names every file concerned."""


@dataclass
class PushReport:
    """What a push did: paths uploaded, skipped (already identical on the Hub), deleted (stale shards), verified."""

    repo_id: str
    revision: str
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    verified: int = 0
    commits: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line saying what the push did."""
        return (f"push {self.repo_id}@{self.revision}: {len(self.uploaded)} file(s) uploaded in {len(self.commits)} "
                f"commit(s), {len(self.skipped)} already present, {len(self.deleted)} stale deleted, "
                f"{self.verified} verified")


def local_files(dataset_dir: Union[str, Path]) -> dict[str, Path]:
    """Repo path -> local file for everything a push uploads (all but `_build/`, `.git/`, `.cache/huggingface/`)."""
    from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects

    root = Path(dataset_dir)
    if not (root / "README.md").is_file():
        raise FileNotFoundError(f"{root}: not a built dataset folder (no README.md); run `emovid-build build` first")
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    ignore = [*DEFAULT_IGNORE_PATTERNS, f"{BUILD_DIR}/*"]
    return {path: files[path] for path in filter_repo_objects(sorted(files), ignore_patterns=ignore)}


@dataclass
class HubState:
    """How the Hub's copy compares with the local build."""

    same: list[str]  # local paths the Hub holds with the same checksum
    different: dict[str, str]  # local path -> why it is not the same (missing or checksum mismatch)
    stale: list[str]  # remote files under data/ that the local build does not have


def hub_state(api: "HfApi", repo_id: str, revision: str, root: Path, local: dict[str, Path]) -> HubState:
    """Compare remote checksums (LFS sha256, git blob id for regular files) with the local files."""
    check = api.verify_repo_checksums(repo_id, repo_type=REPO_TYPE, revision=revision, local_dir=root)
    different = {m["path"]: f"{m['algorithm']} on the Hub {m['expected']}, local {m['actual']}"
                 for m in check.mismatches if m["path"] in local}
    different.update({p: "missing on the Hub" for p in check.extra_paths if p in local})
    stale = [p for p in check.missing_paths if PurePosixPath(p).parts[0] == DATA_DIR]
    return HubState([p for p in local if p not in different], dict(sorted(different.items())), stale)


def _batches(paths: list[str], local: dict[str, Path]) -> list[list[str]]:
    """Shards grouped per folder (one config each), at most FILES_PER_COMMIT files / BYTES_PER_COMMIT each;
    root files such as README.md (which declares the configs) come last, once the shards are there."""
    folder = lambda p: str(PurePosixPath(p).parent)  # noqa: E731
    ordered = sorted(paths, key=lambda p: (folder(p) == ".", folder(p), p))
    batches: list[list[str]] = []
    for _, group in groupby(ordered, key=folder):
        batch: list[str] = []
        size = 0
        for path in group:
            if batch and (len(batch) >= FILES_PER_COMMIT or size + local[path].stat().st_size > BYTES_PER_COMMIT):
                batches.append(batch)
                batch, size = [], 0
            batch.append(path)
            size += local[path].stat().st_size
        batches.append(batch)
    return batches


def push_dataset(
    dataset_dir: Union[str, Path],
    repo_id: str,
    *,
    private: bool = False,
    revision: Optional[str] = None,
    token: Optional[str] = None,
    endpoint: Optional[str] = None,
) -> PushReport:
    """Upload ``dataset_dir`` to the dataset repo ``repo_id`` (created if needed) and verify the Hub's copy.

    Resumable: files already on the Hub with the same checksum are skipped, one commit per shard folder.
    Raises PushVerificationError naming each file the Hub holds differently from the local build.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants

    root = Path(dataset_dir).resolve()
    local = local_files(root)
    api = HfApi(endpoint=endpoint, token=token)  # None: HF_ENDPOINT / HF_TOKEN from the environment
    revision = revision or constants.DEFAULT_REVISION
    api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
    if revision != constants.DEFAULT_REVISION and not revision.startswith("refs/pr/"):
        api.create_branch(repo_id, repo_type=REPO_TYPE, branch=revision, exist_ok=True)

    before = hub_state(api, repo_id, revision, root, local)
    to_upload, stale = list(before.different), before.stale
    report = PushReport(repo_id, revision, skipped=before.same)
    batches = _batches(to_upload, local) or ([[]] if stale else [])
    with tqdm(total=len(to_upload), unit="file", desc=f"push {repo_id}", disable=not to_upload) as bar:
        for number, batch in enumerate(batches, 1):
            operations: list = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(local[p])) for p in batch]
            last = number == len(batches)
            if last:  # stale shards go together with the card that no longer lists them
                operations += [CommitOperationDelete(path_in_repo=p) for p in stale]
            folder = str(PurePosixPath(batch[0]).parent) if batch else DATA_DIR
            folder = ", ".join(batch) if folder == "." else folder
            info = api.create_commit(repo_id, operations, repo_type=REPO_TYPE, revision=revision,
                                     commit_message=f"Upload {folder} ({number}/{len(batches)}) with emovid-build")
            report.commits.append(info.oid)
            report.uploaded += batch
            if last:
                report.deleted = stale
            bar.update(len(batch))
            log.debug("push: committed %d file(s) from %s as %s", len(batch), folder, info.oid)

    after = hub_state(api, repo_id, revision, root, local)
    report.verified = len(after.same)
    problems = [f"{p}: {why}" for p, why in after.different.items()]
    problems += [f"{p}: on the Hub but not in the local build" for p in after.stale]
    if problems:
        raise PushVerificationError(f"push {repo_id}@{revision}: the Hub's copy differs from {root} in "
                                    f"{len(problems)} file(s); push again to repair:\n  " + "\n  ".join(problems))
    return report


@dataclass(frozen=True)
class PushOptions:
    """Where a build goes on the Hub (the config's ``push:`` keys; no ``repo_id``, no push)."""

    repo_id: Optional[str] = field(default=None, metadata={"help": "NAMESPACE/NAME of the dataset repo"})
    private: bool = field(default=False, metadata={"help": "create the repo as private (if it does not exist)"})
    revision: Optional[str] = field(default=None, metadata={"help": "branch to push to (created if needed; main)"})


def add_command(subparsers: argparse._SubParsersAction) -> None:
    """Register this module's subcommand with the CLI (see `cli.COMMAND_MODULES`)."""
    p = subparsers.add_parser("push", help="upload a built dataset folder to the Hub (resumable) and verify it",
                              description="Token from HF_TOKEN, endpoint from HF_ENDPOINT.")
    p.add_argument("dataset_dir", help="dataset folder written by `emovid-build build`")
    p.add_argument("--repo-id", required=True, help="NAMESPACE/NAME of the dataset repo")
    p.add_argument("--private", action="store_true", help="create the repo as private (if it does not exist)")
    p.add_argument("--revision", default=None, help="branch to push to (created if needed; default main)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if not args.verbose:  # one line per HTTP request is noise unless debugging
        logging.getLogger("httpx2").setLevel(logging.WARNING)
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    started = time.monotonic()
    try:
        report = push_dataset(args.dataset_dir, args.repo_id, private=args.private, revision=args.revision)
    except HfHubHTTPError as exc:
        log.error("push %s stopped: %s; files committed so far are kept, run the same command again to resume",
                  args.repo_id, str(exc).splitlines()[0])
        return 1
    except httpx2.TransportError as exc:  # refused, unreachable, timed out: one line, not a traceback
        log.error("push %s stopped: cannot reach %s (%s: %s); files committed before this are kept, run the same "
                  "command again to resume", args.repo_id, constants.ENDPOINT, type(exc).__name__, exc)
        return 1
    print(f"{report.summary()}, {time.monotonic() - started:.1f}s")
    return 0
