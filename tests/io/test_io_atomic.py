"""Atomic writes: the target is either the old content or the complete new one; no temp files survive errors."""

import os
import subprocess
import sys

import pytest

from neural_render.io.atomic import atomic_dir, atomic_path


class Boom(Exception):
    pass


def test_atomic_path_keeps_suffix_and_replaces(tmp_path):
    target = tmp_path / "sub" / "deeper" / "frame.exr"
    with atomic_path(target) as tmp:
        assert isinstance(tmp, str)
        assert os.path.dirname(tmp) == str(target.parent)      # same folder -> os.replace is atomic
        assert tmp.endswith(".exr") and tmp != str(target)     # suffix kept for format inference
        assert not target.exists()
        with open(tmp, "wb") as fh:
            fh.write(b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["frame.exr"]


def test_atomic_path_failure_keeps_old_target_and_removes_temp(tmp_path):
    target = tmp_path / "data.bin"
    target.write_bytes(b"old content")
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"half-writ")                            # partial write, then a crash
            raise Boom()
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["data.bin"]


def test_atomic_path_failure_without_old_target_leaves_nothing(tmp_path):
    target = tmp_path / "new.png"
    with pytest.raises(Boom):
        with atomic_path(target) as tmp:
            open(tmp, "wb").close()
            raise Boom()
    assert os.listdir(tmp_path) == []


def test_atomic_path_block_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "x.txt"):
            pass
    assert os.listdir(tmp_path) == []


def test_atomic_dir_creates_and_replaces(tmp_path):
    target = tmp_path / "clip"
    with atomic_dir(target) as tmp:
        assert os.path.isdir(tmp) and os.listdir(tmp) == []
        assert os.path.dirname(tmp) == str(tmp_path)
        (open(os.path.join(tmp, "a.txt"), "w")).write("first")
    assert (target / "a.txt").read_text() == "first"
    with atomic_dir(target) as tmp:
        (open(os.path.join(tmp, "b.txt"), "w")).write("second")
        assert (target / "a.txt").exists()                     # old content visible until the swap
    assert sorted(os.listdir(target)) == ["b.txt"]
    assert os.listdir(tmp_path) == ["clip"]                     # no temp or old folder left


def test_atomic_dir_failure_keeps_old_folder(tmp_path):
    target = tmp_path / "clip"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(Boom):
        with atomic_dir(target) as tmp:
            (open(os.path.join(tmp, "partial.txt"), "w")).write("half")
            raise Boom()
    assert sorted(os.listdir(target)) == ["keep.txt"]
    assert os.listdir(tmp_path) == ["clip"]


def test_importing_the_io_package_is_cheap():
    code = ("import sys, neural_render.io as io; "
            "heavy = [m for m in ('torch', 'OpenEXR', 'cv2', 'imageio', 'imageio_ffmpeg') if m in sys.modules]; "
            "assert not heavy, heavy; assert callable(io.atomic_path) and 'read_clip' in dir(io)")
    subprocess.run([sys.executable, "-c", code], check=True)
