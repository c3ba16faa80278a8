"""OpenEXR round trips (bit-exact float32, incl. strided inputs) and damaged files -> NeuralRenderError."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neural_render.errors import NeuralRenderError
from neural_render.io.exr import GBUFFER_CHANNELS, read_exr, read_frame_exr, write_exr, write_frame_exr


def _random_channels(seed, h=8, w=12):
    rng = np.random.default_rng(seed)
    return {name: (rng.standard_normal((h, w)) * 10.0 ** rng.integers(-3, 4)).astype(np.float32)
            for name in ("R", "G", "B", "depth.Z")}


@pytest.mark.parametrize("compression", ["zip", "none", "piz", "zstd"])
def test_round_trip_is_bitwise(tmp_path, compression):
    channels = _random_channels(0)
    channels["R"][0, 0] = np.float32(3.4e38)        # extremes survive
    channels["G"][1, 1] = np.float32(1e-42)         # float32 denormal
    path = tmp_path / "a.exr"
    write_exr(path, channels, compression=compression)
    back = read_exr(path)
    assert sorted(back) == sorted(channels)
    for name, x in channels.items():
        assert back[name].dtype == np.float32 and back[name].shape == (8, 12)
        assert back[name].tobytes() == x.tobytes(), name


def test_non_contiguous_slices_are_written_correctly(tmp_path):
    rng = np.random.default_rng(1)
    hwc = rng.random((8, 12, 3), dtype=np.float32)  # channels as strided views image[..., i]
    views = {c: hwc[..., i] for i, c in enumerate("RGB")}
    assert not views["R"].flags["C_CONTIGUOUS"]
    write_exr(tmp_path / "s.exr", views)
    back = read_exr(tmp_path / "s.exr")
    for i, c in enumerate("RGB"):
        np.testing.assert_array_equal(back[c], hwc[..., i])
    flipped = hwc[::-1, ::2, 0]                     # negative and >1 strides too
    write_exr(tmp_path / "f.exr", {"Y": flipped})
    np.testing.assert_array_equal(read_exr(tmp_path / "f.exr")["Y"], flipped)


def test_half_storage_rounds_to_float16(tmp_path):
    x = np.linspace(-2, 2, 96, dtype=np.float32).reshape(8, 12) / 3
    write_exr(tmp_path / "h.exr", {"Y": x}, half=True)
    back = read_exr(tmp_path / "h.exr")["Y"]
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, x.astype(np.float16).astype(np.float32))
    assert not np.array_equal(back, x)              # really stored as half


def test_write_rejects_bad_channels(tmp_path):
    with pytest.raises(NeuralRenderError, match="non-empty dict"):
        write_exr(tmp_path / "a.exr", {})
    with pytest.raises(NeuralRenderError, match=r"\(H, W\)"):
        write_exr(tmp_path / "a.exr", {"R": np.zeros((2, 3, 4), np.float32)})
    with pytest.raises(NeuralRenderError, match="others are"):
        write_exr(tmp_path / "a.exr", {"R": np.zeros((2, 3), np.float32), "G": np.zeros((3, 2), np.float32)})
    with pytest.raises(NeuralRenderError, match="compression"):
        write_exr(tmp_path / "a.exr", {"R": np.zeros((2, 3), np.float32)}, compression="lzma")
    assert list(tmp_path.iterdir()) == []


def _assert_bad(path, match=None):
    with pytest.raises(NeuralRenderError, match=match) as info:
        read_exr(path)
    assert info.value.path == str(path)


def test_truncated_exr_is_rejected(tmp_path):
    good = tmp_path / "good.exr"
    write_exr(good, _random_channels(2))
    data = good.read_bytes()
    for cut in (len(data) - 1, len(data) * 3 // 4, len(data) // 2, 300, 50, 4):
        bad = tmp_path / f"cut{cut}.exr"
        bad.write_bytes(data[:cut])
        _assert_bad(bad)


def test_random_bytes_missing_and_empty_files_are_rejected(tmp_path):
    junk = tmp_path / "junk.exr"
    junk.write_bytes(np.random.default_rng(3).bytes(2000))
    _assert_bad(junk, "not an OpenEXR")
    fake_magic = tmp_path / "fake.exr"
    fake_magic.write_bytes(b"\x76\x2f\x31\x01" + np.random.default_rng(4).bytes(500))  # right magic, junk after
    _assert_bad(fake_magic)
    empty = tmp_path / "empty.exr"
    empty.write_bytes(b"")
    _assert_bad(empty, "empty")
    _assert_bad(tmp_path / "missing.exr", "no such")


def test_frame_exr_round_trip_every_pass(tmp_path):
    rng = np.random.default_rng(5)
    passes = {name: rng.random((len(sfx), 8, 12), dtype=np.float32) for name, sfx in GBUFFER_CHANNELS.items()}
    passes["rgb"] *= 50.0                                         # HDR
    write_frame_exr(tmp_path / "f.exr", passes)
    names = set(read_exr(tmp_path / "f.exr"))
    assert "normal.X" in names and "depth.Z" in names and "mask.Y" in names and "rgb.R" in names
    back = read_frame_exr(tmp_path / "f.exr")
    assert list(back) == list(GBUFFER_CHANNELS)
    for name, x in passes.items():
        assert back[name].shape == x.shape and back[name].tobytes() == x.tobytes(), name
    subset = read_frame_exr(tmp_path / "f.exr", passes=["depth", "normal"])
    assert list(subset) == ["depth", "normal"]


def test_frame_exr_errors(tmp_path):
    with pytest.raises(NeuralRenderError, match="unknown frame pass"):
        write_frame_exr(tmp_path / "a.exr", {"albedo": np.zeros((3, 2, 2), np.float32)})
    with pytest.raises(NeuralRenderError, match=r"\(3, H, W\)"):
        write_frame_exr(tmp_path / "a.exr", {"normal": np.zeros((1, 2, 2), np.float32)})
    write_exr(tmp_path / "partial.exr", {"normal.X": np.zeros((2, 2)), "normal.Y": np.zeros((2, 2)),
                                         "depth.Z": np.ones((2, 2))})
    with pytest.raises(NeuralRenderError, match="missing channels normal.Z") as info:
        read_frame_exr(tmp_path / "partial.exr")
    assert info.value.path == str(tmp_path / "partial.exr")
    np.testing.assert_array_equal(read_frame_exr(tmp_path / "partial.exr", passes=["depth"])["depth"],
                                  np.ones((1, 2, 2), np.float32))
    with pytest.raises(NeuralRenderError, match="not in the file"):
        read_frame_exr(tmp_path / "partial.exr", passes=["mask"])
    write_exr(tmp_path / "plain.exr", {"R": np.zeros((2, 2))})
    with pytest.raises(NeuralRenderError, match="no neural_render frame passes"):
        read_frame_exr(tmp_path / "plain.exr")


@settings(max_examples=15, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 2**31 - 1),
       transpose=st.booleans())
def test_hypothesis_round_trip_any_size_and_layout(tmp_path_factory, h, w, seed, transpose):
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, size=(w, h) if transpose else (h, w), dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = np.where(np.isfinite(x), x, np.float32(1.5))               # any finite float32 bit pattern
    x = x.T if transpose else x                                    # transposed = Fortran-ordered view
    path = tmp_path_factory.mktemp("hyp") / "x.exr"
    write_exr(path, {"Y": x})
    assert read_exr(path)["Y"].tobytes() == np.ascontiguousarray(x).tobytes()
