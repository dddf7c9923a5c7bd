"""Where a training run keeps its progress: resumable checkpoints and the per-step loss log."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..atomic import atomic_write_text
from ..records import read_json_file, read_json_lines
from .config import CONFIG_FILE, RESUME_KEYS, TrainConfig
from .lora import lora_state_dict

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
LOSS_FIELDS = ("step", "epoch", "loss", "lr", "sigma", "seconds")


class LossLog:
    """Per-step loss rows appended to ``loss.csv`` and ``loss.jsonl``; on resume, rows past the checkpoint go."""

    def __init__(self, directory: Path, keep_until: Optional[int]) -> None:
        self.csv, self.jsonl = directory / "loss.csv", directory / "loss.jsonl"
        if keep_until is None:
            for path in (self.csv, self.jsonl):
                path.unlink(missing_ok=True)
        else:
            self._truncate(keep_until)
        if not self.csv.exists():
            atomic_write_text(self.csv, ",".join(LOSS_FIELDS) + "\n")

    def _truncate(self, step: int) -> None:
        if self.jsonl.exists():
            rows = [r for _, r in read_json_lines(self.jsonl) if r["step"] <= step]
            atomic_write_text(self.jsonl, "".join(json.dumps(r) + "\n" for r in rows))
            atomic_write_text(self.csv, ",".join(LOSS_FIELDS) + "\n"
                              + "".join(",".join(str(r[k]) for k in LOSS_FIELDS) + "\n" for r in rows))

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one optimiser step's row to both files."""
        with self.csv.open("a", newline="") as f:
            csv.writer(f).writerow([row[k] for k in LOSS_FIELDS])
        with self.jsonl.open("a") as f:
            f.write(json.dumps(dict(row)) + "\n")


def latest_checkpoint(output: Path) -> Optional[Path]:
    """The newest complete ``checkpoints/step-*`` folder under ``output``, or None."""
    found = sorted((output / CHECKPOINTS).glob("step-*"))
    found = [p for p in found if (p / "state.json").exists()]
    return found[-1] if found else None


def save_checkpoint(output: Path, transformer: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                    state: dict, keep: int) -> Path:
    """Write adapter + optimiser + scheduler + position into ``checkpoints/step-N`` atomically; prune old ones."""
    from safetensors.torch import save_file

    final = output / CHECKPOINTS / f"step-{state['global_step']:08d}"
    tmp = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.cpu() for k, v in lora_state_dict(transformer).items()}, str(tmp / "adapter.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in sorted((output / CHECKPOINTS).glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def resume_point(cfg: TrainConfig, output: Path) -> Optional[Path]:
    """The checkpoint ``cfg.resume`` names ("latest" or a folder), or None to start afresh; a ValueError when
    the settings that shape the run differ from those it was written with.

    A fresh run into an ``output`` holding an earlier run's checkpoints is refused unless ``cfg.overwrite``
    (then they are removed): its own checkpoints would sort among them, and pruning or ``--resume latest``
    would take the other run's.
    """
    if not cfg.resume:
        earlier = latest_checkpoint(output)
        if earlier is not None and not cfg.overwrite:
            raise ValueError(f"{output} holds an earlier run's checkpoints (the latest {earlier.name}): pass "
                             "--resume to continue that run, or --overwrite to start afresh and remove them")
        if earlier is not None:
            log.warning("starting afresh in %s: removing the earlier run's checkpoints (up to %s)", output,
                        earlier.name)
            shutil.rmtree(output / CHECKPOINTS, ignore_errors=True)
        return None
    point = latest_checkpoint(output) if cfg.resume == "latest" else Path(cfg.resume)
    if point is None:
        log.info("no checkpoint under %s; starting from step 0", output / CHECKPOINTS)
        return None
    if not (point / "state.json").exists():
        raise FileNotFoundError(f"{point}: not a training checkpoint (no state.json)")
    saved = output / CONFIG_FILE
    if saved.exists():
        before = read_json_file(saved)
        changed = [k for k in RESUME_KEYS if k in before and before[k] != getattr(cfg, k)]
        if changed:
            raise ValueError(f"cannot resume {point}: {', '.join(changed)} differ from the checkpointed run "
                             f"({', '.join(f'{k}={before[k]!r}' for k in changed)})")
    return point
