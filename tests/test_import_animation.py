"""import-animation: a folder of clips + optional metadata -> MP4s and a manifest, resumable, corrupt files rejected."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest
from factory import make_gif, make_video

from builder_scripts.engine.manifest import read_manifest, read_rejects
from builder_scripts.sources import import_animation
from builder_scripts.sources.import_animation import assign_clip_ids, run_import
from emovid_datasets.media import probe


def make_collection(root: Path) -> Path:
    """a/face01.gif, b/face01.mp4 (clashing stem), b/face02.mp4 with sound, broken.mp4, and a non-media file."""
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    make_gif(root / "a" / "face01.gif", frames=6)
    make_video(root / "b" / "face01.mp4", frames=12, audio=False)
    make_video(root / "b" / "face02.mp4", frames=24, fps=12, audio=True)
    (root / "broken.mp4").write_bytes(b"not a video at all" * 64)
    (root / "notes.txt").write_text("ignored")
    return root


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    import_animation.add_command(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_imports_folder_with_metadata_rejects_corrupt_and_resumes(tmp_path):
    src = make_collection(tmp_path / "src")
    meta = write_csv(tmp_path / "meta.csv", [
        {"file_name": "face02.mp4", "caption": "A cartoon girl laughs.", "emotion": "Amusement",
         "url": "https://example.org/magicanime/face02", "human_votes": "['amusement', 'amusement', 'none']",
         "speaker": "ignored column", "duration": "99"},
        {"file_name": "a/face01.gif", "caption": "A cartoon fox frowns.", "emotion": "", "url": "",
         "human_votes": "", "speaker": "", "duration": ""},
        {"file_name": "never-there.mp4", "caption": "x", "emotion": "", "url": "", "human_votes": "",
         "speaker": "", "duration": ""},
    ])
    out = tmp_path / "out"

    assert run_command(["import-animation", "--src", str(src), "--out", str(out), "--metadata", str(meta)]) == 0

    rows = {r["source_file"]: r for r in read_manifest(out)}
    assert set(rows) == {"a/face01.gif", "b/face01.mp4", "b/face02.mp4"}
    face02 = rows["b/face02.mp4"]
    assert face02["clip_id"] == "animation-face02" and face02["source"] == "animation"
    assert face02["origin"] == "https://example.org/magicanime/face02"
    assert face02["caption"] == "A cartoon girl laughs." and face02["emotion"] == "amusement"
    assert face02["human_votes"] == ["amusement", "amusement", "none"]
    assert "speaker" not in face02 and face02.get("duration") is None  # extra and measured columns not carried
    info = probe(face02["video_path"])
    assert info.video_codec == "h264" and info.has_audio and info.num_frames == 24

    gif, mp4 = rows["a/face01.gif"], rows["b/face01.mp4"]
    assert gif["clip_id"] != mp4["clip_id"] and gif["clip_id"].startswith("animation-face01-")
    assert gif["origin"] == "animation:a/face01.gif" and mp4["origin"] == "animation:b/face01.mp4"
    assert gif["caption"] == "A cartoon fox frowns." and gif["emotion"] is None
    assert probe(gif["video_path"]).video_codec == "h264" and not probe(gif["video_path"]).has_audio
    assert all(str(tmp_path) not in r["origin"] for r in rows.values())

    (bad,) = read_rejects(out)
    assert bad["clip_id"] == "animation-broken" and bad["origin"] == "animation:broken.mp4"
    assert "broken.mp4" in bad["reason"] and bad["stage"] == "import-animation"

    ids_before = sorted(r["clip_id"] for r in rows.values())
    summary = run_import(src, out, metadata=meta, progress=False)
    assert (summary.done, summary.skipped) == (0, 4)
    assert sorted(r["clip_id"] for r in read_manifest(out)) == ids_before and len(read_rejects(out)) == 1


def test_clashing_stems_get_stable_distinct_ids():
    paths = [Path("x/clip.mp4"), Path("y/clip.mp4"), Path("clip one.gif"), Path("solo.webm")]
    ids = assign_clip_ids(paths, "sticker")
    assert ids == assign_clip_ids(list(reversed(paths)), "sticker")  # independent of listing order
    assert len(set(ids.values())) == 4
    assert ids[Path("solo.webm")] == "sticker-solo" and ids[Path("clip one.gif")] == "sticker-clip_one"
    assert ids[Path("x/clip.mp4")].startswith("sticker-clip-")


def test_json_metadata_keyed_by_stem_and_bad_values_rejected(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_video(src / "happy.mp4", frames=6, audio=False)
    make_video(src / "odd.mp4", frames=6, audio=False)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({
        "happy": {"caption": "Joyful sticker.", "emotion": "excitement", "origin": "tenor:123", "split": "benchmark"},
        "odd": {"emotion": "happiness"},
    }))
    out = tmp_path / "out"

    assert run_command(["import-animation", "--src", str(src), "--out", str(out), "--metadata", str(meta),
                        "--source", "sticker"]) == 0

    (row,) = read_manifest(out)
    assert (row["clip_id"], row["source"], row["origin"]) == ("sticker-happy", "sticker", "tenor:123")
    assert (row["emotion"], row["split"], row["caption"]) == ("excitement", "benchmark", "Joyful sticker.")
    (bad,) = read_rejects(out)
    assert bad["clip_id"] == "sticker-odd" and "emotion 'happiness'" in bad["reason"] and "odd.mp4" in bad["reason"]


def test_local_path_origin_is_never_recorded_and_bad_inputs_are_clear(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_video(src / "c1.mp4", frames=6, audio=False)
    meta = tmp_path / "meta.jsonl"
    meta.write_text(json.dumps({"stem": "c1", "origin": str(src / "c1.mp4")}) + "\n")
    run_import(src, tmp_path / "out", metadata=meta, progress=False)
    assert read_manifest(tmp_path / "out")[0]["origin"] == "animation:c1.mp4"

    with pytest.raises(FileNotFoundError, match="not a folder"):
        run_import(tmp_path / "nope", tmp_path / "out2", progress=False)
    bad_meta = tmp_path / "meta.csv"
    bad_meta.write_text("caption,emotion\nhello,awe\n")
    with pytest.raises(ValueError, match="no column naming the file"):
        run_import(src, tmp_path / "out3", metadata=bad_meta, progress=False)
    broken = tmp_path / "meta2.jsonl"
    broken.write_text(json.dumps({"stem": "c1"}) + "\n" + '{"stem": "c2", caption: oops}\n')
    with pytest.raises(ValueError, match=r"meta2\.jsonl line 2: not valid JSON"):
        run_import(src, tmp_path / "out4", metadata=broken, progress=False)
    whole = tmp_path / "meta3.json"
    whole.write_text('{\n  "c1": {"caption": "x"},\n  "c2": \n}')
    with pytest.raises(ValueError, match=r"meta3\.json line 4: not valid JSON"):
        run_import(src, tmp_path / "out5", metadata=whole, progress=False)


def test_static_media_is_rejected_as_the_crawl_rejects_it(tmp_path):
    from PIL import Image

    src = tmp_path / "src"
    src.mkdir()
    make_gif(src / "still.gif", frames=1)
    Image.new("RGB", (32, 24), (10, 200, 30)).save(src / "png-in-disguise.gif", format="PNG")
    make_gif(src / "moving.gif", frames=6)
    out = tmp_path / "out"
    run_import(src, out, source="sticker", progress=False)
    assert [r["clip_id"] for r in read_manifest(out)] == ["sticker-moving"]
    reasons = {r["clip_id"]: r["reason"] for r in read_rejects(out)}
    assert set(reasons) == {"sticker-still", "sticker-png-in-disguise"}
    assert all("is static (a single frame)" in why for why in reasons.values())
    assert sorted(p.name for p in (out / "clips").iterdir()) == ["sticker-moving.mp4"]  # no still left behind


def test_anamorphic_and_rotated_files_are_imported_as_shown(tmp_path):
    from fractions import Fraction

    from factory import make_pyav_video

    src = tmp_path / "src"
    src.mkdir()
    make_pyav_video(src / "dvd.mp4", size=(352, 288), frames=4, sar=Fraction(16, 11))  # 4:3 PAL, 512x288 shown
    make_pyav_video(src / "phone.mp4", size=(64, 48), frames=4, rotation=-90)
    run_import(src, tmp_path / "out", progress=False)
    sizes = {r["source_file"]: (probe(r["video_path"]).width, probe(r["video_path"]).height)
             for r in read_manifest(tmp_path / "out")}
    assert sizes == {"dvd.mp4": (512, 288), "phone.mp4": (48, 64)}


def test_cut_off_files_keep_what_decodes_and_the_manifest_says_so(tmp_path):
    """An interrupted download keeps only its decodable part, marked ``truncated`` with both lengths; one that
    keeps less than two frames is rejected, the reason naming the file and the truncation."""
    import av
    from factory import cut_off, make_pyav_video, noise_frames

    src, work = tmp_path / "src", tmp_path / "work"
    src.mkdir()
    work.mkdir()
    whole = make_pyav_video(work / "whole.mp4", frames=300, fps=10, faststart=True, audio_rate=16000,
                            color=noise_frames())
    (src / "whole.mp4").write_bytes(whole.read_bytes())
    cut_off(src / "part.mp4", whole, 0.4)
    gif = make_gif(work / "face.gif", frames=40, size=(96, 96), colors=[(i * 6, 255 - i * 6, 90) for i in range(40)])
    cut_off(src / "face.gif", gif, 0.5)
    stub = make_pyav_video(work / "stub.mp4", frames=40, fps=10, faststart=True, color=noise_frames(seed=1))
    with av.open(str(stub)) as c:  # keep the index, the first frame and half the second
        first, second = [p for p in c.demux(video=0)][:2]
    cut_off(src / "stub.mp4", stub, (second.pos + second.size // 2) / stub.stat().st_size)
    out = tmp_path / "out"

    run_import(src, out, progress=False)

    rows = {r["source_file"]: r for r in read_manifest(out)}
    assert set(rows) == {"whole.mp4", "part.mp4", "face.gif"}
    assert rows["whole.mp4"]["truncated"] is False and rows["whole.mp4"]["header_duration"] == pytest.approx(30)
    part = rows["part.mp4"]
    info = probe(part["video_path"])
    assert part["truncated"] is True and part["header_duration"] == pytest.approx(30)
    assert 5 < part["decoded_duration"] < 15 and info.duration == pytest.approx(part["decoded_duration"], abs=0.01)
    face = rows["face.gif"]
    assert face["truncated"] is True and 0 < face["decoded_duration"] < 4
    (bad,) = read_rejects(out)
    assert bad["clip_id"] == "animation-stub" and "stub.mp4" in bad["reason"] and "cut off" in bad["reason"]
    assert sorted(p.name for p in (out / "clips").iterdir()) == sorted(f"{r['clip_id']}.mp4" for r in rows.values())
