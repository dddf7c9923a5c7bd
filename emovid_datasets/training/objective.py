"""The flow-matching objective Wan2.1 is trained with: x_t = (1-s) x0 + s e, target e - x0, fp32 MSE.

Noise levels s are drawn by a configurable scheme. The default, ``diffsynth``, is DiffSynth-Studio's (the
EmoVid recipe): a uniform index into 1000 shift-5 levels, each loss weighted by a Gaussian bump around
t = 500 (mean weight 1). ``uniform`` and ``logit_normal`` draw s continuously, shift it and weigh 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F

SCHEMES = ("diffsynth", "uniform", "logit_normal")
NUM_TRAIN_TIMESTEPS = 1000


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan's timestep shift s' = k s / (1 + (k - 1) s); k > 1 moves training toward noisier levels."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def diffsynth_table(shift: float = 5.0, steps: int = NUM_TRAIN_TIMESTEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """DiffSynth's Wan training table: (sigmas, weights), 1000 shifted levels from 1 down, weights of mean 1."""
    sigmas = shift_sigmas(torch.linspace(1.0, 0.0, steps + 1)[:-1], shift)
    t = sigmas * NUM_TRAIN_TIMESTEPS
    bump = torch.exp(-2 * ((t - NUM_TRAIN_TIMESTEPS / 2) / NUM_TRAIN_TIMESTEPS) ** 2)
    bump = bump - bump.min()
    return sigmas, bump * (steps / bump.sum())


@dataclass
class FlowMatchObjective:
    """Draw noise levels, build the noisy input and velocity target, and weigh the per-sample loss."""

    scheme: str = "diffsynth"
    shift: float = 5.0
    logit_mean: float = 0.0
    logit_std: float = 1.0

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown timestep sampling {self.scheme!r}; expected one of {', '.join(SCHEMES)}")
        if self.shift <= 0:
            raise ValueError(f"timestep shift must be positive, got {self.shift}")
        self._sigmas, self._weights = diffsynth_table(self.shift)

    def sample(self, batch: int, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigmas, weights), each of shape (batch,) on the CPU, drawn with ``generator``."""
        if self.scheme == "diffsynth":
            index = torch.randint(0, len(self._sigmas), (batch,), generator=generator)
            return self._sigmas[index], self._weights[index]
        if self.scheme == "uniform":
            raw = torch.rand(batch, generator=generator)
        else:
            raw = torch.sigmoid(self.logit_mean + self.logit_std * torch.randn(batch, generator=generator))
        return shift_sigmas(raw, self.shift), torch.ones(batch)

    def noisy_input(self, x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        """x_t = (1 - s) x0 + s e, with one s per sample broadcast over (C, F, H, W)."""
        s = sigmas.to(x0.device, x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
        return (1 - s) * x0 + s * noise

    @staticmethod
    def timesteps(sigmas: torch.Tensor) -> torch.Tensor:
        """The DiT's timestep input, 1000 s."""
        return sigmas * NUM_TRAIN_TIMESTEPS

    @staticmethod
    def loss(prediction: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Weighted mean over the batch of the fp32 MSE between the prediction and the velocity e - x0."""
        target = (noise - x0).float()
        per_sample = F.mse_loss(prediction.float(), target, reduction="none").flatten(1).mean(1)
        return (per_sample * weights.to(per_sample.device, torch.float32)).mean()


def sample_seeds(seed: int, micro_step: int, first: int, count: int) -> list[int]:
    """Noise seeds for samples ``first .. first+count-1`` of a micro-step's global batch.

    Seeding each sample by its place in the global batch makes N processes x batch B draw exactly what one
    process with batch N*B draws, so multi-GPU runs repeat single-GPU ones.
    """
    return [(seed * 1_000_003 + micro_step) * 4096 + first + i for i in range(count)]


def training_loss(transformer: torch.nn.Module, objective: FlowMatchObjective, batch: Mapping[str, torch.Tensor],
                  task: str, seeds: Union[int, Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One flow-matching loss on encoded tensors (see cache.encode_batch); each sample's noise and level drawn
    from its own seed (an int seeds the first sample and counts up).

    Returns (loss, sigmas). The DiT sees x_t (plus ``y`` for i2v) at timestep 1000 s, and the fp32 MSE
    against e - x0 is weighted per sample.
    """
    x0 = batch["latents"].float()
    device, dtype = x0.device, next(transformer.parameters()).dtype
    seeds = range(seeds, seeds + x0.shape[0]) if isinstance(seeds, int) else seeds
    if len(seeds) != x0.shape[0]:
        raise ValueError(f"{len(seeds)} noise seeds for a batch of {x0.shape[0]}")
    noise = torch.stack([torch.randn(x0.shape[1:], generator=torch.Generator(device).manual_seed(s), device=device)
                         for s in seeds])
    drawn = [objective.sample(1, torch.Generator().manual_seed(s)) for s in seeds]
    sigmas, weights = torch.cat([d[0] for d in drawn]), torch.cat([d[1] for d in drawn])
    hidden = objective.noisy_input(x0, noise, sigmas)
    image = None
    if task == "i2v":
        hidden = torch.cat([hidden, batch["y"].float()], dim=1)
        image = batch["image_embeds"].to(dtype)
    prediction = transformer(hidden_states=hidden.to(dtype), timestep=objective.timesteps(sigmas).to(device),
                             encoder_hidden_states=batch["prompt_embeds"].to(dtype),
                             encoder_hidden_states_image=image, return_dict=False)[0]
    return objective.loss(prediction, x0, noise, weights), sigmas
