"""`emovid train`'s settings: the EmoVid paper's recipe as defaults, checked before anything loads."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

from .models import check_task
from .objective import FlowMatchObjective

CONFIG_FILE = "training_config.json"
# Settings a resumed run must share with the run that wrote the checkpoint.
RESUME_KEYS = ("task", "model", "data", "split", "sources", "limit", "rank", "alpha", "image_kv", "batch_size",
               "gradient_accumulation", "seed", "num_frames", "height", "width")


@dataclass
class TrainConfig:
    """Everything `emovid train` takes; defaults are the EmoVid paper's recipe (r32, lr 1e-4, 3 epochs, bs 1)."""

    task: str
    model: str
    data: str
    output: str
    config: str = "default"
    split: str = "train"
    sources: Optional[list[str]] = None
    limit: Optional[int] = None
    prompt: str = "caption+emotion"
    num_frames: int = 81
    height: int = 480
    width: int = 832
    fps: float = 16.0
    rank: int = 32
    alpha: float = 32.0
    image_kv: bool = False
    lr: float = 1e-4
    weight_decay: float = 1e-2
    lr_scheduler: str = "constant"
    lr_warmup_steps: int = 0
    max_grad_norm: Optional[float] = None
    epochs: int = 3
    batch_size: int = 1
    max_steps: Optional[int] = None
    gradient_accumulation: int = 1
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    timestep_sampling: str = "diffsynth"
    shift: float = 5.0
    seed: int = 42
    resume: Optional[str] = None
    no_cache: bool = False
    cache_dir: Optional[str] = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 3

    def validate(self) -> "TrainConfig":
        """Check the shape and count arguments; raise ValueError naming the bad one."""
        check_task(self.task)
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            raise ValueError(f"--num-frames must be 4k+1 (e.g. 81, 49, 9), got {self.num_frames}")
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise ValueError(f"--height and --width must be positive multiples of 16, got {self.height}x{self.width}")
        for name in ("epochs", "batch_size", "gradient_accumulation", "checkpoint_every", "rank", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "limit"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"--mixed-precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        FlowMatchObjective(self.timestep_sampling, self.shift)
        return self


def config_from_args(args: Any) -> TrainConfig:
    """A TrainConfig from an argparse namespace holding the same names."""
    names = [f.name for f in fields(TrainConfig)]
    return TrainConfig(**{name: getattr(args, name) for name in names if hasattr(args, name)})
