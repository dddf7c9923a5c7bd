"""The flow-matching objective Wan is trained with: x_t = (1-s) x0 + s e, target e - x0, fp32 MSE.

Noise levels s are drawn by a configurable scheme. The default, ``diffsynth``, is DiffSynth-Studio's (the
EmoVid recipe): a uniform index into 1000 shift-5 levels, each loss weighted by a Gaussian bump around
t = 500 (mean weight 1). ``uniform`` and ``logit_normal`` draw s continuously, shift it and weigh 1.

A Wan2.2 A14B expert trains only on its own levels, the ones diffusers' pipelines give it: the high-noise
expert s >= boundary, the low-noise one s < boundary. Its levels are drawn from the same scheme restricted
to that range (DiffSynth-Studio's ``--min/max_timestep_boundary``): the table entries inside it, or the
continuous distribution truncated to it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F

from .models import Experts

SCHEMES = ("diffsynth", "uniform", "logit_normal")
NUM_TRAIN_TIMESTEPS = 1000


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan's timestep shift s' = k s / (1 + (k - 1) s); k > 1 moves training toward noisier levels."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def unshift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """The inverse of `shift_sigmas`: s = s' / (k - (k - 1) s')."""
    return sigmas / (shift - (shift - 1) * sigmas)


def diffsynth_table(shift: float = 5.0, steps: int = NUM_TRAIN_TIMESTEPS) -> tuple[torch.Tensor, torch.Tensor]:
    """DiffSynth's Wan training table: (sigmas, weights), 1000 shifted levels from 1 down, weights of mean 1."""
    sigmas = shift_sigmas(torch.linspace(1.0, 0.0, steps + 1)[:-1], shift)
    t = sigmas * NUM_TRAIN_TIMESTEPS
    bump = torch.exp(-2 * ((t - NUM_TRAIN_TIMESTEPS / 2) / NUM_TRAIN_TIMESTEPS) ** 2)
    bump = bump - bump.min()
    return sigmas, bump * (steps / bump.sum())


@dataclass
class FlowMatchObjective:
    """Draw noise levels, build the noisy input and velocity target, and weigh the per-sample loss.

    ``expert`` (``high`` or ``low``) with ``boundary`` restricts the levels to that Wan2.2 expert's range.
    """

    scheme: str = "diffsynth"
    shift: float = 5.0
    logit_mean: float = 0.0
    logit_std: float = 1.0
    expert: Optional[str] = None
    boundary: Optional[float] = None

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown timestep sampling {self.scheme!r}; expected one of {', '.join(SCHEMES)}")
        if self.shift <= 0:
            raise ValueError(f"timestep shift must be positive, got {self.shift}")
        if (self.expert is None) != (self.boundary is None) or self.expert not in (None, "high", "low"):
            raise ValueError(f"an expert range needs expert high or low and a boundary, got {self.expert!r}, "
                             f"{self.boundary!r}")
        if self.boundary is not None and not 0 < self.boundary < 1:
            raise ValueError(f"the expert boundary ratio must lie strictly between 0 and 1, got {self.boundary}")
        self._sigmas, self._weights = diffsynth_table(self.shift)
        self._index = torch.arange(len(self._sigmas))  # the table entries this objective draws from
        if self.expert is not None:
            inside = self._sigmas >= self.boundary if self.expert == "high" else self._sigmas < self.boundary
            self._index = self._index[inside]
            if len(self._index) == 0:
                raise ValueError(f"no level of the {self.scheme} table lies in the {self.expert}-noise range of "
                                 f"boundary {self.boundary}")

    def for_expert(self, expert: str, boundary: float) -> "FlowMatchObjective":
        """This objective restricted to ``expert``'s noise levels."""
        return dataclasses.replace(self, expert=expert, boundary=boundary)

    def sample(self, batch: int, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigmas, weights), each of shape (batch,) on the CPU, drawn with ``generator``."""
        if self.scheme == "diffsynth":
            index = self._index[torch.randint(0, len(self._index), (batch,), generator=generator)]
            return self._sigmas[index], self._weights[index]
        if self.expert is not None:
            return self._truncated(batch, generator), torch.ones(batch)
        if self.scheme == "uniform":
            raw = torch.rand(batch, generator=generator)
        else:
            raw = torch.sigmoid(self.logit_mean + self.logit_std * torch.randn(batch, generator=generator))
        return shift_sigmas(raw, self.shift), torch.ones(batch)

    def _truncated(self, batch: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        """Continuous levels drawn from the scheme's distribution conditioned on the expert's range (inverse CDF)."""
        bound = float(unshift_sigmas(torch.tensor(self.boundary, dtype=torch.float64), self.shift))
        low, high = (bound, 1.0) if self.expert == "high" else (0.0, bound)
        u = torch.rand(batch, generator=generator, dtype=torch.float64)
        if self.scheme == "uniform":
            raw = low + (high - low) * u
        else:  # logit-normal: uniform between the normal CDF at the bounds' logits, mapped back
            cdf = [torch.special.ndtr((torch.logit(torch.tensor(x, dtype=torch.float64)) - self.logit_mean)
                                      / self.logit_std) for x in (low, high)]
            raw = torch.sigmoid(self.logit_mean + self.logit_std * torch.special.ndtri(cdf[0] + (cdf[1] - cdf[0]) * u))
        sigmas = shift_sigmas(raw, self.shift).float()
        # rounding must not carry a level across the boundary into the other expert's range
        edge = torch.tensor(self.boundary, dtype=torch.float32)
        if self.expert == "high":
            return sigmas.clamp(min=edge)
        return torch.minimum(sigmas, torch.nextafter(edge, torch.tensor(0.0)))

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


def _levels(objective: FlowMatchObjective, seeds: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmas, weights): one level per sample, each drawn from its own seed."""
    drawn = [objective.sample(1, torch.Generator().manual_seed(s)) for s in seeds]
    return torch.cat([d[0] for d in drawn]), torch.cat([d[1] for d in drawn])


def _dit_inputs(objective: FlowMatchObjective, x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor,
                batch: Mapping[str, torch.Tensor], task: str, dtype: torch.dtype,
                patch: Optional[Sequence[int]]) -> dict[str, Any]:
    """The transformer's keyword inputs for x_t at ``sigmas``; ``patch`` (the DiT's patch size) marks TI2V's fused i2v.

    Wan2.1 / A14B i2v concatenate ``y`` (mask + condition channels) to x_t. TI2V-5B i2v (``patch`` given) puts
    its clean first latent frame ``y`` into x_t instead, with timestep 0 on that frame's tokens, as diffusers'
    ``expand_timesteps`` pipeline does.
    """
    hidden = objective.noisy_input(x0, noise, sigmas)
    timesteps = objective.timesteps(sigmas).to(x0.device)
    image = batch.get("image_embeds")
    if patch is not None:
        hidden = torch.cat([batch["y"].float(), hidden[:, :, 1:]], dim=2)
        frames, height, width = x0.shape[2:]
        mask = torch.ones(frames, height // patch[1], width // patch[2], device=x0.device)
        mask[0] = 0
        timesteps = timesteps[:, None] * mask.flatten()[None]
    elif task == "i2v":
        hidden = torch.cat([hidden, batch["y"].float()], dim=1)
    return {"hidden_states": hidden.to(dtype), "timestep": timesteps,
            "encoder_hidden_states": batch["prompt_embeds"].to(dtype),
            "encoder_hidden_states_image": None if image is None else image.to(dtype)}


def training_loss(transformer: torch.nn.Module, objective: FlowMatchObjective, batch: Mapping[str, torch.Tensor],
                  task: str, seeds: Union[int, Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """One flow-matching loss on encoded tensors (see cache.encode_batch); each sample's noise and level drawn
    from its own seed (an int seeds the first sample and counts up).

    Returns (loss, sigmas). The DiT sees x_t (plus ``y`` for i2v) at timestep 1000 s, and the fp32 MSE
    against e - x0 is weighted per sample. For i2v with a ``y`` of the latents' channel count (TI2V-5B) the
    first frame is given, not learnt: it is left out of the loss. `Experts` (bare or data-parallel) train each
    expert on the same noise at levels of its own range, in one forward call: the loss is the sum of the
    experts' losses, the sigmas theirs one after the other.
    """
    x0 = batch["latents"].float()
    device = x0.device
    seeds = range(seeds, seeds + x0.shape[0]) if isinstance(seeds, int) else seeds
    if len(seeds) != x0.shape[0]:
        raise ValueError(f"{len(seeds)} noise seeds for a batch of {x0.shape[0]}")
    noise = torch.stack([torch.randn(x0.shape[1:], generator=torch.Generator(device).manual_seed(s), device=device)
                         for s in seeds])
    model = transformer.module if isinstance(transformer, torch.nn.parallel.DistributedDataParallel) else transformer
    experts = isinstance(model, Experts)
    objectives = ({name: objective.for_expert(name, model.boundary) for name in model.experts} if experts
                  else {None: objective})
    dit = next(iter(model.experts.values())) if experts else model
    fused = task == "i2v" and batch["y"].shape[1] == x0.shape[1]
    patch = dit.config.patch_size if fused else None
    dtype = next(dit.parameters()).dtype
    levels = {name: _levels(obj, seeds) for name, obj in objectives.items()}
    inputs = {name: _dit_inputs(objectives[name], x0, noise, sigmas, batch, task, dtype, patch)
              for name, (sigmas, _) in levels.items()}
    if experts:
        predictions = transformer(inputs)
    else:
        predictions = {None: transformer(**inputs[None], return_dict=False)[0]}
    first = 1 if fused else 0
    loss = sum(objectives[name].loss(predictions[name][:, :, first:], x0[:, :, first:], noise[:, :, first:], weights)
               for name, (_, weights) in levels.items())
    return loss, torch.cat([sigmas for sigmas, _ in levels.values()])
