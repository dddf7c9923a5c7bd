"""The VLM labeller and captioner through real `transformers` code: a tiny randomly initialised Qwen2-VL.

The model, its tokenizer (a word-level vocabulary built here) and its processor are saved to a
folder and loaded by `TransformersVLM` through the Auto classes, exactly as a hub checkpoint would be.
"""

import numpy as np
import pytest
from emotion_clips import write_emotion_clip

from emovid_datasets.labelling import VLMCaptioner, VLMLabeller, parse_emotion
from emovid_datasets.labelling.labeller import emotion_question
from emovid_datasets.taxonomy import EMOTIONS

SPECIAL = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|video_pad|>", "<|image_pad|>",
           "<|endoftext|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>{% else %}{{ c['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_tiny_qwen2_vl(folder):
    """Save a 1-layer Qwen2-VL with random weights, a word-level tokenizer and its processor to ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLProcessor
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    words = ["[UNK]", "user", "assistant", ":", ",", ".", "?", '"', "\n"]
    words += sorted({w for w in (emotion_question() + " describe this video in two or three sentences what happens "
                                 "setting and mood it conveys with description only").lower().replace(",", " ")
                     .replace(".", " ").replace(":", " ").split()} | set(EMOTIONS))
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(dict.fromkeys(words))}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="<|endoftext|>",
                                   eos_token="<|im_end|>", additional_special_tokens=SPECIAL)
    ids = {t: fast.convert_tokens_to_ids(t) for t in SPECIAL}
    pixels = 56 * 56  # 2x2 merged patches per frame pair
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
    torch.manual_seed(0)
    Qwen2VLForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl")))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    return [write_emotion_clip(root / f"{e}.mp4", e, rng) for e in ("fear", "awe", "sadness")]


def test_vlm_labeller_runs_a_real_transformers_model(tiny_model, clips):
    labeller = VLMLabeller(tiny_model, num_frames=4, frame_size=(56, 56), max_new_tokens=4, batch_size=2)
    labeller.generate.device = "cpu"
    predictions = labeller.label(clips)
    assert len(predictions) == 3
    for pred in predictions:
        assert isinstance(pred.raw, str)
        assert len(pred.raw.split()) <= 4  # at most max_new_tokens words from the word-level vocabulary
        assert (pred.emotion, pred.reason) == (parse_emotion(pred.raw).emotion, parse_emotion(pred.raw).reason)
    # Greedy decoding is deterministic: batched and one-by-one answers agree.
    assert [labeller.label([c])[0].raw for c in clips] == [p.raw for p in predictions]
    proba = labeller.predict_proba(clips)
    assert proba.shape == (3, 8) and set(proba.sum(axis=1)) <= {0.0, 1.0}


def test_vlm_captioner_runs_a_real_transformers_model(tiny_model, clips):
    captioner = VLMCaptioner(tiny_model, num_frames=4, frame_size=(56, 56), max_new_tokens=6)
    captioner.generate.device = "cpu"
    rows = [{"clip_id": c.stem, "video_path": str(c)} for c in clips]
    texts = captioner.caption(rows)  # seeded random weights: greedy decoding yields words, not an instant stop
    assert len(texts) == 3 and all(t and t == " ".join(t.split()) and len(t.split()) <= 6 for t in texts)
