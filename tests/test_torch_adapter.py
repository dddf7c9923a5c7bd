"""emovid_datasets.torch: EmoVid rows -> training tensors, sharded across workers and nodes, resumable."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from factory import make_dataset, make_video
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from emovid_datasets.loading import load_emovid
from emovid_datasets.media import Mp4Writer, decode_audio
from emovid_datasets.media.probe import probe
from emovid_datasets.torch import BucketBatcher, EmoVidClips, collate_clips, nearest_bucket, to_model_range
from emovid_datasets.torch.batching import Bucket, BucketRule, frames_within
from emovid_datasets.torch.clips import DECODERS
from emovid_datasets.torch.decoding import decode_window
from emovid_datasets.torch.resize import plan_resize
from emovid_datasets.torch.sampling import target_times

SMALL = dict(num_frames=9, height=32, width=32)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """24 clips (3 sources x 8 emotions, 12 frames at 12 fps, 64x48) in 4 shards per source (12 in `default`)."""
    return make_dataset(tmp_path_factory.mktemp("emovid"), min_shards=4)


@pytest.fixture(scope="module")
def all_ids(dataset_dir) -> list[str]:
    return sorted(load_emovid(str(dataset_dir), split="train", decode_media=False)["clip_id"])


def stream(dataset_dir: Path) -> datasets.IterableDataset:
    return load_emovid(str(dataset_dir), split="train", streaming=True, decode_media=False)


def rows_dataset(videos: dict[str, bytes]) -> datasets.Dataset:
    """A map-style dataset of minimal EmoVid-like rows (names as strings, no valence column)."""
    return datasets.Dataset.from_list([
        {"clip_id": clip_id, "source": "movie", "emotion": "fear", "caption": f"Clip {clip_id}.",
         "video": {"bytes": data, "path": None}}
        for clip_id, data in videos.items()
    ])


def grey_video(path: Path, frames: int = 12, fps: float = 12, size=(64, 48), step: int = 20) -> bytes:
    """Frame i is uniformly grey at level 10 + step * i, so a pixel value tells which source frame it is."""
    make_video(path, frames=frames, fps=fps, size=size, audio=False,
               color=lambda i: np.full((size[1], size[0], 3), 10 + step * i, dtype=np.uint8))
    return path.read_bytes()


def source_frame(video: torch.Tensor, i: int, step: int = 20) -> int:
    """Which grey_video frame output frame i shows."""
    level = (video[:, i].mean().item() + 1) * 127.5
    return round((level - 10) / step)


def test_sample_shapes_range_names_prompt_and_audio(dataset_dir):
    samples = {s["clip_id"]: s for s in EmoVidClips(stream(dataset_dir), **SMALL, with_audio=True)}
    assert len(samples) == 24
    s = samples["animation-fear-00"]
    assert s["video"].shape == (3, 9, 32, 32) and s["video"].dtype == torch.float32
    assert s["video"].min() >= -1 and s["video"].max() <= 1
    assert torch.equal(s["first_frame"], s["video"][:, 0])
    assert (s["emotion"], s["valence"], s["source"]) == ("fear", "negative", "animation")
    assert s["prompt"] == 'A animation clip in colour 6. The video is in the "fear" emotion.'
    assert s["audio"].shape == (1, round(9 * 16000 / 16)) and s["audio"].abs().max() > 0.1
    sticker = samples["sticker-awe-00"]
    assert sticker["valence"] == "positive"
    assert torch.count_nonzero(sticker["audio"]) == 0  # stickers have no sound: silence of the right length
    # The colour survives: the factory encodes the emotion as hue, so two emotions differ.
    assert (s["video"].mean((1, 2, 3)) - sticker["video"].mean((1, 2, 3))).abs().max() > 0.05


def test_uint8_video_converts_to_the_same_floats(dataset_dir):
    ds = stream(dataset_dir).take(2)
    floats = list(EmoVidClips(ds, **SMALL))
    raw = list(EmoVidClips(ds, **SMALL, video_dtype=torch.uint8))
    for f, r in zip(floats, raw):
        assert r["video"].dtype == r["first_frame"].dtype == torch.uint8
        assert torch.equal(to_model_range(r["video"]), f["video"])
        assert torch.equal(to_model_range(r["first_frame"]), f["first_frame"])
    assert to_model_range(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]
    with pytest.raises(ValueError, match="video_dtype"):
        EmoVidClips(ds, video_dtype=torch.int64)


@pytest.mark.parametrize("num_frames", [0, 2, 3, 7, 8, 10, 11, 79, 80])  # 3, 7, 11, 79 are 2k+1, not 4k+1
def test_num_frames_must_be_4k_plus_1(dataset_dir, num_frames):
    with pytest.raises(ValueError, match="4k\\+1"):
        EmoVidClips(stream(dataset_dir), num_frames=num_frames)


def test_prompt_templates(dataset_dir):
    ds = stream(dataset_dir).take(1)
    assert next(iter(EmoVidClips(ds, **SMALL, prompt="caption")))["prompt"] == "A animation clip in colour 0."
    custom = next(iter(EmoVidClips(ds, **SMALL, prompt="[{emotion}/{valence}] {caption}")))
    assert custom["prompt"] == "[amusement/positive] A animation clip in colour 0."
    for bad in ("emotion", "{caption} {mood}"):
        with pytest.raises(ValueError, match="prompt"):
            EmoVidClips(ds, **SMALL, prompt=bad)


@pytest.fixture(params=DECODERS)
def decoder(request) -> str:
    """Each frame decoder; torchcodec only where it and the FFmpeg libraries it loads are present."""
    if request.param == "torchcodec":
        request.getfixturevalue("torchcodec_decoding")
    return request.param


def test_resampling_follows_timestamps_and_short_clip_policies(tmp_path, decoder):
    ds = rows_dataset({"grey": grey_video(tmp_path / "grey.mp4")})  # 12 frames at 12 fps = 1.0 s
    long_enough = next(iter(EmoVidClips(ds, num_frames=9, fps=16, height=16, width=16, decode=decoder)))["video"]
    assert [source_frame(long_enough, i) for i in range(9)] == [i * 12 // 16 for i in range(9)]

    # 21 frames at 16 fps need 1.25 s: times 0 .. 15/16 s lie inside the clip, 16 frames.
    opts = dict(num_frames=21, fps=16, height=16, width=16, decode=decoder)
    looped = next(iter(EmoVidClips(ds, **opts, short_clips="loop")))["video"]
    assert [source_frame(looped, i) for i in range(21)] == [(i % 16) * 12 // 16 for i in range(21)]
    held = next(iter(EmoVidClips(ds, **opts, short_clips="hold")))["video"]
    assert [source_frame(held, i) for i in range(21)] == [min(i, 15) * 12 // 16 for i in range(21)]
    dropping = EmoVidClips(ds, **opts, short_clips="drop")
    assert list(dropping) == [] and dropping.dropped == 1 and dropping.skipped == 0


def test_random_window_is_seeded_per_epoch_and_clip(tmp_path, decoder):
    ds = rows_dataset({"grey": grey_video(tmp_path / "grey.mp4", frames=48, step=5)}).add_column("duration", [4.0])
    clips = EmoVidClips(ds, num_frames=5, fps=12, height=16, width=16, window="random", seed=3, decode=decoder)

    def starts() -> int:
        return source_frame(next(iter(clips))["video"], 0, step=5)

    first = starts()
    assert starts() == first  # same epoch, same window
    assert len({first} | {(clips.set_epoch(e), starts())[1] for e in range(1, 6)}) >= 4  # most epochs move it

    # and per clip: two copies of the same video under different ids get their own windows
    twins = rows_dataset({"a": grey_video(tmp_path / "a.mp4", frames=48, step=5),
                          "b": grey_video(tmp_path / "b.mp4", frames=48, step=5)}).add_column("duration", [4.0] * 2)
    both = EmoVidClips(twins, num_frames=5, fps=12, height=16, width=16, window="random", seed=3, decode=decoder)
    pairs = []
    for epoch in range(4):
        both.set_epoch(epoch)
        starts_of = {s["clip_id"]: source_frame(s["video"], 0, step=5) for s in both}
        pairs.append((starts_of["a"], starts_of["b"]))
    assert any(a != b for a, b in pairs)


def grey_video_over_noise(path: Path, frames: int, fps: int = 12, rate: int = 16000, step: int = 5) -> dict:
    """`grey_video`'s frames over seeded white noise, so any stretch of the sound is found at one place only;
    as an audio row value."""
    with Mp4Writer(path, width=16, height=16, fps=fps, audio_rate=rate, audio_layout="mono") as writer:
        for i in range(frames):
            writer.write_frame(np.full((16, 16, 3), 10 + step * i, dtype=np.uint8))
        writer.write_audio(np.random.default_rng(7).uniform(-0.5, 0.5, (1, frames * rate // fps)).astype(np.float32))
    return {"bytes": path.read_bytes(), "path": None}


def sound_start(wave: np.ndarray, piece: np.ndarray) -> int:
    """The one sample index of ``wave`` (1-D) at which ``piece`` (1-D) lies exactly."""
    head = np.lib.stride_tricks.sliding_window_view(wave, 16)
    starts = [int(s) for s in np.flatnonzero((head == piece[:16]).all(axis=1))
              if np.array_equal(wave[s:s + len(piece)], piece)]
    assert len(starts) == 1, starts
    return starts[0]


def test_audio_is_the_sound_under_a_random_window(tmp_path):
    media = grey_video_over_noise(tmp_path / "noise.mp4", frames=48)  # 4 s
    ds = datasets.Dataset.from_list([{"clip_id": "n", "source": "movie", "emotion": "fear", "caption": "",
                                      "duration": 4.0, "video": media, "audio": media}])
    clips = EmoVidClips(ds, num_frames=5, fps=12, height=16, width=16, window="random", seed=3, with_audio=True)
    wave = decode_audio(media, sample_rate=16000, channels=1)[0]
    starts = []
    for epoch in range(3):
        clips.set_epoch(epoch)
        sample = next(iter(clips))
        first = source_frame(sample["video"], 0, step=5)  # the window's first source frame, shown from first/12 s
        assert first > 0
        audio = sample["audio"][0].numpy()
        assert len(audio) == round(5 * 16000 / 12)
        start = sound_start(wave, audio) / 16000
        assert first / 12 <= start < (first + 1) / 12  # the sound starts under the window's first frame
        starts.append(first)
    assert len(set(starts)) > 1


def test_audio_loops_with_a_looped_short_clip(tmp_path):
    media = grey_video_over_noise(tmp_path / "short.mp4", frames=12)  # 1 s
    ds = datasets.Dataset.from_list([{"clip_id": "s", "source": "movie", "emotion": "fear", "caption": "",
                                      "video": media, "audio": media}])
    sample = next(iter(EmoVidClips(ds, num_frames=21, fps=16, height=16, width=16, with_audio=True)))
    # 16 frames of 21 at 16 fps lie inside the clip, then the video starts again: the sound repeats every 1 s.
    assert [source_frame(sample["video"], i, step=5) for i in range(21)] == [(i % 16) * 12 // 16 for i in range(21)]
    wave = decode_audio(media, sample_rate=16000, channels=1)[0]
    assert len(wave) >= 16000
    expected = wave[np.arange(round(21 * 16000 / 16)) % 16000]
    assert np.array_equal(sample["audio"][0].numpy(), expected)


def test_resize_plans():
    crop = plan_resize(48, 64, 32, 32)
    assert (crop.scaled_height, crop.scaled_width, crop.top, crop.left) == (32, 43, 0, 5)
    pad = plan_resize(48, 64, 32, 32, pad=True)
    assert (pad.scaled_height, pad.scaled_width, pad.top, pad.left) == (24, 32, 4, 0)
    buckets = [(480, 832), (832, 480), (624, 624)]
    assert nearest_bucket(480, 854, buckets) == (480, 832)
    assert nearest_bucket(1920, 1080, buckets) == (832, 480)
    assert nearest_bucket(150, 200, buckets) == (480, 832)  # 4:3 is nearer 1.73:1 than 1:1 in log ratio
    assert nearest_bucket(150, 160, buckets) == (624, 624)


def test_crop_and_pad(dataset_dir):
    ds = stream(dataset_dir).take(1)  # 64x48 clip
    cropped = next(iter(EmoVidClips(ds, **SMALL, resize="crop")))["video"]
    padded = next(iter(EmoVidClips(ds, **SMALL, resize="pad")))["video"]
    assert cropped.shape == padded.shape == (3, 9, 32, 32)
    assert (cropped > -0.9).all()  # covered: no border
    assert (padded[:, :, :4] == -1).all() and (padded[:, :, -4:] == -1).all()  # 32x24 letterboxed in black
    assert torch.allclose(padded[:, :, 4:-4], cropped[:, :, 4:-4], atol=0.05)


def test_buckets_and_equal_shape_batches(tmp_path):
    sizes = {"wide-0": (64, 32), "tall-0": (32, 64), "square-0": (48, 48), "wide-1": (80, 40), "tall-1": (30, 62)}
    ds = rows_dataset({name: grey_video(tmp_path / f"{name}.mp4", frames=8, size=size) for name, size in sizes.items()})
    buckets = [(16, 32), (32, 16), (24, 24)]
    clips = EmoVidClips(ds, num_frames=5, resize="bucket", buckets=buckets)
    shapes = {s["clip_id"]: tuple(s["video"].shape[2:]) for s in clips}
    assert shapes == {"wide-0": (16, 32), "wide-1": (16, 32), "tall-0": (32, 16), "tall-1": (32, 16),
                      "square-0": (24, 24)}
    batches = list(BucketBatcher(clips, 2))
    assert sorted(len(b["clip_id"]) for b in batches) == [1, 2, 2]
    assert sorted(i for b in batches for i in b["clip_id"]) == sorted(sizes)
    for batch in batches:
        assert {shapes[i] for i in batch["clip_id"]} == {tuple(batch["video"].shape[3:])}
    assert [len(b["clip_id"]) for b in BucketBatcher(clips, 2, drop_last=True)] == [2, 2]
    in_workers = DataLoader(BucketBatcher(EmoVidClips(ds, num_frames=5, resize="bucket", buckets=buckets, num_shards=2),
                                          2), batch_size=None, num_workers=2)
    worker_batches = list(in_workers)
    assert sorted(i for b in worker_batches for i in b["clip_id"]) == sorted(sizes)
    assert all(len({shapes[i] for i in b["clip_id"]}) == 1 for b in worker_batches)
    with pytest.raises(ValueError, match="different shapes"):
        collate_clips(list(clips)[:3])


def test_default_buckets_come_from_height_and_width(tmp_path):
    clips = EmoVidClips(rows_dataset({"x": b""}), resize="bucket")
    assert clips.buckets == [(480, 832), (832, 480), (624, 624)]


def test_one_bucket_rule_for_size_and_length():
    rule = BucketRule.default(480, 832, 81, 16)
    assert rule.sizes == ((480, 832), (832, 480), (624, 624)) and rule.frame_counts == (13, 29, 45, 61, 81)
    assert rule.bucket_for(1080, 1920, 30.0, 16) == Bucket(81, 480, 832)
    assert rule.bucket_for(498, 498, 2.0, 16) == Bucket(29, 624, 624)  # 32 frames: 33 would loop one
    assert rule.bucket_for(480, 640, 5.0, 16) == Bucket(61, 480, 832)  # 80 frames: 81 would loop one
    assert rule.bucket_for(720, 405, 0.5, 16) == Bucket(13, 832, 480)  # shorter than all: the shortest, looped
    assert BucketRule(((16, 16),), (17, 5, 9, 5)).frame_counts == (5, 9, 17)
    with pytest.raises(ValueError, match="4k\\+1"):
        BucketRule(((16, 16),), (8,))
    clips = EmoVidClips(rows_dataset({"x": b""}), num_frames=5, resize="bucket", buckets=[(16, 32), (32, 16)])
    assert clips.bucket_rule == BucketRule(((16, 32), (32, 16)), (5,))  # the adapter's buckets follow the same rule


@pytest.mark.parametrize("frames, fps", [(12, 12), (7, 12), (13, 10), (45, 30)])
def test_bucket_frames_count_what_resampling_takes_before_the_clip_ends(tmp_path, frames, fps):
    media = grey_video(tmp_path / "clip.mp4", frames=frames, fps=fps, size=(16, 16), step=4)
    taken = decode_window(media, target_times(200, 16), lambda h, w: plan_resize(h, w, h, w))
    assert frames_within(probe(media).duration, 16) == len(taken.frames)


@pytest.mark.parametrize("map_style", [False, True])
def test_workers_read_distinct_shards_without_gaps(dataset_dir, all_ids, map_style):
    ds = load_emovid(str(dataset_dir), split="train", streaming=not map_style, decode_media=False)
    clips = EmoVidClips(ds, **SMALL, num_shards=4 if map_style else None)
    assert clips.num_shards == (4 if map_style else 12)  # streamed: the files of every source
    loader = DataLoader(clips, batch_size=3, num_workers=2)
    seen = [clip_id for batch in loader for clip_id in batch["clip_id"]]
    assert sorted(seen) == all_ids  # every clip exactly once


@pytest.mark.parametrize("map_style", [False, True])
def test_split_by_node_covers_the_dataset_disjointly(dataset_dir, all_ids, map_style):
    ds = load_emovid(str(dataset_dir), split="train", streaming=not map_style, decode_media=False)
    parts = [[s["clip_id"] for s in EmoVidClips(ds, **SMALL, rank=r, world_size=2)] for r in range(2)]
    assert parts[0] and parts[1] and not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == all_ids


def test_node_rank_from_environment(dataset_dir, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    clips = EmoVidClips(stream(dataset_dir), **SMALL)
    assert (clips.rank, clips.world_size) == (1, 2) and clips.num_shards == 6  # half of the 12 files
    with pytest.raises(ValueError, match="rank"):
        EmoVidClips(stream(dataset_dir), **SMALL, rank=2, world_size=2)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_epoch_with_stateful_dataloader(dataset_dir, all_ids, num_workers):
    def loader() -> StatefulDataLoader:
        return StatefulDataLoader(EmoVidClips(stream(dataset_dir), **SMALL), batch_size=2, num_workers=num_workers)

    first = loader()
    before = []
    for k, batch in enumerate(first, start=1):
        before += batch["clip_id"]
        if k == 3:
            break
    state = first.state_dict()
    del first
    resumed = loader()
    resumed.load_state_dict(state)
    after = [clip_id for batch in resumed for clip_id in batch["clip_id"]]
    assert len(before) == 6
    assert not set(before) & set(after)  # nothing seen twice
    assert sorted(before + after) == all_ids  # nothing skipped


def test_undecodable_row_is_skipped_with_a_warning(tmp_path, caplog):
    good = grey_video(tmp_path / "good.mp4")
    ds = rows_dataset({"good-1": good, "broken": b"\x00not a video" * 50, "good-2": good})
    clips = EmoVidClips(ds, num_frames=5, height=16, width=16)
    with caplog.at_level(logging.WARNING, logger="emovid.torch"):
        assert [s["clip_id"] for s in clips] == ["good-1", "good-2"]
    assert clips.skipped == 1
    assert any("broken" in r.getMessage() for r in caplog.records)


def test_torchcodec_decoding_matches_pyav_on_a_built_dataset(dataset_dir, torchcodec_decoding):
    """`datasets`' own Video decoding (torchcodec) gives the same clips as PyAV up to resampling filters."""
    opts = dict(**SMALL, with_audio=True)
    pyav = {s["clip_id"]: s for s in EmoVidClips(stream(dataset_dir), **opts)}
    decoded = load_emovid(str(dataset_dir), split="train", streaming=True)  # video/audio as torchcodec decoders
    codec = {s["clip_id"]: s for s in EmoVidClips(decoded, **opts, decode="torchcodec")}
    assert sorted(codec) == sorted(pyav) and len(codec) == 24
    for clip_id, sample in codec.items():
        assert sample["video"].shape == pyav[clip_id]["video"].shape
        assert (sample["video"] - pyav[clip_id]["video"]).abs().max() < 4 / 127.5  # swscale vs torchvision resize
        assert torch.equal(sample["audio"], pyav[clip_id]["audio"])  # sound is always decoded with PyAV


def test_torchcodec_skips_an_undecodable_row(tmp_path, torchcodec_decoding, caplog):
    ds = rows_dataset({"good": grey_video(tmp_path / "good.mp4"), "broken": b"\x00not a video" * 50})
    clips = EmoVidClips(ds, num_frames=5, height=16, width=16, decode="torchcodec")
    with caplog.at_level(logging.WARNING, logger="emovid.torch"):
        assert [s["clip_id"] for s in clips] == ["good"]
    assert clips.skipped == 1 and any("broken" in r.getMessage() for r in caplog.records)


def test_torchcodec_path_explains_its_requirements(dataset_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # as if torchcodec or FFmpeg were missing
    with pytest.raises(ImportError, match="FFmpeg") as info:
        EmoVidClips(stream(dataset_dir), decode="torchcodec")
    assert "pip install torchcodec" in str(info.value) and "decode='pyav'" in str(info.value)


def test_big_buck_bunny_at_16_fps_takes_frames_by_timestamp(shared_media):
    film = (shared_media / "big_buck_bunny_480p_30s.mp4").read_bytes()  # 24 fps
    clips = EmoVidClips(rows_dataset({"bbb": film}), num_frames=81, fps=16, height=48, width=80)
    video = next(iter(clips))["video"]
    assert video.shape == (3, 81, 48, 80)
    brightness = video.mean((0, 2, 3))
    assert brightness[32] > brightness[8] > brightness[0]  # the fade-in over source frames 0-48

    # A 5 s window at 10 s (seeking), covering the hard cut at source frame 285.
    plan = lambda h, w: plan_resize(h, w, 48, 80)  # noqa: E731
    window = decode_window(film, target_times(81, 16, offset=10.0), plan, seek=True)
    assert [round(t * 24) for t in window.times] == [240 + i * 24 // 16 for i in range(81)]
    frames = np.stack(window.frames).astype(np.float32)
    step = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    cut = (285 - 240) * 16 // 24  # output frame 30 is source frame 285, the first of the new shot
    assert int(np.argmax(step)) + 1 == cut
    # Decoding stopped right after the last needed frame (360) instead of running to the end (720).
    assert window.decoded < 720 - 240


def test_real_short_clip_and_a_container_without_duration(shared_media):
    ds = rows_dataset({name: (shared_media / name).read_bytes() for name in ("realshort.mp4", "test.webm")})
    samples = {s["clip_id"]: s["video"] for s in EmoVidClips(ds, num_frames=81, fps=16, height=24, width=32)}
    short = samples["realshort.mp4"]  # 1.2 s at ~30 fps: 20 frames at 16 fps, then looped
    assert torch.equal(short[:, 20], short[:, 0]) and not torch.equal(short[:, 19], short[:, 0])
    # 94 frames, the last at 3.104 s shown for 33 ms, no duration in the container: 51 frames (t <= 3.125 s) then looped
    webm = samples["test.webm"]
    assert torch.equal(webm[:, 51], webm[:, 0]) and not torch.equal(webm[:, 50], webm[:, 0])


def test_set_epoch_reshuffles_persistent_workers(dataset_dir, all_ids):
    """The README's loop: a shuffled stream, 2 persistent workers, set_epoch before each epoch."""
    rows = stream(dataset_dir).shuffle(seed=0, buffer_size=8)
    clips = EmoVidClips(rows, num_frames=1, height=16, width=16)
    loader = DataLoader(clips, batch_size=None, num_workers=2, persistent_workers=True)
    orders = []
    for epoch in range(2):
        clips.set_epoch(epoch)
        orders.append([sample["clip_id"] for sample in loader])
    assert all(sorted(order) == all_ids for order in orders)  # every clip once per epoch
    assert orders[0] != orders[1]  # a new shard order and shuffle buffer each epoch


TORCHRUN_SCRIPT = """
import json, os, sys
import torch.distributed as dist
from emovid_datasets.loading import load_emovid
from emovid_datasets.media import Mp4Writer, decode_audio
from emovid_datasets.torch import EmoVidClips

dist.init_process_group("gloo")  # what a training script does before building its data
del os.environ["RANK"], os.environ["WORLD_SIZE"]  # so only torch.distributed can tell the adapter
rows = load_emovid(sys.argv[1], split="train", streaming=True, decode_media=False)
clips = EmoVidClips(rows, num_frames=1, height=16, width=16)  # rank and world size from torch.distributed
ids = [s["clip_id"] for s in clips]
gathered = [None] * dist.get_world_size()
dist.all_gather_object(gathered, {"rank": clips.rank, "world": clips.world_size, "ids": ids})
if dist.get_rank() == 0:
    print(json.dumps(gathered))
dist.destroy_process_group()
"""


def test_ranks_from_torch_distributed_read_disjoint_rows(dataset_dir, all_ids, tmp_path):
    import json
    import os
    import subprocess

    from ports import free_port

    script = tmp_path / "ranks.py"
    script.write_text(TORCHRUN_SCRIPT)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(free_port()), str(script), str(dataset_dir)],
                          env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    parts = json.loads(done.stdout.strip().splitlines()[-1])
    assert [(p["rank"], p["world"]) for p in parts] == [(0, 2), (1, 2)]
    assert parts[0]["ids"] and parts[1]["ids"] and not set(parts[0]["ids"]) & set(parts[1]["ids"])
    assert sorted(parts[0]["ids"] + parts[1]["ids"]) == all_ids
