"""The boundary to a chat video-language model on `transformers`: messages + frames in, text out.

`VLMLabeller` and `VLMCaptioner` build the chat messages and parse the answer; the model call
itself is a `Generate` callable, by default `TransformersVLM` (any `AutoModelForImageTextToText`
chat model that takes video, e.g. Qwen2.5-VL, LLaVA-OneVision, SmolVLM2 or a fine-tuned
NVILA-Lite with ``trust_remote_code``). Tests inject a fake callable at this boundary.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..devices import default_device
from ..media import MediaSource, sample_frames

log = logging.getLogger("emovid")

# generate(messages, videos, max_new_tokens) -> one answer per conversation; videos are (T, H, W, 3) uint8.
Generate = Callable[[list[list[dict[str, Any]]], list[np.ndarray], int], list[str]]


def video_message(prompt: str) -> list[dict[str, Any]]:
    """A one-turn chat conversation with a video placeholder followed by ``prompt``."""
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]


def ask_about_videos(generate: Generate, videos: Sequence[MediaSource], conversation: list[dict[str, Any]], *,
                     num_frames: int, frame_size: Optional[tuple[int, int]], max_new_tokens: int) -> list[str]:
    """One answer per video: its sampled frames sent with ``conversation`` in a single generation call."""
    width, height = frame_size or (None, None)
    frames = [sample_frames(v, num_frames, width=width, height=height) for v in videos]
    replies = generate([conversation for _ in videos], frames, max_new_tokens)
    if len(replies) != len(videos):
        raise RuntimeError(f"VLM returned {len(replies)} answers for {len(videos)} clips")
    return replies


def load_vlm(model: str, *, device: Optional[str] = None, dtype: str = "auto", trust_remote_code: bool = False,
             revision: Optional[str] = None) -> tuple[Any, Any]:
    """(processor, model) of a `transformers` chat VLM from a local path or hub id, the model on ``device``."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    device = device or default_device()
    log.info("loading VLM %s on %s", model, device)
    processor = AutoProcessor.from_pretrained(model, trust_remote_code=trust_remote_code, revision=revision)
    processor.tokenizer.padding_side = "left"  # decoder-only batches pad on the left
    vlm = AutoModelForImageTextToText.from_pretrained(model, dtype=dtype, trust_remote_code=trust_remote_code,
                                                      revision=revision)
    return processor, vlm.to(device)


def vlm_inputs(processor: Any, conversations: list[list[dict[str, Any]]], videos: Sequence[np.ndarray]) -> Any:
    """The processor's batch (token ids, attention mask, video pixels) for chat conversations and their frames."""
    texts = [processor.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    return processor(text=texts, videos=list(videos), padding=True, do_sample_frames=False, return_tensors="pt")


class TransformersVLM:
    """Greedy generation with a `transformers` chat VLM, loaded on first use from a local path or hub id."""

    def __init__(self, model: str, *, device: Optional[str] = None, dtype: str = "auto",
                 trust_remote_code: bool = False) -> None:
        self.model_id = model
        self.device = device
        self.dtype = dtype
        self.trust_remote_code = trust_remote_code
        self._processor: Any = None
        self._model: Any = None

    def load(self) -> None:
        """Load processor and weights (once); raises OSError naming the model when they are unavailable."""
        if self._model is None:
            self._processor, self._model = load_vlm(self.model_id, device=self.device, dtype=self.dtype,
                                                    trust_remote_code=self.trust_remote_code)
            self._model.eval()

    def __call__(self, conversations: list[list[dict[str, Any]]], videos: list[np.ndarray],
                 max_new_tokens: int) -> list[str]:
        import torch

        self.load()
        inputs = vlm_inputs(self._processor, conversations, videos).to(self._model.device)
        with torch.inference_mode():
            out = self._model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self._processor.batch_decode(new_tokens, skip_special_tokens=True)]
