"""The Wan2.1 LoRA trainer on `--model tiny` (real diffusers classes, random weights, CPU, 9x32x32 clips)."""

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from factory import corrupt_clip, make_dataset, make_manifest, make_video
from launch import train_on_two_processes
from safetensors.torch import load_file

import emovid_datasets.training.trainer as trainer_module
from builder_scripts.publish.build import build_dataset
from emovid_datasets.cli import main
from emovid_datasets.training.cache import BucketCache, LatentCache
from emovid_datasets.training.config import TrainConfig
from emovid_datasets.training.data import clip_buckets, load_rows
from emovid_datasets.training.lora import (
    COMFYUI_FILE,
    DIFFUSERS_FILE,
    add_lora,
    load_lora_state,
    lora_state_dict,
    save_comfyui_lora,
    save_diffusers_lora,
    to_original_keys,
)
from emovid_datasets.training.models import build_tiny, load_pipeline
from emovid_datasets.training.objective import FlowMatchObjective, diffsynth_table, training_loss
from emovid_datasets.training.trainer import _build_cache, train

SMALL = dict(model="tiny", num_frames=9, height=32, width=32, rank=4, alpha=4)


pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    return str(make_dataset(tmp_path_factory.mktemp("emovid"), per_cell=1))


def run_pipe(pipe, seed=0, **extra):
    return pipe(prompt="a cat runs", num_frames=9, height=32, width=32, num_inference_steps=2, output_type="pt",
                generator=torch.Generator().manual_seed(seed), **extra).frames


def test_objective_follows_diffsynth_and_flow_matching():
    sigmas, weights = diffsynth_table(5.0)
    assert len(sigmas) == 1000 and sigmas[0] == 1.0 and sigmas[-1] > 0
    assert torch.all(sigmas[1:] < sigmas[:-1])
    assert abs(weights.mean().item() - 1) < 1e-5 and weights.min() == 0
    assert abs(sigmas[weights.argmax()].item() - 0.5) < 0.01  # the bump peaks at t = 500
    # shift 5 puts most levels in the noisy half
    drawn, w = FlowMatchObjective().sample(4000, torch.Generator().manual_seed(0))
    assert (drawn > 0.5).float().mean() > 0.75 and set(w.tolist()) <= set(weights.tolist())
    logit, w1 = FlowMatchObjective("logit_normal", shift=1.0).sample(4000, torch.Generator().manual_seed(0))
    assert abs(logit.mean().item() - 0.5) < 0.02 and torch.all(w1 == 1)
    x0, noise = torch.randn(2, 16, 3, 4, 4), torch.randn(2, 16, 3, 4, 4)
    obj = FlowMatchObjective()
    xt = obj.noisy_input(x0, noise, torch.tensor([0.0, 1.0]))
    assert torch.equal(xt[0], x0[0]) and torch.equal(xt[1], noise[1])
    assert obj.loss(noise - x0, x0, noise, torch.ones(2)).item() == 0
    assert torch.equal(obj.timesteps(torch.tensor([0.25])), torch.tensor([250.0]))
    with pytest.raises(ValueError, match="timestep sampling"):
        FlowMatchObjective("cosine")


class HalfEcho(torch.nn.Module):
    """A stand-in DiT that predicts half its noisy input and keeps what it was given, to recompute the loss from."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(0.5))
        self.seen = []

    def forward(self, hidden_states, timestep, encoder_hidden_states, encoder_hidden_states_image, return_dict):
        self.seen.append((hidden_states.detach().clone(), timestep.detach().clone()))
        return (self.scale * hidden_states,)


def test_diffsynth_loss_weighs_each_sample_by_its_noise_level():
    table_sigmas, table_weights = diffsynth_table(5.0)
    x0 = torch.randn(3, 4, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    model = HalfEcho()
    loss, sigmas = training_loss(model, FlowMatchObjective(), {"latents": x0, "prompt_embeds": torch.zeros(3, 5, 8)},
                                 "t2v", seeds=[11, 12, 13])
    ((xt, timesteps),) = model.seen
    assert torch.allclose(timesteps, sigmas * 1000)
    s = sigmas.view(-1, 1, 1, 1, 1)
    noise = (xt - (1 - s) * x0) / s  # the noise each sample got, recovered from x_t = (1 - s) x0 + s e
    per_sample = ((0.5 * xt - (noise - x0)) ** 2).flatten(1).mean(1)
    weights = torch.stack([table_weights[torch.argmin((table_sigmas - level).abs())] for level in sigmas])
    assert (weights - 1).abs().max() > 0.1  # these levels' weights are not all 1: dropping them shows
    assert loss.item() == pytest.approx((per_sample * weights).mean().item(), rel=1e-4)
    assert loss.item() != pytest.approx(per_sample.mean().item(), rel=1e-2)


@pytest.mark.parametrize("num_frames", [3, 7, 11, 79])  # 2k+1 but not 4k+1
def test_num_frames_must_be_4k_plus_1_not_merely_odd(num_frames):
    settings = dict(task="t2v", model="tiny", data="unused", output="unused")
    with pytest.raises(ValueError, match="4k\\+1"):
        TrainConfig(**settings, num_frames=num_frames).validate()
    TrainConfig(**settings, num_frames=num_frames + 2).validate()  # the 4k+1 next to it is fine


def test_bucket_options_default_from_the_shape_and_are_checked():
    settings = dict(task="t2v", model="tiny", data="unused", output="unused")
    cfg = TrainConfig(**settings).validate()
    assert cfg.buckets == ["480x832", "832x480", "624x624"] and cfg.bucket_frames == [13, 29, 45, 61, 81]
    assert cfg.bucket_rule().sizes == ((480, 832), (832, 480), (624, 624))
    for buckets in (["480x830"], ["480"], ["0x16"]):
        with pytest.raises(ValueError, match="multiples of 16"):
            TrainConfig(**settings, buckets=buckets).validate()
    with pytest.raises(ValueError, match="4k\\+1"):
        TrainConfig(**settings, bucket_frames=[81, 48]).validate()


def test_tiny_model_is_offline_deterministic_and_loads_from_a_folder(tmp_path):
    pipe = build_tiny("i2v")
    assert type(pipe).__name__ == "WanImageToVideoPipeline"
    assert type(pipe.text_encoder).__name__ == "UMT5EncoderModel"
    assert pipe.transformer.config.in_channels == 36 and pipe.transformer.config.added_kv_proj_dim == 24
    ids = pipe.tokenizer("the cat runs", padding="max_length", max_length=512).input_ids
    assert len(ids) == 512 and ids[-1] == pipe.tokenizer.pad_token_id
    t2v = build_tiny("t2v")
    again = build_tiny("t2v")
    assert all(torch.equal(a, b) for a, b in zip(t2v.transformer.state_dict().values(),
                                                 again.transformer.state_dict().values()))
    t2v.save_pretrained(tmp_path / "tiny-t2v")
    loaded = load_pipeline(str(tmp_path / "tiny-t2v"), "t2v")
    assert torch.allclose(run_pipe(t2v), run_pipe(loaded), atol=1e-5)
    with pytest.raises(ValueError, match="36"):
        load_pipeline(str(tmp_path / "tiny-t2v"), "i2v")


def test_lora_targets_and_original_key_names():
    transformer = build_tiny("i2v").transformer
    add_lora(transformer, 4, 4, image_kv=True)
    names = {n for n, _ in transformer.named_modules() if n.endswith("lora_A")}
    assert "blocks.1.attn1.to_out.0.lora_A" in names and "blocks.0.ffn.net.0.proj.lora_A" in names
    assert "blocks.0.attn2.add_k_proj.lora_A" in names and len(names) == 2 * (8 + 2 + 2)
    keys = to_original_keys({"blocks.3.attn2.add_v_proj.lora_B.weight": torch.zeros(1),
                             "blocks.0.attn1.to_q.lora_A.weight": torch.zeros(1)}, 8)
    assert set(keys) == {"diffusion_model.blocks.3.cross_attn.v_img.lora_B.weight",
                         "diffusion_model.blocks.3.cross_attn.v_img.alpha",
                         "diffusion_model.blocks.0.self_attn.q.lora_A.weight",
                         "diffusion_model.blocks.0.self_attn.q.alpha"}
    with pytest.raises(ValueError, match="I2V"):
        add_lora(build_tiny("t2v").transformer, 4, 4, image_kv=True)


def test_saved_lora_changes_the_pipeline_and_comfyui_export_matches(tmp_path):
    transformer = build_tiny("t2v").transformer
    add_lora(transformer, 4, 16)  # alpha != rank: only the metadata / .alpha keys keep the scale
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    save_diffusers_lora(transformer, tmp_path)
    save_comfyui_lora(transformer, tmp_path / COMFYUI_FILE)
    pipe = build_tiny("t2v")
    base = run_pipe(pipe)
    pipe.load_lora_weights(str(tmp_path / DIFFUSERS_FILE), adapter_name="diffusers")
    with_lora = run_pipe(pipe)
    pipe.unload_lora_weights()
    assert torch.allclose(run_pipe(pipe), base)
    pipe.load_lora_weights(str(tmp_path / COMFYUI_FILE), adapter_name="comfy")
    assert (with_lora - base).abs().max() > 1e-3
    assert torch.allclose(run_pipe(pipe), with_lora, atol=1e-6)


# Wan2.1's own module names (wan/modules/model.py: attention q/k/v/o, the I2V cross-attention's k_img/v_img,
# ffn = Sequential(Linear, GELU, Linear)) for each diffusers module LoRA adapts, written out by hand.
WAN_NAMES = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o", "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v", "attn2.to_out.0": "cross_attn.o", "attn2.add_k_proj": "cross_attn.k_img",
    "attn2.add_v_proj": "cross_attn.v_img", "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
}


def test_comfyui_export_maps_all_twelve_modules_to_their_wan_names(tmp_path):
    transformer = build_tiny("i2v").transformer
    add_lora(transformer, 4, 4, image_kv=True)  # alpha = rank: diffusers' loader keeps the tensors as they are
    with torch.no_grad():
        for i, (name, p) in enumerate(transformer.named_parameters()):
            if "lora_" in name:
                p.fill_(i + 1)  # every tensor tells which one it is
    state = lora_state_dict(transformer)
    exported = to_original_keys(state, 4)
    modules = set()
    for key, tensor in state.items():
        block, module, half = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(lora_[AB])\.weight", key).groups()
        modules.add(module)
        assert torch.equal(exported[f"diffusion_model.blocks.{block}.{WAN_NAMES[module]}.{half}.weight"], tensor), key
    assert modules == set(WAN_NAMES)
    # and diffusers' own reader of ComfyUI files puts every tensor back on the module it came from
    save_comfyui_lora(transformer, tmp_path / COMFYUI_FILE)
    pipe = build_tiny("i2v")
    pipe.load_lora_weights(str(tmp_path / COMFYUI_FILE), adapter_name="comfy")
    loaded = {n.replace(".comfy.", "."): p for n, p in pipe.transformer.named_parameters() if "lora_" in n}
    trained = {n.replace(".default.", "."): p for n, p in transformer.named_parameters() if "lora_" in n}
    assert loaded.keys() == trained.keys() and all(torch.equal(loaded[k], trained[k]) for k in trained)


@pytest.mark.parametrize("task", ["t2v", "i2v"])
def test_cli_train_runs_a_few_steps_with_finite_loss(dataset, tmp_path, task):
    out = tmp_path / "out"
    argv = ["train", "--task", task, "--model", "tiny", "--data", dataset, "--output", str(out),
            "--num-frames", "9", "--height", "32", "--width", "32", "--rank", "4", "--alpha", "4",
            "--sources", "sticker", "--limit", "3", "--max-steps", "3", "--checkpoint-every", "2"]
    assert main(argv + (["--image-kv"] if task == "i2v" else [])) == 0
    rows = [json.loads(line) for line in (out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(r["loss"])) and r["loss"] > 0 for r in rows)
    assert len((out / "loss.csv").read_text().splitlines()) == 4
    config = json.loads((out / "training_config.json").read_text())
    assert config["task"] == task and config["rank"] == 4 and config["lr"] == 1e-4 and config["clips"] == 3
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002", "step-00000003"]
    cache = next((out / "cache").iterdir())
    assert len(list(cache.glob("*.safetensors"))) == 3
    entry = load_file(str(next(cache.glob("*.safetensors"))))
    assert entry["latents"].shape == (16, 3, 4, 4)
    if task == "i2v":
        assert entry["y"].shape == (20, 3, 4, 4) and entry["image_embeds"].shape[-1] == 4
        assert torch.all(entry["y"][:4, 0] == 1) and torch.all(entry["y"][:4, 1:] == 0)
    pipe = build_tiny(task)
    pipe.load_lora_weights(str(out))
    assert any("add_k_proj.lora_A" in n for n, _ in pipe.transformer.named_parameters()) == (task == "i2v")


def test_tiny_run_overfits_one_clip(dataset, tmp_path):
    cfg = TrainConfig(task="t2v", data=dataset, output=str(tmp_path / "out"), limit=1, epochs=60,
                      timestep_sampling="uniform", lr=1e-2, checkpoint_every=1000,
                      **dict(SMALL, rank=8, alpha=8))
    result = train(cfg)
    assert result.global_step == 60
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    # The same noise draws scored before and after training: the LoRA has fitted the clip.
    settings = json.loads(next((tmp_path / "out" / "cache").glob("*/settings.json")).read_text())
    cache = LatentCache(tmp_path / "out" / "cache", settings)
    batch = {k: v[None] for k, v in cache.load(cache.clip_ids()[0]).items()}
    transformer = build_tiny("t2v").transformer
    add_lora(transformer, 8, 8)
    objective = FlowMatchObjective("uniform")
    with torch.no_grad():
        before = sum(training_loss(transformer, objective, batch, "t2v", 10_000 + s)[0].item() for s in range(16))
        adapter = tmp_path / "out" / "checkpoints" / "step-00000060" / "adapter.safetensors"
        load_lora_state(transformer, load_file(str(adapter)))
        after = sum(training_loss(transformer, objective, batch, "t2v", 10_000 + s)[0].item() for s in range(16))
    assert after < 0.8 * before, (before, after)


def test_resume_continues_from_the_checkpoint_exactly(dataset, tmp_path):
    common = dict(task="t2v", data=dataset, sources=["animation"], limit=3, epochs=2, checkpoint_every=2,
                  cache_dir=str(tmp_path / "cache"), lr=1e-3, **SMALL)
    full = train(TrainConfig(output=str(tmp_path / "full"), **common))
    assert full.global_step == 6
    cached = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.safetensors")}
    first = train(TrainConfig(output=str(tmp_path / "run"), max_steps=4, **common))
    assert first.global_step == 4 and first.losses == pytest.approx(full.losses[:4], rel=1e-5)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*.safetensors")} == cached  # reused
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-00000004" / "state.json").read_text())
    assert (state["global_step"], state["epoch"], state["position"]) == (4, 1, 1)
    resumed = train(TrainConfig(output=str(tmp_path / "run"), resume="latest", **common))
    assert resumed.resumed_from == 4 and resumed.global_step == 6
    assert resumed.losses == pytest.approx(full.losses[4:], rel=1e-5)
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "loss.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="rank"):
        train(TrainConfig(output=str(tmp_path / "run"), resume="latest", **dict(common, rank=8)))
    # a shared cache folder holding more clips still trains only on the selected rows
    train(TrainConfig(output=str(tmp_path / "one"), max_steps=1, **dict(common, limit=1)))
    assert json.loads((tmp_path / "one" / "training_config.json").read_text())["clips"] == 1


def test_no_cache_trains_end_to_end_and_bad_arguments_are_named(dataset, tmp_path):
    result = train(TrainConfig(task="i2v", data=dataset, output=str(tmp_path / "out"), sources=["movie"], limit=4,
                               epochs=2, batch_size=2, gradient_accumulation=2, no_cache=True,
                               gradient_checkpointing=True, **SMALL))
    assert result.global_step == 2 and all(torch.isfinite(torch.tensor(result.losses)))  # 2 epochs x 2 batches / 2
    assert not (tmp_path / "out" / "cache").exists()
    with pytest.raises(ValueError, match="4k\\+1"):
        train(TrainConfig(task="t2v", data=dataset, output=str(tmp_path / "x"), **dict(SMALL, num_frames=10)))
    with pytest.raises(ValueError, match="multiples of 16"):
        train(TrainConfig(task="t2v", data=dataset, output=str(tmp_path / "x"), **dict(SMALL, width=40)))
    assert main(["train", "--task", "t2v", "--model", "tiny", "--data", dataset, "--output", str(tmp_path / "y"),
                 "--split", "nope"]) == 2


def test_two_processes_train_what_one_process_trains_with_their_global_batch(dataset, tmp_path):
    """Data parallel (torchrun, gloo on CPU): 2 processes x batch 1 = 1 process x batch 2, step for step."""
    common = ["--task", "t2v", "--model", "tiny", "--data", dataset, "--num-frames", "9", "--height", "32",
              "--width", "32", "--rank", "4", "--alpha", "4", "--sources", "animation", "--limit", "4",
              "--epochs", "2", "--lr", "1e-3"]
    done = train_on_two_processes([*common, "--batch-size", "1", "--output", str(tmp_path / "ddp")])
    assert done.stdout.count("trained to step 4") == 1  # only the main process reports
    assert done.stderr.count(": 2 clips encoded") == 2  # each process cached its half of the 4 clips
    assert main(["train", *common, "--batch-size", "2", "--output", str(tmp_path / "one")]) == 0

    def log(run: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / run / "loss.jsonl").read_text().splitlines()]

    ddp, one = log("ddp"), log("one")
    assert [r["step"] for r in ddp] == [1, 2, 3, 4] and [r["epoch"] for r in ddp] == [0, 0, 1, 1]
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    assert [r["sigma"] for r in ddp] == pytest.approx([r["sigma"] for r in one], rel=1e-6)  # gathered from both
    assert json.loads((tmp_path / "ddp" / "training_config.json").read_text())["processes"] == 2
    a, b = load_file(str(tmp_path / "ddp" / DIFFUSERS_FILE)), load_file(str(tmp_path / "one" / DIFFUSERS_FILE))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_processes_skip_a_step_together_when_one_has_no_decodable_clip(tmp_path):
    """--no-cache across 2 processes with a broken clip: the step is skipped by both, nobody waits forever."""
    dataset = make_dataset(tmp_path / "emovid", per_cell=1)
    rows = load_rows(str(dataset), sources=["animation"]).select(range(4))
    corrupt_clip(dataset, rows[1]["clip_id"])
    done = train_on_two_processes(["--task", "t2v", "--model", "tiny", "--data", str(dataset), "--num-frames", "9",
                                   "--height", "32", "--width", "32", "--rank", "4", "--alpha", "4", "--sources",
                                   "animation", "--limit", "4", "--epochs", "1", "--no-cache",
                                   "--output", str(tmp_path / "out")], timeout=300)
    assert "skipped clip" in done.stderr and "another process had no decodable clip" in done.stderr
    steps = [json.loads(line) for line in (tmp_path / "out" / "loss.jsonl").read_text().splitlines()]
    # 4 rows = 2 global batches an epoch; the broken one is no step, so the second step comes from epoch 1
    assert [r["step"] for r in steps] == [1, 2] and [r["epoch"] for r in steps] == [0, 1]
    assert all(r["loss"] > 0 for r in steps)
    corrupt_clip(dataset, rows[0]["clip_id"])  # now neither of the first two rows decodes
    with pytest.raises(ValueError, match="whole epoch"):
        train(TrainConfig(task="t2v", data=str(dataset), output=str(tmp_path / "none"), sources=["animation"],
                          limit=2, no_cache=True, **SMALL))


def test_processes_share_the_cache_work_even_when_one_starts_late(dataset, tmp_path, caplog):
    """Process 1 looks at the cache only once process 0 has reached a barrier: each still encodes its half."""
    cfg = TrainConfig(task="t2v", data=dataset, output=str(tmp_path / "run"), sources=["animation"], limit=4,
                      **SMALL).validate()
    pipes = [load_pipeline("tiny", "t2v") for _ in range(2)]  # one each, as processes have (the VAE keeps state)
    rows = load_rows(dataset, sources=["animation"]).select(range(4))
    buckets = clip_buckets(rows, cfg.bucket_rule(), cfg.fps)
    barrier, first_arrived = threading.Barrier(2, timeout=120), threading.Event()

    def process(index: int) -> BucketCache:
        def wait_for_everyone():
            first_arrived.set()
            barrier.wait()

        accelerator = SimpleNamespace(process_index=index, num_processes=2, is_main_process=index == 0,
                                      wait_for_everyone=wait_for_everyone)
        if index == 1:
            first_arrived.wait(timeout=120)  # a late start: process 0 is already at its first barrier
        return _build_cache(cfg, pipes[index], rows, buckets, Path(cfg.output), torch.device("cpu"), torch.float32,
                            accelerator)

    caplog.set_level("INFO", logger="emovid_datasets")
    with ThreadPoolExecutor(2) as pool:
        caches = list(pool.map(process, (0, 1), timeout=300))
    assert all(caches[0].has(c) for c in rows["clip_id"])  # before the fix, process 1's share left a clip out
    assert caplog.text.count(": 2 clips encoded") == 2


def test_a_launch_accelerate_does_not_join_is_refused(dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # e.g. torchrun on a machine without GPUs and no ACCELERATE_USE_CPU
    with pytest.raises(RuntimeError, match="ACCELERATE_USE_CPU=1"):
        train(TrainConfig(task="t2v", data=dataset, output=str(tmp_path / "out"), max_steps=1, **SMALL))


def test_losses_go_to_tensorboard_when_it_is_installed(dataset, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(TrainConfig(task="t2v", data=dataset, output=str(tmp_path / "out"), sources=["sticker"], limit=2,
                               max_steps=3, **SMALL))
    events = EventAccumulator(str(next((tmp_path / "out" / "logs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    scalars = events.Scalars("loss")
    assert [e.step for e in scalars] == [1, 2, 3]
    assert [e.value for e in scalars] == pytest.approx(result.losses, rel=1e-6)
    assert [e.value for e in events.Scalars("lr")] == pytest.approx([1e-4] * 3)


def test_sources_are_read_from_their_own_configs(tmp_path):
    """Training on some sources reads only their shards (on the Hub: downloads only those)."""
    dataset = make_dataset(tmp_path / "emovid", per_cell=1)
    for shard in (dataset / "data" / "default").glob("*.parquet"):
        shard.unlink()  # a read of the default config (all sources) would now fail
    stickers = load_rows(str(dataset), sources=["sticker"])
    assert len(stickers) == 8 and set(stickers["source"]) == {stickers.features["source"].str2int("sticker")}
    both = load_rows(str(dataset), sources=["sticker", "animation", "sticker"])
    assert len(both) == 16
    assert len(load_rows(str(dataset), config="animation", sources=["animation"])) == 8
    with pytest.raises(ValueError, match="unknown source"):
        load_rows(str(dataset), sources=["cartoon"])
    with pytest.raises(ValueError, match="no rows"):
        load_rows(str(dataset), config="animation", sources=["sticker"])


# Buckets: landscape, portrait and square (height x width), and three lengths at 16 fps.
BUCKETED = dict(SMALL, model="tiny-wan", buckets=["32x48", "48x32", "32x32"], bucket_frames=[5, 9, 13])
# Per source: ((width, height), frames at 12 fps). Stickers square; 1 s, 0.75 s and 0.5 s give 16, 12 and 8 frames
# at 16 fps, so the buckets 13, 9 and 5 frames; the 128x64 clip is 2:1, wider than its 3:2 bucket.
SHAPES = {
    "sticker": [((48, 48), 12), ((64, 64), 12), ((48, 48), 6), ((64, 64), 6)],
    "animation": [((96, 64), 12), ((128, 64), 12), ((96, 64), 9)],
    "movie": [((64, 96), 12), ((64, 96), 12)],
}


def framed(width: int, height: int, level: int) -> np.ndarray:
    """A dark frame with a centre of brightness ``level`` half as wide and half as high: a crop shows in its share."""
    frame = np.full((height, width, 3), 20, np.uint8)
    frame[height // 4:height - height // 4, width // 4:width - width // 4] = level
    return frame


@pytest.fixture(scope="module")
def shaped_dataset(tmp_path_factory) -> str:
    """`SHAPES`' clips, drawn with `framed`, each frame brighter than the one before (a loop would show)."""
    root = tmp_path_factory.mktemp("shaped")
    manifest = make_manifest(root / "raw", per_cell=1)
    table = pq.read_table(manifest)
    rows = []
    for source, clips in SHAPES.items():
        for row, ((width, height), frames) in zip([r for r in table.to_pylist() if r["source"] == source], clips):
            make_video(row["video_path"], frames=frames, size=(width, height), audio=source != "sticker",
                       color=lambda i, w=width, h=height: framed(w, h, 150 + 8 * i))
            rows.append(row)
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), manifest)
    build_dataset(manifest, root / "dataset", min_shards=1, evaluator=False, progress=False)
    return str(root / "dataset")


@pytest.fixture
def decoded(monkeypatch) -> dict:
    """clip_id -> (bucket, video) of every clip the trainer decodes in this test."""
    seen = {}
    adapter_clips = trainer_module.adapter_clips

    def recording(rows, bucket, **options):
        for sample in adapter_clips(rows, bucket, **options):
            seen[sample["clip_id"]] = (str(bucket), sample["video"])
            yield sample

    monkeypatch.setattr(trainer_module, "adapter_clips", recording)
    return seen


def bright_share(video: torch.Tensor) -> tuple[float, float]:
    """How much of the first frame's middle column and middle row is `framed`'s bright centre."""
    frame = video[:, 0].mean(0)
    height, width = frame.shape
    return (frame[:, width // 2] > -0.3).float().mean().item(), (frame[height // 2] > -0.3).float().mean().item()


def source_shapes(dataset: str) -> dict[str, tuple[int, int, int]]:
    """clip_id -> (width, height, frames) as built."""
    rows = load_rows(dataset)
    return dict(zip(rows["clip_id"], zip(rows["width"], rows["height"], rows["num_frames"])))


def test_mixed_aspects_train_in_their_buckets_cropping_only_the_aspect_difference(shaped_dataset, tmp_path,
                                                                                   decoded):
    out = tmp_path / "out"
    result = train(TrainConfig(task="t2v", data=shaped_dataset, output=str(out), epochs=1, batch_size=2,
                               **BUCKETED))
    config = json.loads((out / "training_config.json").read_text())
    assert config["bucket_clips"] == {"5x32x32": 2, "9x32x48": 1, "13x32x32": 2, "13x32x48": 2, "13x48x32": 2}
    assert result.global_step == 5  # a batch of 2 per bucket, and the 9-frame clip alone at the end of the epoch
    # the latent cache has a folder per bucket, holding its clips at its shape
    for bucket, clips in config["bucket_clips"].items():
        frames, height, width = map(int, bucket.split("x"))
        (folder,) = (out / "cache").glob(f"t2v-{bucket}-*")
        entries = [load_file(str(p)) for p in folder.glob("*.safetensors")]
        assert len(entries) == clips and all(e["latents"].shape == (16, (frames - 1) // 4 + 1, height // 8,
                                                                    width // 8) for e in entries)
    shapes = source_shapes(shaped_dataset)
    assert decoded.keys() == shapes.keys()
    for clip_id, (bucket, video) in decoded.items():
        frames, height, width = map(int, bucket.split("x"))
        assert video.shape == (3, frames, height, width)
        src_width, src_height, src_frames = shapes[clip_id]
        assert frames == max(n for n in (5, 9, 13) if n * 12 <= src_frames * 16)  # the longest it fills
        brightness = video.mean((0, 2, 3))
        assert torch.all(brightness[1:] >= brightness[:-1] - 0.01), clip_id  # never looped back to its start
        # scaled to cover the bucket, cropped only where the aspects differ: kept = the smaller / the larger aspect
        aspect, bucket_aspect = src_width / src_height, width / height
        kept_x, kept_y = min(1, bucket_aspect / aspect), min(1, aspect / bucket_aspect)
        assert bright_share(video) == pytest.approx((0.5 / kept_y, 0.5 / kept_x), abs=0.07), clip_id
    wide = next(clip_id for clip_id, (width, height, _) in shapes.items() if width == 2 * height)
    assert bright_share(decoded[wide][1])[1] == pytest.approx(2 / 3, abs=0.07)  # the 2:1 clip lost a quarter


def test_a_sticker_only_run_keeps_square_clips_square(shaped_dataset, tmp_path, decoded):
    out = tmp_path / "out"
    assert main(["train", "--task", "t2v", "--model", "tiny-wan", "--data", shaped_dataset, "--output", str(out),
                 "--sources", "sticker", "--num-frames", "13", "--height", "32", "--width", "48", "--rank", "4",
                 "--alpha", "4", "--max-steps", "2"]) == 0
    config = json.loads((out / "training_config.json").read_text())
    assert config["buckets"] == ["32x48", "48x32", "32x32"] and config["bucket_frames"] == [13]  # the defaults
    assert config["bucket_clips"] == {"13x32x32": 4}
    assert len(decoded) == 4
    for _, video in decoded.values():
        assert video.shape[2:] == (32, 32) and bright_share(video) == pytest.approx((0.5, 0.5), abs=0.07)


def test_a_fresh_run_is_refused_where_an_earlier_runs_checkpoints_are_unless_overwrite(dataset, tmp_path):
    """Its checkpoints would sort among the earlier ones: pruning would delete its own, --resume take theirs."""
    common = dict(task="t2v", data=dataset, sources=["animation"], limit=3, checkpoint_every=1, keep_checkpoints=2,
                  output=str(tmp_path / "run"), cache_dir=str(tmp_path / "cache"), lr=1e-3, **SMALL)
    train(TrainConfig(max_steps=3, **common))
    checkpoints = tmp_path / "run" / "checkpoints"
    before = {p.name: (p / "adapter.safetensors").read_bytes() for p in checkpoints.iterdir()}
    assert sorted(before) == ["step-00000002", "step-00000003"]
    with pytest.raises(ValueError, match="earlier run's checkpoints .*step-00000003.*--resume.*--overwrite"):
        train(TrainConfig(max_steps=1, **common))
    assert {p.name: (p / "adapter.safetensors").read_bytes() for p in checkpoints.iterdir()} == before
    fresh = train(TrainConfig(max_steps=1, overwrite=True, **common))
    assert fresh.global_step == 1 and sorted(p.name for p in checkpoints.iterdir()) == ["step-00000001"]
    resumed = train(TrainConfig(max_steps=2, resume="latest", **common))  # continues the fresh run, not the old one
    assert resumed.resumed_from == 1 and resumed.global_step == 2


def test_resume_with_buckets_lands_at_the_exact_data_position(shaped_dataset, tmp_path):
    common = dict(task="t2v", data=shaped_dataset, sources=["animation", "movie"], epochs=2, batch_size=2,
                  checkpoint_every=1, keep_checkpoints=10, cache_dir=str(tmp_path / "cache"), lr=1e-3, **BUCKETED)
    full = train(TrainConfig(output=str(tmp_path / "full"), **common))
    assert full.global_step == 6  # per epoch: 2 full batches (13x32x48, 13x48x32), then the 9x32x48 clip alone
    first = train(TrainConfig(output=str(tmp_path / "run"), max_steps=4, **common))
    assert first.losses == pytest.approx(full.losses[:4], rel=1e-5)

    def position(step: int) -> tuple[int, int]:
        state = json.loads((tmp_path / "run" / "checkpoints" / f"step-{step:08d}" / "state.json").read_text())
        return state["epoch"], state["position"]

    assert [position(step) for step in (1, 2, 3, 4)] == [(0, 2), (0, 4), (1, 0), (1, 2)]  # rows, not batches
    resumed = train(TrainConfig(output=str(tmp_path / "run"), **dict(common, resume=str(
        tmp_path / "run" / "checkpoints" / "step-00000002"))))
    assert resumed.resumed_from == 2 and resumed.global_step == 6
    assert resumed.losses == pytest.approx(full.losses[2:], rel=1e-5)  # the lone clip first, then epoch 1
    with pytest.raises(ValueError, match="bucket_frames"):
        train(TrainConfig(output=str(tmp_path / "run"), resume="latest", **dict(common, bucket_frames=[9])))


def test_two_processes_with_buckets_train_what_one_process_trains_with_their_global_batch(shaped_dataset, tmp_path):
    """2 processes x batch 1 = 1 process x batch 2 with 3 buckets of 2 clips (torchrun, gloo on CPU)."""
    common = ["--task", "t2v", "--model", "tiny-wan", "--data", shaped_dataset, "--rank", "4", "--alpha", "4",
              "--sources", "sticker", "movie", "--buckets", *BUCKETED["buckets"], "--bucket-frames", "5", "9", "13",
              "--epochs", "2", "--lr", "1e-3"]
    train_on_two_processes([*common, "--batch-size", "1", "--output", str(tmp_path / "ddp")])
    assert main(["train", *common, "--batch-size", "2", "--output", str(tmp_path / "one")]) == 0
    runs = {run: json.loads((tmp_path / run / "training_config.json").read_text()) for run in ("ddp", "one")}
    assert runs["ddp"]["bucket_clips"] == runs["one"]["bucket_clips"] == {"5x32x32": 2, "13x32x32": 2, "13x48x32": 2}

    def log(run: str) -> list[dict]:
        return [json.loads(line) for line in (tmp_path / run / "loss.jsonl").read_text().splitlines()]

    ddp, one = log("ddp"), log("one")
    assert [r["step"] for r in ddp] == [1, 2, 3, 4, 5, 6] and [r["epoch"] for r in ddp] == [0, 0, 0, 1, 1, 1]
    assert [r["loss"] for r in ddp] == pytest.approx([r["loss"] for r in one], rel=1e-5)
    a, b = load_file(str(tmp_path / "ddp" / DIFFUSERS_FILE)), load_file(str(tmp_path / "one" / DIFFUSERS_FILE))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
