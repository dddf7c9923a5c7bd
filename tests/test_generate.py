"""`emovid generate` on `--model tiny`: MP4 (and GIF) output, emotion prompts, mixed LoRAs, image-to-video."""

import numpy as np
import pytest
import torch
from PIL import Image

from emovid_datasets.cli import main
from emovid_datasets.media import probe, read_frames
from emovid_datasets.taxonomy import emotion_sentence
from emovid_datasets.training.generate import generate, parse_lora
from emovid_datasets.training.lora import COMFYUI_FILE, add_lora, save_comfyui_lora, save_diffusers_lora
from emovid_datasets.training.models import build_tiny

SMALL = dict(num_frames=9, height=32, width=32, steps=2, seed=3)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    """Two LoRA folders for the tiny T2V model with different random updates (the second also as ComfyUI keys)."""
    root = tmp_path_factory.mktemp("loras")
    folders = []
    for i, (rank, alpha) in enumerate([(4, 4), (8, 16)]):
        transformer = build_tiny("t2v").transformer
        add_lora(transformer, rank, alpha)
        with torch.no_grad():
            for name, p in transformer.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.3, generator=torch.Generator().manual_seed(10 + i))
        folder = root / f"lora{i}"
        save_diffusers_lora(transformer, folder)
        save_comfyui_lora(transformer, folder / COMFYUI_FILE)
        folders.append(folder)
    return folders


def test_parse_lora():
    assert parse_lora("out/fear") == ("out/fear", 1.0)
    assert parse_lora("out/fear:0.6") == ("out/fear", 0.6)
    assert parse_lora("C:/loras/x") == ("C:/loras/x", 1.0)
    assert parse_lora("/a/b:c:-0.5") == ("/a/b:c", -0.5)


def test_cli_generate_writes_playable_mp4_and_gif_with_two_loras(tmp_path, loras):
    out = tmp_path / "fear.mp4"
    code = main(["generate", "--model", "tiny", "--lora", f"{loras[0]}:0.7", "--lora", f"{loras[1]}:0.5",
                 "--prompt", "a cat runs", "--emotion", "fear", "--output", str(out), "--sticker",
                 "--num-frames", "9", "--height", "32", "--width", "32", "--steps", "2"])
    assert code == 0
    info = probe(out)
    assert (info.num_frames, info.width, info.height, info.video_codec) == (9, 32, 32, "h264")
    assert abs(info.fps - 16) < 0.1
    frames = read_frames(out)
    assert frames.shape == (9, 32, 32, 3) and frames.std() > 0
    gif = Image.open(out.with_suffix(".gif"))
    assert gif.n_frames == 9 and gif.info["loop"] == 0 and gif.info["duration"] in (60, 62, 63)


def test_loras_mix_and_change_the_output(tmp_path, loras):
    base = generate("tiny", "a cat runs", tmp_path / "base.mp4", **SMALL)
    one = generate("tiny", "a cat runs", tmp_path / "one.mp4", loras=[(str(loras[0]), 1.0)], **SMALL)
    mixed = generate("tiny", "a cat runs", tmp_path / "mixed.mp4",
                     loras=[(str(loras[0]), 1.0), (str(loras[1]), 0.8)], **SMALL)
    comfy = generate("tiny", "a cat runs", tmp_path / "comfy.mp4",
                     loras=[(str(loras[0]), 1.0), (str(loras[1] / COMFYUI_FILE), 0.8)], **SMALL)
    diff = lambda a, b: np.abs(a.frames.astype(int) - b.frames.astype(int)).max()  # noqa: E731
    assert diff(base, one) > 2 and diff(one, mixed) > 2
    assert diff(mixed, comfy) <= 1  # the ComfyUI export is the same adapter
    assert base.prompt == "a cat runs" and base.gif is None
    with pytest.raises(FileNotFoundError, match="missing"):
        generate("tiny", "x", tmp_path / "x.mp4", loras=[(str(tmp_path / "missing"), 1.0)], **SMALL)


def test_image_to_video_from_a_first_frame_with_a_t2v_lora(tmp_path, loras):
    image = tmp_path / "first.png"
    Image.new("RGB", (48, 40), (220, 30, 30)).save(image)
    result = generate("tiny", "a sticker", tmp_path / "i2v.mp4", emotion="anger", image=str(image),
                      loras=[(str(loras[0]), 1.0)], sticker=True, **SMALL)
    assert result.prompt.endswith(emotion_sentence("anger"))
    assert result.frames.shape == (9, 32, 32, 3) and Image.open(result.gif).n_frames == 9
    assert probe(result.video).num_frames == 9
    # the first frame conditions the video: another image, same seed, gives other frames
    blue = tmp_path / "blue.png"
    Image.new("RGB", (48, 40), (20, 40, 230)).save(blue)
    other = generate("tiny", "a sticker", tmp_path / "i2v-blue.mp4", emotion="anger", image=str(blue),
                     loras=[(str(loras[0]), 1.0)], **SMALL)
    assert np.abs(other.frames.astype(int) - result.frames.astype(int)).mean() > 1
    with pytest.raises(ValueError, match="first frame"):
        generate("tiny", "x", tmp_path / "y.mp4", image=str(tmp_path / "none.png"), **SMALL)
