"""`emovid train`'s settings: the EmoVid paper's recipe as defaults, checked before anything loads."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Optional

from ..torch.batching import BucketRule
from .models import check_task
from .objective import FlowMatchObjective

CONFIG_FILE = "training_config.json"
# Settings a resumed run must share with the run that wrote the checkpoint.
RESUME_KEYS = ("task", "model", "data", "split", "sources", "limit", "rank", "alpha", "image_kv", "batch_size",
               "gradient_accumulation", "seed", "num_frames", "height", "width", "fps", "buckets", "bucket_frames",
               "expert", "boundary_ratio")


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
    buckets: Optional[list[str]] = None  # "HxW"; None: height x width, its transpose and a square of that area
    bucket_frames: Optional[list[int]] = None  # None: num_frames and the counts 1, 2, 3 and 4 s clips fill
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
    expert: Optional[str] = None  # Wan2.2 A14B: high, low or both (None: both); one-transformer models: None
    boundary_ratio: Optional[float] = None  # None: the model's own (model_index.json)
    seed: int = 42
    resume: Optional[str] = None
    overwrite: bool = False  # a fresh run may remove an earlier run's checkpoints in its output
    no_cache: bool = False
    cache_dir: Optional[str] = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    validate_every: Optional[int] = None  # see `validation`: samples and EA scores at step 0 and every N steps
    validation_prompts: Optional[list[str]] = None  # "EMOTION: caption" or plain text; None: benchmark prompts
    validation_per_emotion: int = 1
    validation_frames: int = 17
    validation_steps: int = 10
    validation_clip_model: Optional[str] = None

    def validate(self, size_multiple: int = 16) -> "TrainConfig":
        """Check the shape and count arguments, filling in the default buckets; raise ValueError naming the bad one.

        ``size_multiple`` is what the model's heights and widths must divide by (`models.size_multiple_of`: 16
        for Wan2.1 and A14B, 32 for TI2V-5B); the default square bucket is rounded to it.
        """
        check_task(self.task)
        m = size_multiple
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            raise ValueError(f"--num-frames must be 4k+1 (e.g. 81, 49, 9), got {self.num_frames}")
        if self.height % m or self.width % m or self.height <= 0 or self.width <= 0:
            raise ValueError(f"--height and --width must be positive multiples of {m} for this model, "
                             f"got {self.height}x{self.width}")
        default = BucketRule.default(self.height, self.width, self.num_frames, self.fps, m)
        if self.buckets is None:
            self.buckets = [f"{h}x{w}" for h, w in default.sizes]
        if self.bucket_frames is None:
            self.bucket_frames = list(default.frame_counts)
        bad = [b for b in self.buckets if not re.fullmatch(r"[1-9]\d*x[1-9]\d*", b)
               or any(int(side) % m for side in b.split("x"))]
        if bad or not self.buckets:
            raise ValueError(f"--buckets must be HxW sizes, multiples of {m} for this model (e.g. 480x832), "
                             f"got {bad or 'none'}")
        bad_frames = [n for n in self.bucket_frames if n < 1 or (n - 1) % 4]
        if bad_frames or not self.bucket_frames:
            raise ValueError(f"--bucket-frames must be 4k+1 (e.g. 81 45 29), got {bad_frames or 'none'}")
        for name in ("epochs", "batch_size", "gradient_accumulation", "checkpoint_every", "rank", "keep_checkpoints",
                     "validation_per_emotion", "validation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        for name in ("max_steps", "limit", "validate_every"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.validation_frames < 1 or (self.validation_frames - 1) % 4:
            raise ValueError(f"--validation-frames must be 4k+1 (e.g. 17, 9), got {self.validation_frames}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"--mixed-precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        FlowMatchObjective(self.timestep_sampling, self.shift)
        if self.expert not in (None, "high", "low", "both"):
            raise ValueError(f"--expert must be high, low or both, got {self.expert!r}")
        if self.boundary_ratio is not None and not 0 < self.boundary_ratio < 1:
            raise ValueError(f"--boundary-ratio must lie strictly between 0 and 1, got {self.boundary_ratio}")
        return self

    def bucket_rule(self) -> BucketRule:
        """The rule that puts each clip in a bucket (call `validate` first, which fills in the default buckets)."""
        return BucketRule(tuple(tuple(int(side) for side in b.split("x")) for b in self.buckets),
                          tuple(self.bucket_frames))


def config_from_args(args: Any) -> TrainConfig:
    """A TrainConfig from an argparse namespace holding the same names."""
    names = [f.name for f in fields(TrainConfig)]
    return TrainConfig(**{name: getattr(args, name) for name in names if hasattr(args, name)})
