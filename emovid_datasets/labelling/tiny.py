"""A tiny randomly initialised Qwen2-VL of the real architecture, saved like a hub checkpoint.

`--vlm tiny` (labeller fine-tuning, predict, captions) builds it offline, so every VLM code path runs
with no downloaded weights: the model goes through the same `transformers` Auto classes, processor and
chat template as a real Qwen2-VL. Its tokenizer is a word-level vocabulary of the prompts' words.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..taxonomy import EMOTIONS

TINY = "tiny"
SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>",
                  "<|image_pad|>", "<|endoftext|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# 56x56 frames: 4x4 patches of 14 px, merged 2x2, so a pair of frames is 4 video tokens.
TINY_FRAME_PIXELS = 56 * 56


def _vocabulary() -> list[str]:
    from .captioner import CAPTION_PROMPT
    from .labeller import emotion_question

    words = ["[UNK]", "user", "assistant", ":", ",", ".", "?", '"', "\n"]
    text = f"{emotion_question()} {CAPTION_PROMPT}".lower()
    for mark in ",.:?\"":
        text = text.replace(mark, " ")
    return list(dict.fromkeys(words + sorted(set(text.split()) | set(EMOTIONS))))


def build_tiny_vlm(folder: str | os.PathLike, *, seed: int = 0) -> Path:
    """Save a 1-layer Qwen2-VL with random weights (seeded), its tokenizer and processor to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(_vocabulary())}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>", additional_special_tokens=SPECIAL_TOKENS)
    ids = {t: fast.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    pixels = TINY_FRAME_PIXELS
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=pixels, max_pixels=pixels),
                                 video_processor=Qwen2VLVideoProcessor(min_pixels=pixels, max_pixels=pixels),
                                 tokenizer=fast, chat_template=CHAT_TEMPLATE)
    special = dict(eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|im_start|>"])
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 2, 4]}, **special),
        vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_chans=3),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"], **special)
    torch.manual_seed(seed)
    folder = Path(folder)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
