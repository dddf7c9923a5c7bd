"""Tiny randomly initialised models with the real interfaces, for the benchmark tests (nothing downloaded)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from tokenizers import pre_tokenizers
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

from emovid_datasets.color import rgb_to_hsv
from emovid_datasets.media import read_frames
from emovid_datasets.taxonomy import EMOTIONS


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random 1-layer CLIP (32 px images, byte-level character vocabulary) saved like a hub checkpoint."""
    torch.manual_seed(seed)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[]),
    )
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=8,
    )
    CLIPModel(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


class InputProbe(torch.nn.Module):
    """StyleGAN-V I3D interface; the "features" describe the input tensor: mean, min, max, T, H, W."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        shape = torch.tensor([x.shape[2], x.shape[3], x.shape[4]], dtype=x.dtype)
        return torch.cat([torch.stack([x.mean(), x.min(), x.max()]), shape]).unsqueeze(0)


class TinyI3D(torch.nn.Module):
    """A random 3-D conv net with the StyleGAN-V I3D interface and 6-d features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(3, 6, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        feats = torch.relu(self.conv(x)).mean(dim=(2, 3, 4))
        return feats if return_features else torch.softmax(feats, dim=-1)


def save_torchscript(module: torch.nn.Module, path: Path) -> Path:
    """Save ``module`` as TorchScript, the format StyleGAN-V distributes its I3D in (deprecated in torch 2.9+)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(module), str(path))
    return path


class HueClassifier:
    """An EA classifier for factory videos: the emotion whose hue (index x 45 degrees) is nearest the first frame's."""

    def predict_proba(self, videos: list[bytes]) -> np.ndarray:
        out = np.zeros((len(videos), len(EMOTIONS)))
        for row, video in enumerate(videos):
            h, s, _ = rgb_to_hsv(read_frames(video)[0])
            rad = np.deg2rad(h[s > 0.1])
            hue = np.rad2deg(np.arctan2(np.sin(rad).sum(), np.cos(rad).sum())) % 360
            out[row, int(round(hue / 45)) % len(EMOTIONS)] = 1.0
        return out


class ReversedClassifier(HueClassifier):
    """The same classifier reporting its columns in reversed order, declared by ``classes_`` (sklearn style)."""

    classes_ = list(reversed(EMOTIONS))

    def predict_proba(self, videos: list[bytes]) -> np.ndarray:
        return super().predict_proba(videos)[:, ::-1]
