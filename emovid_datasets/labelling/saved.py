"""Saved label models on disk: which kind a path holds, how to load it, what it was trained on, its hash.

Two kinds exist: a fine-tuned VLM folder (``labeller.json`` + adapter + head, `finetune`) and a feature
classifier (``*.skops`` + ``*.skops.json``, `labeller.FeatureClassifier`). The evaluator of a dataset
build is a feature classifier too. Every saved model records the clip ids it learned from, so that an
EA evaluator that saw benchmark clips can be refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Iterable, Optional

from .finetune import METADATA_FILE as VLM_METADATA
from .labeller import FeatureClassifier, saved_labeller_files

SKOPS_NAMES = ("labeller.skops", "evaluator.skops")


def _skops_in(folder: Path) -> Optional[Path]:
    return next((folder / n for n in SKOPS_NAMES if (folder / n).is_file()), None)


def is_saved_labeller(path: str | os.PathLike) -> bool:
    """True for a fine-tuned VLM folder, a ``.skops`` feature classifier, or a folder holding one."""
    path = Path(path)
    return (path.is_dir() and ((path / VLM_METADATA).is_file() or _skops_in(path) is not None)) or \
        (path.is_file() and path.suffix == ".skops")


def saved_files(path: str | os.PathLike) -> list[Path]:
    """The files that make up a saved labeller (what a build copies and what its sha256 covers), sorted."""
    path = Path(path)
    if path.is_dir() and (path / VLM_METADATA).is_file():
        return sorted(p for p in path.rglob("*") if p.is_file())
    skops = _skops_in(path) if path.is_dir() else path
    if skops is None:
        raise FileNotFoundError(f"{path}: no fine-tuned labeller ({VLM_METADATA}) or saved classifier (.skops)")
    return list(saved_labeller_files(skops))


def sha256_of(files: Iterable[Path], root: Optional[Path] = None) -> str:
    """One sha256 over the files' relative names and bytes: the version of a saved model."""
    digest = hashlib.sha256()
    for f in sorted(files):
        name = f.relative_to(root) if root else Path(f.name)
        digest.update(str(name).encode() + b"\0" + f.read_bytes() + b"\0")
    return digest.hexdigest()


def labeller_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a saved labeller (see `sha256_of`)."""
    path = Path(path)
    return sha256_of(saved_files(path), path if path.is_dir() else path.parent)


def load_labeller(path: str | os.PathLike, *, device: Optional[str] = None, batch_size: int = 4) -> Any:
    """The saved labeller at ``path``: a `FineTunedVLMLabeller` or a `FeatureClassifier`."""
    path = Path(path)
    if path.is_dir() and (path / VLM_METADATA).is_file():
        from .finetune import FineTunedVLMLabeller

        return FineTunedVLMLabeller.load(path, device=device, batch_size=batch_size)
    skops = _skops_in(path) if path.is_dir() else path
    if skops is None or not skops.is_file():
        raise FileNotFoundError(f"{path}: no fine-tuned labeller ({VLM_METADATA}) or saved classifier (.skops)")
    return FeatureClassifier.load(skops)


def training_clip_ids(model: Any) -> Optional[set[str]]:
    """The clip ids a loaded labeller learned from (None when it does not say)."""
    ids = getattr(model, "train_clip_ids", None)
    return None if ids is None else {str(c) for c in ids}
