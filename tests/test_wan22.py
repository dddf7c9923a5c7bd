"""Wan2.2 on the tiny random models: A14B's two experts (`tiny-wan22`) and TI2V-5B (`tiny-wan22-ti2v`), on CPU.

Each expert trains only on its own noise levels, with its own LoRA; the files load into diffusers' Wan2.2
pipeline (``load_into_transformer_2`` for the low-noise expert) and change its output; the ComfyUI export
writes one file per expert; `emovid generate` and `emovid benchmark generate` take the per-expert LoRAs.
"""

import json
import re

import pytest
import torch
from factory import make_dataset
from launch import train_on_two_processes
from PIL import Image
from safetensors.torch import load_file

import emovid_datasets.training.trainer as trainer
from emovid_datasets.cli import main
from emovid_datasets.media import read_frames
from emovid_datasets.training.config import TrainConfig
from emovid_datasets.training.families import model_info
from emovid_datasets.training.generate import load_loras
from emovid_datasets.training.lora import (
    COMFYUI_FILE,
    DIFFUSERS_FILE,
    add_lora,
    lora_state_dict,
    save_comfyui_lora,
)
from emovid_datasets.training.models import (
    TINY_TI2V,
    TINY_WAN22,
    Experts,
    build_tiny,
    experts_of,
    load_pipeline,
    size_multiple,
    size_multiple_of,
    trainable_transformer,
)
from emovid_datasets.training.objective import FlowMatchObjective, diffsynth_table, training_loss
from emovid_datasets.training.trainer import train

pytestmark = pytest.mark.usefixtures("torch_one_thread")

SMALL = dict(num_frames=9, height=32, width=32, rank=4, alpha=4)
# The files a Wan2.2 run writes, written out by hand: one per expert and format.
FILES = {"high": ("pytorch_lora_weights_high_noise.safetensors", "lora_comfyui_high_noise.safetensors"),
         "low": ("pytorch_lora_weights_low_noise.safetensors", "lora_comfyui_low_noise.safetensors")}
# Wan2.1/2.2's own module names (wan/modules/model.py) for each diffusers module the LoRA adapts, by hand.
WAN_NAMES = {
    "attn1.to_q": "self_attn.q", "attn1.to_k": "self_attn.k", "attn1.to_v": "self_attn.v",
    "attn1.to_out.0": "self_attn.o", "attn2.to_q": "cross_attn.q", "attn2.to_k": "cross_attn.k",
    "attn2.to_v": "cross_attn.v", "attn2.to_out.0": "cross_attn.o", "ffn.net.0.proj": "ffn.0", "ffn.net.2": "ffn.2",
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> str:
    return str(make_dataset(tmp_path_factory.mktemp("emovid"), per_cell=1, benchmark_per_cell=1, evaluator=False))


def run_pipe(pipe, **extra):
    """4 steps at shift 5 (timesteps 1000, 909, 715, 5): two for each tiny-wan22 expert, at a boundary of 875."""
    return pipe(prompt="a cat runs", num_frames=9, height=32, width=32, num_inference_steps=4, output_type="pt",
                generator=torch.Generator().manual_seed(0), **extra).frames


def recording_loader(record: dict):
    """`trainer.load_pipeline` that also records, per expert, each timestep tensor its transformer is called with."""
    real = trainer.load_pipeline

    def load(model, task, *, dtype=torch.float32):
        pipe = real(model, task, dtype=dtype)
        for name, module in experts_of(pipe).items():
            module.register_forward_pre_hook(
                lambda _m, _args, kwargs, name=name: record.setdefault(name, []).append(kwargs["timestep"].clone()),
                with_kwargs=True)
        record.setdefault("pipes", []).append(pipe)
        return pipe

    return load


def wan22_config(dataset, output, **extra) -> TrainConfig:
    settings = dict(task="t2v", model=TINY_WAN22, data=dataset, output=str(output), sources=["animation"], limit=3,
                    epochs=2, checkpoint_every=2, lr=1e-2, **SMALL)
    return TrainConfig(**{**settings, **extra})


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory):
    """Three 6-step tiny-wan22 runs on one cache: --expert high, low and both; each with the timesteps it used."""
    root = tmp_path_factory.mktemp("wan22-runs")
    out = {}
    for expert in ("high", "low", "both"):
        record: dict = {}
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(trainer, "load_pipeline", recording_loader(record))
            result = train(wan22_config(dataset, root / expert, expert=expert, cache_dir=str(root / "cache")))
        out[expert] = (root / expert, result, record)
    return out


@pytest.mark.parametrize("expert", ["high", "low"])
def test_one_expert_trains_only_at_its_noise_levels_and_only_its_lora_changes(runs, expert):
    folder, result, record = runs[expert]
    other = "low" if expert == "high" else "high"
    assert result.global_step == 6 and all(torch.isfinite(torch.tensor(result.losses)))
    timesteps = torch.cat(record[expert])
    assert len(timesteps) == 6 and other not in record  # one sample a step, never through the other expert
    boundary = 1000 * 0.875  # tiny-wan22 t2v's boundary_ratio, as Wan2.2-T2V-A14B's
    assert bool((timesteps >= boundary).all()) if expert == "high" else bool((timesteps < boundary).all())
    sigmas = [json.loads(line)["sigma"] for line in (folder / "loss.jsonl").read_text().splitlines()]
    assert all((s >= 0.875) == (expert == "high") for s in sigmas)
    assert sorted(p.name for p in folder.glob("*.safetensors")) == sorted(FILES[expert])
    trained = load_file(str(folder / FILES[expert][0]))
    assert trained and all(k.startswith("transformer.blocks.") for k in trained)
    assert any(v.abs().max() > 0 for k, v in trained.items() if "lora_B" in k)  # B started at zero
    checkpoint = load_file(str(folder / "checkpoints" / "step-00000006" / "adapter.safetensors"))
    assert {k.partition(".")[0] for k in checkpoint} == {expert}
    # the other expert got no adapter and kept its base weights
    (pipe,) = record["pipes"]
    untouched = experts_of(pipe)[other]
    assert not any("lora" in n for n, _ in untouched.named_parameters())
    fresh = experts_of(build_tiny("t2v", model=TINY_WAN22))[other].state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in untouched.state_dict().items())


def test_both_experts_train_two_loras_each_as_its_own_run_would(runs):
    folder, result, record = runs["both"]
    assert torch.cat(record["high"]).min() >= 875 and torch.cat(record["low"]).max() < 875
    assert len(torch.cat(record["high"])) == len(torch.cat(record["low"])) == 6  # each expert, every step
    assert sorted(p.name for p in folder.glob("*.safetensors")) == sorted(FILES["high"] + FILES["low"])
    for expert in ("high", "low"):  # same noise seeds, own levels, own AdamW state: the single-expert runs' LoRAs
        alone = load_file(str(runs[expert][0] / FILES[expert][0]))
        together = load_file(str(folder / FILES[expert][0]))
        assert alone.keys() == together.keys()
        assert all(torch.allclose(alone[k], together[k], atol=1e-6) for k in alone), expert
    # the logged loss of a step is the sum of the two experts' losses
    assert result.losses == pytest.approx([h + low for h, low in zip(runs["high"][1].losses, runs["low"][1].losses)],
                                          rel=1e-5)


def test_resume_continues_both_experts_exactly(runs, dataset, tmp_path):
    full_folder, full, _ = runs["both"]
    cache = str(full_folder.parent / "cache")
    first = train(wan22_config(dataset, tmp_path / "run", expert="both", cache_dir=cache, max_steps=4))
    assert first.global_step == 4 and first.losses == pytest.approx(full.losses[:4], rel=1e-5)
    state = load_file(str(tmp_path / "run" / "checkpoints" / "step-00000004" / "adapter.safetensors"))
    assert {k.partition(".")[0] for k in state} == {"high", "low"}
    resumed = train(wan22_config(dataset, tmp_path / "run", expert="both", cache_dir=cache, resume="latest"))
    assert resumed.resumed_from == 4 and resumed.global_step == 6
    assert resumed.losses == pytest.approx(full.losses[4:], rel=1e-5)
    for name in FILES["high"] + FILES["low"]:
        done, again = load_file(str(full_folder / name)), load_file(str(tmp_path / "run" / name))
        assert all(torch.allclose(done[k], again[k], atol=1e-6) for k in done), name
    with pytest.raises(ValueError, match="expert"):
        train(wan22_config(dataset, tmp_path / "run", expert="high", cache_dir=cache, resume="latest"))


def test_trained_expert_loras_load_into_diffusers_wan22_pipeline_and_change_its_output(runs):
    folder = runs["both"][0]
    pipe = build_tiny("t2v", model=TINY_WAN22)
    assert pipe.config.boundary_ratio == 0.875
    base = run_pipe(pipe)
    pipe.load_lora_weights(str(folder / FILES["high"][0]), adapter_name="high")
    high = run_pipe(pipe)
    pipe.load_lora_weights(str(folder / FILES["low"][0]), adapter_name="low", load_into_transformer_2=True)
    both = run_pipe(pipe)
    assert (high - base).abs().max() > 1e-3 and (both - high).abs().max() > 1e-3
    assert list(pipe.transformer.peft_config) == ["high"] and list(pipe.transformer_2.peft_config) == ["low"]
    # the ComfyUI files give the same video, and so does `load_loras` on the training folder
    comfy = build_tiny("t2v", model=TINY_WAN22)
    comfy.load_lora_weights(str(folder / FILES["high"][1]), adapter_name="c")
    comfy.load_lora_weights(str(folder / FILES["low"][1]), adapter_name="c", load_into_transformer_2=True)
    assert torch.allclose(run_pipe(comfy), both, atol=1e-6)
    ours = build_tiny("t2v", model=TINY_WAN22)
    assert load_loras(ours, [(str(folder), 1.0)]) == ["lora_0"]
    assert torch.allclose(run_pipe(ours), both, atol=1e-6)
    half = build_tiny("t2v", model=TINY_WAN22)
    load_loras(half, [(str(runs["low"][0]), 1.0)])  # a low-only run: the high-noise expert stays the base
    assert not getattr(half.transformer, "peft_config", None) and list(half.transformer_2.peft_config) == ["lora_0"]
    with pytest.raises(ValueError, match="single transformer"):
        load_loras(build_tiny("t2v"), [(str(folder), 1.0)])


def test_comfyui_export_has_both_experts_keys_by_an_independent_table(tmp_path):
    pipe = build_tiny("t2v", model=TINY_WAN22)
    experts = trainable_transformer(pipe)
    add_lora(experts, 4, 4)  # alpha = rank: diffusers' loader keeps the tensors as they are
    with torch.no_grad():
        for i, (name, p) in enumerate(experts.named_parameters()):
            if "lora_" in name:
                p.fill_(i + 1)  # every tensor tells which one it is, in both experts
    assert save_comfyui_lora(experts, tmp_path / COMFYUI_FILE) == tmp_path
    state = lora_state_dict(experts)
    for expert in ("high", "low"):
        exported = load_file(str(tmp_path / FILES[expert][1]))
        ours = {k.partition(".")[2]: v for k, v in state.items() if k.startswith(f"{expert}.")}
        expected = {}
        for key, tensor in ours.items():
            block, module, half = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(lora_[AB])\.weight", key).groups()
            expected[f"diffusion_model.blocks.{block}.{WAN_NAMES[module]}.{half}.weight"] = tensor
            expected[f"diffusion_model.blocks.{block}.{WAN_NAMES[module]}.alpha"] = torch.tensor(4.0)
        assert exported.keys() == expected.keys() and len(ours) == 2 * 2 * len(WAN_NAMES)
        assert all(torch.equal(exported[k], expected[k]) for k in expected), expert
    assert not torch.equal(load_file(str(tmp_path / FILES["high"][1]))["diffusion_model.blocks.0.self_attn.q.lora_A.weight"],
                           load_file(str(tmp_path / FILES["low"][1]))["diffusion_model.blocks.0.self_attn.q.lora_A.weight"])
    # diffusers' reader of ComfyUI files puts every tensor back on its own expert's module
    target = build_tiny("t2v", model=TINY_WAN22)
    target.load_lora_weights(str(tmp_path / FILES["high"][1]), adapter_name="comfy")
    target.load_lora_weights(str(tmp_path / FILES["low"][1]), adapter_name="comfy", load_into_transformer_2=True)
    for expert, module in experts_of(target).items():
        loaded = {n.replace(".comfy.", "."): p for n, p in module.named_parameters() if "lora_" in n}
        trained = {n.replace(".default.", "."): p for n, p in experts.experts[expert].named_parameters()
                   if "lora_" in n}
        assert loaded.keys() == trained.keys() and all(torch.equal(loaded[k], trained[k]) for k in trained), expert


def test_expert_levels_are_the_schemes_restricted_to_each_side_of_the_boundary():
    sigmas, weights = diffsynth_table(5.0)
    for scheme in ("diffsynth", "uniform", "logit_normal"):
        base = FlowMatchObjective(scheme)
        high, low = base.for_expert("high", 0.875), base.for_expert("low", 0.875)
        drawn_high, w_high = high.sample(4000, torch.Generator().manual_seed(0))
        drawn_low, _ = low.sample(4000, torch.Generator().manual_seed(0))
        assert drawn_high.min() >= 0.875 and drawn_low.max() < 0.875, scheme
        # the restricted draws are the scheme's own distribution on that side: compare with rejection sampling
        free, _ = base.sample(40000, torch.Generator().manual_seed(1))
        for drawn, side in ((drawn_high, free[free >= 0.875]), (drawn_low, free[free < 0.875])):
            assert abs(drawn.mean().item() - side.mean().item()) < 0.01, scheme
            assert abs(drawn.median().item() - side.median().item()) < 0.02, scheme
        if scheme == "diffsynth":  # the table's own levels and weights, those at or above the boundary
            index = torch.searchsorted(-sigmas, -drawn_high)
            assert torch.equal(sigmas[index], drawn_high) and torch.equal(weights[index], w_high)
    with pytest.raises(ValueError, match="boundary"):
        FlowMatchObjective(expert="high")


def test_boundary_defaults_to_the_models_and_expert_options_need_two_experts(dataset, tmp_path):
    pipe = build_tiny("i2v", model=TINY_WAN22)
    assert trainable_transformer(pipe).boundary == 0.9  # Wan2.2-I2V-A14B's, from the pipeline config
    custom = trainable_transformer(pipe, "low", 0.5)
    assert isinstance(custom, Experts) and list(custom.experts) == ["low"] and custom.boundary == 0.5
    with pytest.raises(ValueError, match="two-expert"):
        trainable_transformer(build_tiny("t2v"), "high")
    record: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "load_pipeline", recording_loader(record))
        train(wan22_config(dataset, tmp_path / "b", expert="high", boundary_ratio=0.3, max_steps=3))
    assert 300 <= torch.cat(record["high"]).min() < 875  # the given boundary, not the model's
    with pytest.raises(ValueError, match="two-expert"):
        train(wan22_config(dataset, tmp_path / "c", model="tiny", expert="low"))
    with pytest.raises(ValueError, match="boundary"):
        train(wan22_config(dataset, tmp_path / "d", boundary_ratio=1.0))


def test_cli_train_generate_and_benchmark_generate_with_expert_loras(dataset, tmp_path):
    out = tmp_path / "lora"
    assert main(["train", "--task", "i2v", "--model", TINY_WAN22, "--data", dataset, "--output", str(out),
                 "--num-frames", "9", "--height", "32", "--width", "32", "--rank", "4", "--alpha", "4",
                 "--sources", "sticker", "--limit", "2", "--max-steps", "2", "--lr", "1e-2", "--expert", "both"]) == 0
    assert sorted(p.name for p in out.glob("*.safetensors")) == sorted(FILES["high"] + FILES["low"])
    entry = load_file(str(next((out / "cache").rglob("*.safetensors"))))
    assert entry["y"].shape == (20, 3, 4, 4) and "image_embeds" not in entry  # Wan2.2 I2V-A14B has no CLIP
    Image.new("RGB", (32, 32), (220, 40, 40)).save(tmp_path / "first.png")
    videos = {}
    for name, lora in (("base", []), ("lora", ["--lora", str(out)])):
        videos[name] = tmp_path / f"{name}.mp4"
        assert main(["generate", "--model", TINY_WAN22, "--prompt", "a cat runs", "--image", str(tmp_path / "first.png"),
                     "--output", str(videos[name]), "--num-frames", "9", "--height", "32", "--width", "32",
                     "--steps", "4", *lora]) == 0
    assert read_frames(videos["base"]).shape == (9, 32, 32, 3)
    assert not (read_frames(videos["base"]) == read_frames(videos["lora"])).all()
    bench = tmp_path / "bench"
    assert main(["benchmark", "generate", "--benchmark", dataset, "--out", str(bench), "--task", "i2v",
                 "--model", TINY_WAN22, "--limit", "2", "--lora", str(out)]) == 0
    record = json.loads((bench / "generation.json").read_text())
    assert (record["family"], record["pipeline"]) == (TINY_WAN22, "WanImageToVideoPipeline")
    assert len(list(bench.glob("*.mp4"))) == 2


def test_ti2v_default_buckets_are_multiples_of_its_32_pixel_patches(dataset, tmp_path):
    """Without --buckets the square of HEIGHTxWIDTH's area is rounded to TI2V-5B's 32, not Wan2.1's 16."""
    shape = dict(task="t2v", model=TINY_TI2V, data=dataset, output="unused", height=32, width=64)
    assert TrainConfig(**shape).validate(16).buckets == ["32x64", "64x32", "48x48"]  # sqrt(32 x 64) = 45.3
    assert TrainConfig(**shape).validate(32).buckets == ["32x64", "64x32", "32x32"]
    assert TrainConfig(**dict(shape, height=704, width=1280)).validate(32).buckets[2] == "960x960"  # TI2V's 720p
    result = train(wan22_config(dataset, tmp_path / "out", model=TINY_TI2V, height=32, width=64, max_steps=1))
    assert result.global_step == 1
    config = json.loads((tmp_path / "out" / "training_config.json").read_text())
    assert config["buckets"] == ["32x64", "64x32", "32x32"]
    with pytest.raises(ValueError, match="--height and --width must be positive multiples of 32"):
        train(wan22_config(dataset, tmp_path / "x", model=TINY_TI2V, height=48, width=64))


@pytest.mark.parametrize("task", ["t2v", "i2v"])
def test_ti2v_5b_trains_and_generates_with_its_own_vae(dataset, tmp_path, task):
    record: dict = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trainer, "load_pipeline", recording_loader(record))
        result = train(wan22_config(dataset, tmp_path / "out", task=task, model=TINY_TI2V, max_steps=3))
    assert result.global_step == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    assert sorted(p.name for p in (tmp_path / "out").glob("*.safetensors")) == [COMFYUI_FILE, DIFFUSERS_FILE]
    entry = load_file(str(next((tmp_path / "out" / "cache").rglob("*.safetensors"))))
    assert entry["latents"].shape == (48, 3, 2, 2)  # z_dim 48, 4x16x16 compression
    timesteps = torch.cat(record["high"]) if task == "t2v" else torch.stack(record["high"])
    if task == "i2v":  # the clean first frame goes in as latents at timestep 0, as diffusers' expand_timesteps
        assert entry["y"].shape == (48, 1, 2, 2) and timesteps.shape == (3, 1, 3)  # 1 token a latent frame
        assert torch.all(timesteps[:, 0, 0] == 0) and torch.all(timesteps[:, 0, 1:] > 0)
    pipe = load_pipeline(TINY_TI2V, task)
    assert pipe.config.expand_timesteps and pipe.vae_scale_factor_spatial == 16
    extra = {"image": Image.new("RGB", (32, 32), (40, 200, 40))} if task == "i2v" else {}
    base = run_pipe(pipe, **extra)
    load_loras(pipe, [(str(tmp_path / "out"), 1.0)])
    assert (run_pipe(pipe, **extra) - base).abs().max() > 1e-4
    with pytest.raises(ValueError, match="multiples of 32"):  # VAE stride 16 x patch 2
        train(wan22_config(dataset, tmp_path / "x", task=task, model=TINY_TI2V, buckets=["48x48"], bucket_frames=[9]))


def test_ti2v_i2v_loss_gives_the_clean_first_frame_at_timestep_0_and_leaves_it_out():
    transformer = load_pipeline(TINY_TI2V, "i2v").transformer
    g = torch.Generator().manual_seed(0)
    batch = {"latents": torch.randn(1, 48, 3, 4, 4, generator=g), "y": torch.randn(1, 48, 1, 4, 4, generator=g),
             "prompt_embeds": torch.randn(1, 5, 32, generator=g)}
    seen = []
    transformer.register_forward_pre_hook(lambda _m, _a, kwargs: seen.append(kwargs), with_kwargs=True)
    loss, sigmas = training_loss(transformer, FlowMatchObjective(), batch, "i2v", 7)
    (inputs,) = seen
    assert torch.equal(inputs["hidden_states"][:, :, :1], batch["y"])  # given, not noised
    assert not torch.equal(inputs["hidden_states"][:, :, 1:], batch["latents"][:, :, 1:])
    tokens = inputs["timestep"].view(3, 2 * 2)  # 3 latent frames of 2x2 patches
    assert torch.all(tokens[0] == 0) and torch.allclose(tokens[1:], sigmas * 1000)

    def with_frame(index):
        """The loss when the DiT's prediction for latent frame ``index`` is replaced by nonsense."""
        hook = transformer.register_forward_hook(lambda _m, _a, out: (out[0].index_fill(2, torch.tensor([index]), 1e3),))
        try:
            return training_loss(transformer, FlowMatchObjective(), batch, "i2v", 7)[0]
        finally:
            hook.remove()

    assert torch.equal(with_frame(0), loss) and with_frame(1) > 100 * loss


def test_saved_wan22_folders_load_by_their_model_index(dataset, tmp_path):
    """The real loading path: A14B with both experts in the run's dtype; TI2V-5B's one folder for t2v and i2v."""
    build_tiny("t2v", model=TINY_WAN22).save_pretrained(tmp_path / "wan22")
    pipe = load_pipeline(str(tmp_path / "wan22"), "t2v", dtype=torch.bfloat16)
    assert pipe.config.boundary_ratio == 0.875 and pipe.transformer_2.dtype == torch.bfloat16
    assert pipe.vae.dtype == torch.float32 and trainable_transformer(pipe).boundary == 0.875
    assert model_info(str(tmp_path / "wan22"), "t2v").family == "wan2.2"
    build_tiny("t2v", model=TINY_TI2V).save_pretrained(tmp_path / "ti2v")
    assert size_multiple_of(str(tmp_path / "ti2v")) == 32 and size_multiple_of(str(tmp_path / "wan22")) == 16
    vae_config = tmp_path / "wan22" / "vae" / "config.json"  # a key config.json leaves out takes diffusers' default
    vae_config.write_text(json.dumps({k: v for k, v in json.loads(vae_config.read_text()).items()
                                      if k != "scale_factor_spatial"}))
    assert size_multiple_of(str(tmp_path / "wan22")) == size_multiple(load_pipeline(str(tmp_path / "wan22"))) == 16
    assert load_pipeline(str(tmp_path / "ti2v"), "i2v").config.expand_timesteps
    out = tmp_path / "bench"
    assert main(["benchmark", "generate", "--benchmark", dataset, "--out", str(out), "--task", "i2v", "--model",
                 str(tmp_path / "ti2v"), "--limit", "1", "--num-frames", "9", "--height", "32", "--width", "32",
                 "--steps", "2", "--dtype", "fp32"]) == 0
    record = json.loads((out / "generation.json").read_text())
    assert (record["family"], record["pipeline"]) == ("wan2.2-ti2v", "WanImageToVideoPipeline")
    assert record["settings"]["fps"] == 24 and len(list(out.glob("*.mp4"))) == 1


@pytest.mark.slow  # two torchrun processes: ~30 s, mostly imports
def test_two_processes_train_both_experts_as_one_process_with_their_global_batch(dataset, tmp_path):
    """Data parallel (torchrun, gloo on CPU) over `Experts`: 2 processes x batch 1 = 1 process x batch 2."""
    common = ["--task", "t2v", "--model", TINY_WAN22, "--data", dataset, "--num-frames", "9", "--height", "32",
              "--width", "32", "--rank", "4", "--alpha", "4", "--sources", "animation", "--limit", "4",
              "--epochs", "1", "--lr", "1e-3", "--cache-dir", str(tmp_path / "cache")]
    assert main(["train", *common, "--batch-size", "2", "--output", str(tmp_path / "one")]) == 0
    train_on_two_processes([*common, "--batch-size", "1", "--output", str(tmp_path / "ddp")])
    for expert in ("high", "low"):
        a, b = (load_file(str(tmp_path / run / FILES[expert][0])) for run in ("ddp", "one"))
        # 5% of what 2 steps at lr 1e-3 move a weight: Adam's first steps turn float noise in near-zero
        # gradients (cross-attention queries over padded text) into differences of ~1e-5
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-4) for k in a), expert
        assert any(v.abs().max() > 1e-3 for k, v in a.items() if "lora_B" in k)
