"""Atomic writes: a failed write leaves the old file as it was and no temporary file beside it."""

import pytest

from emovid_datasets.atomic import TMP_MARK, atomic_path, atomic_write_text, remove_leftovers


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the new")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_a_rename_that_fails_leaves_no_temporary(tmp_path):
    target = tmp_path / "clips"
    (target / "inside").mkdir(parents=True)  # a non-empty folder: nothing can be renamed onto it
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips"] and (target / "inside").is_dir()


def test_a_successful_write_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "sub" / "stage.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second" and [p.name for p in target.parent.iterdir()] == ["stage.json"]


def test_leftovers_of_a_killed_write_are_removed(tmp_path):
    (tmp_path / "a").mkdir()
    leftover = tmp_path / "a" / f".clip.mp4{TMP_MARK}1a2b3c4d.mp4"
    leftover.write_bytes(b"partial")
    (tmp_path / "a" / "clip.mp4").write_bytes(b"whole")
    assert remove_leftovers(tmp_path) == 1
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["clip.mp4"]
