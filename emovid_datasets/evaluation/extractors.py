"""Pluggable models of the benchmark: a CLIP encoder, a video feature extractor for FVD, an emotion classifier.

No weights ship with the toolkit; each model loads from a path or hub id the user gives:
- CLIP: any `transformers` CLIPModel + CLIPProcessor folder or hub id (e.g. openai/clip-vit-base-patch32);
- FVD: a TorchScript I3D as StyleGAN-V distributes it (`i3d_torchscript.pt`), or "module:attr" naming a
  callable that maps a (T, H, W, 3) uint8 video to a 1-D feature vector;
- EA: the labeller saved by `emovid-build annotate` (``labeller.skops``), or anything with
  ``predict_proba(list of video bytes) -> (N, 8)`` in EMOTIONS order (see `load_classifier`).
"""

from __future__ import annotations

import importlib
import logging
import pickle
import warnings
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from ..devices import default_device
from ..taxonomy import EMOTIONS
from .options import PREPROCESSING

log = logging.getLogger(__name__)


def _import_spec(spec: str) -> Any:
    """The object named by ``"package.module:attr"`` (attr may be dotted)."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{spec!r}: expected an existing file or 'module:attr'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


class ClipEncoder:
    """L2-normalised CLIP image and text embeddings from a `transformers` CLIPModel.

    ``preprocessing="clip"``: the processor's own resize, centre crop and CLIP mean/std (correct CLIP input).
    ``preprocessing="evalcrafter"``: the same resize and crop but raw 0-255 values without mean/std, the
    EvalCrafter quirk that likely explains the paper's SD values near 0.72.
    """

    def __init__(self, model: Any, processor: Any, device: str = "cpu", preprocessing: str = "clip"):
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"unknown preprocessing {preprocessing!r}; expected one of {PREPROCESSING}")
        self.model, self.processor = model.to(device).eval(), processor
        self.device, self.preprocessing = device, preprocessing
        self.max_tokens = int(model.config.text_config.max_position_embeddings)

    @classmethod
    def load(cls, path_or_id: str, device: Optional[str] = None, preprocessing: str = "clip") -> "ClipEncoder":
        """Load CLIPModel and CLIPProcessor from a local folder or a hub id (offline caches work)."""
        from transformers import CLIPModel, CLIPProcessor

        try:
            model = CLIPModel.from_pretrained(path_or_id)
            processor = CLIPProcessor.from_pretrained(path_or_id)
        except OSError as exc:
            raise FileNotFoundError(f"CLIP model {path_or_id!r} cannot be loaded ({exc})") from exc
        return cls(model, processor, device or default_device(), preprocessing)

    @staticmethod
    def _tensor(output: Any) -> Any:
        return output if hasattr(output, "norm") else output.pooler_output  # transformers 5 returns a model output

    def encode_images(self, frames: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """(T, H, W, 3) uint8 frames -> (T, D) unit-norm image embeddings."""
        import torch

        extra = {"do_rescale": False, "do_normalize": False} if self.preprocessing == "evalcrafter" else {}
        chunks = []
        with torch.inference_mode():
            for start in range(0, len(frames), batch_size):
                pixels = self.processor.image_processor(images=list(frames[start:start + batch_size]),
                                                        return_tensors="pt", **extra).pixel_values
                emb = self._tensor(self.model.get_image_features(pixel_values=pixels.float().to(self.device)))
                chunks.append(torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy())
        return np.concatenate(chunks)

    def encode_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        """Unit-norm text embeddings and, per text, whether it was cut at the model's token limit (77 for CLIP)."""
        import torch

        tokenizer = self.processor.tokenizer
        truncated = [len(ids) > self.max_tokens for ids in tokenizer(list(texts))["input_ids"]]
        enc = tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        with torch.inference_mode():
            emb = self._tensor(self.model.get_text_features(**{k: v.to(self.device) for k, v in enc.items()}))
        return torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy(), truncated


VideoFeatures = Callable[[np.ndarray], np.ndarray]


class TorchScriptI3D:
    """FVD features from a TorchScript I3D with StyleGAN-V's interface ``forward(x, rescale, resize, return_features)``.

    Input convention: the first ``num_frames`` frames (the last frame repeated when a clip is shorter),
    bilinear ``resolution`` x ``resolution`` without keeping the aspect ratio, values in [-1, 1],
    shape (1, 3, T, H, W); called with rescale=False, resize=False, return_features=True (400-d logits).
    """

    def __init__(self, module: Any, device: str = "cpu", num_frames: int = 16, resolution: int = 224):
        self.module, self.device = module.to(device).eval(), device
        self.num_frames, self.resolution = num_frames, resolution

    @classmethod
    def load(cls, path: str | Path, device: Optional[str] = None, **kwargs: Any) -> "TorchScriptI3D":
        """Load a TorchScript I3D (StyleGAN-V's FVD detector) onto ``device``."""
        import torch

        device = device or default_device()
        try:
            with warnings.catch_warnings():  # torch 2.9+ deprecates TorchScript, the format StyleGAN-V ships I3D in
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location=device)
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{path}: not a TorchScript video model ({exc})") from exc
        return cls(module, device, **kwargs)

    def __call__(self, video: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        frames = np.asarray(video)[: self.num_frames]
        if len(frames) < self.num_frames:
            frames = np.concatenate([frames, np.repeat(frames[-1:], self.num_frames - len(frames), axis=0)])
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        x = (x * 2 - 1).permute(1, 0, 2, 3).unsqueeze(0).to(self.device)
        with torch.inference_mode():
            out = self.module(x, rescale=False, resize=False, return_features=True)
        return out.reshape(-1).float().cpu().numpy()


def load_video_extractor(spec: str, device: Optional[str] = None, **kwargs: Any) -> VideoFeatures:
    """A video feature extractor from a TorchScript file path (``kwargs`` go to `TorchScriptI3D`), or from
    'module:attr' naming a callable, or a class instantiated without arguments."""
    if Path(spec).is_file():
        return TorchScriptI3D.load(spec, device, **kwargs)
    if ":" not in spec:
        raise FileNotFoundError(f"FVD model {spec!r}: no such file (give a TorchScript path or 'module:attr')")
    obj = _import_spec(spec)
    return obj() if isinstance(obj, type) else obj


@runtime_checkable
class EmotionClassifier(Protocol):
    """What EA-2cls/EA-8cls need: probabilities over the 8 EMOTIONS (columns in that order) per video."""

    def predict_proba(self, videos: Sequence[bytes]) -> np.ndarray:
        """(N, 8) probabilities per video file's bytes; an all-zero row means no answer."""


class OrderedClassifier:
    """Wraps a classifier so `predict_proba` returns (N, 8) columns in EMOTIONS order, reordering by ``classes_``."""

    def __init__(self, inner: EmotionClassifier) -> None:
        self.inner = inner
        self.sha256: Optional[str] = None  # set for saved labellers: the version of the model
        classes = getattr(inner, "classes_", None)
        if classes is not None:
            names = [str(c) for c in classes]
            missing = set(EMOTIONS) - set(names)
            if missing or len(names) != len(EMOTIONS):
                raise ValueError(f"classifier classes_ {names} are not the 8 emotions (missing {sorted(missing)})")
            self.order = [names.index(e) for e in EMOTIONS]
        else:
            self.order = list(range(len(EMOTIONS)))

    def predict_proba(self, videos: Sequence[bytes]) -> np.ndarray:
        """(N, 8) probabilities in EMOTIONS order; ValueError when the wrapped model answers another shape."""
        probs = np.asarray(self.inner.predict_proba(list(videos)), dtype=np.float64)
        if probs.shape != (len(videos), len(EMOTIONS)):
            raise ValueError(f"classifier returned shape {probs.shape}, expected ({len(videos)}, {len(EMOTIONS)})")
        return probs[:, self.order]


def load_classifier(spec: str) -> OrderedClassifier:
    """Load an EA classifier from ``spec``:

    - a saved labeller (`emovid_datasets.labelling.saved`): a dataset's ``evaluator/`` folder (the default),
      a ``.skops`` feature classifier, or a fine-tuned VLM folder from `emovid-build annotate finetune`;
      these record the clips they learned from and are versioned by ``sha256``;
    - a ``.pkl``/``.pickle`` (pickle) or ``.joblib`` (joblib) file holding an object with ``predict_proba``;
      pickle and joblib run code on load, so load only your own files;
    - ``"module:attr"``: an object with ``predict_proba``, or a class / zero-argument factory returning one
      (how the labeller from `emovid_datasets.labelling` or any other model plugs in).
    """
    from ..labelling.saved import is_saved_labeller, labeller_sha256, load_labeller

    path = Path(spec)
    if is_saved_labeller(path):
        wrapped = OrderedClassifier(load_labeller(path))
        wrapped.sha256 = labeller_sha256(path)
        return wrapped
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".pkl", ".pickle"):
            with open(path, "rb") as fh:
                obj = pickle.load(fh)
        elif suffix == ".joblib":
            import joblib

            obj = joblib.load(path)
        else:
            raise ValueError(f"{path}: unknown classifier file type {suffix!r} (use .skops, .pkl or .joblib)")
    elif ":" in spec:
        obj = _import_spec(spec)
        if isinstance(obj, type) or (not hasattr(obj, "predict_proba") and callable(obj)):
            obj = obj()
    else:
        raise FileNotFoundError(f"classifier {spec!r}: no such file and not 'module:attr'")
    if not isinstance(obj, EmotionClassifier):
        raise ValueError(f"classifier {spec!r} has no predict_proba(videos) method")
    return OrderedClassifier(obj)
