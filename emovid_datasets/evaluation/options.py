"""Choices of the benchmark options, importable without numpy/torch (the CLI parser reads them)."""

TASKS: tuple[str, ...] = ("t2v", "i2v")
CLIP_TEXT_RULES: tuple[str, ...] = ("emotion-first", "paper", "caption")
SD_REFERENCES: tuple[str, ...] = ("first-frame", "benchmark-first-frame")
PREPROCESSING: tuple[str, ...] = ("clip", "evalcrafter")
DTYPES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # --dtype -> torch attribute
