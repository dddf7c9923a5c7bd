"""Where models run when the caller names no device."""

from __future__ import annotations


def default_device() -> str:
    """'cuda' when PyTorch sees a GPU, else 'cpu' (torch is imported only when asked)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
