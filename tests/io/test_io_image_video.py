"""8-bit images and MP4 video: exact lossless round trips, lossy padding, bad files -> NeuralRenderError."""

import numpy as np
import pytest

from neural_render.errors import NeuralRenderError
from neural_render.io.image import read_image, write_image
from neural_render.io.video import read_video, write_video


def _frames(t=3, h=8, w=12, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_png_round_trip_and_layouts(tmp_path):
    image = _frames(1)[0]
    write_image(tmp_path / "a.png", image)
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), image)
    gray = image[..., 0]
    write_image(tmp_path / "g.png", gray)
    back = read_image(tmp_path / "g.png")
    assert back.shape == (8, 12, 3) and all(np.array_equal(back[..., c], gray) for c in range(3))
    import imageio.v3 as iio
    rgba = np.concatenate([image, np.full((8, 12, 1), 7, np.uint8)], axis=2)
    iio.imwrite(tmp_path / "rgba.png", rgba)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), image)   # alpha dropped
    write_image(tmp_path / "a.jpg", image)
    assert read_image(tmp_path / "a.jpg").shape == (8, 12, 3)


def test_image_errors(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"this is not a png at all" * 10)
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("junk.png", "empty.png", "missing.png"):
        with pytest.raises(NeuralRenderError) as info:
            read_image(tmp_path / name)
        assert info.value.path == str(tmp_path / name)
    with pytest.raises(NeuralRenderError, match="uint8"):
        write_image(tmp_path / "f.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(NeuralRenderError, match="unsupported image format"):
        write_image(tmp_path / "f.exr", np.zeros((4, 4, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.png", "junk.png"]


def test_lossless_mp4_round_trip_is_bitwise(tmp_path):
    frames = _frames(3, 8, 12)
    frames[1] = 0
    frames[2, :, :6] = 255                           # extremes and hard edges
    write_video(tmp_path / "v.mp4", frames, fps=30.0, lossless=True)
    back, fps = read_video(tmp_path / "v.mp4")
    assert back.dtype == np.uint8 and back.shape == frames.shape
    assert np.array_equal(back, frames)
    assert fps == pytest.approx(30.0)
    odd = _frames(2, 7, 9, seed=1)                   # lossless needs no even size
    write_video(tmp_path / "odd.mp4", odd, lossless=True)
    assert np.array_equal(read_video(tmp_path / "odd.mp4")[0], odd)


def test_lossy_mp4_pads_odd_sizes_by_edge_replication(tmp_path):
    smooth = np.zeros((3, 15, 21, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 21, dtype=np.uint8)[None, None, :]
    smooth[..., 1] = np.linspace(40, 200, 15, dtype=np.uint8)[None, :, None]
    smooth[..., 2] = 128
    write_video(tmp_path / "p.mp4", smooth, fps=24.0)
    back, fps = read_video(tmp_path / "p.mp4")
    assert back.shape == (3, 16, 22, 3) and fps == pytest.approx(24.0)
    err = np.abs(back.astype(int) - np.pad(smooth, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge").astype(int))
    assert err.mean() < 6.0                          # lossy yuv420p, but the padded edge matches the last row/col
    assert np.abs(back[:, -1].astype(int) - back[:, -2].astype(int)).mean() < 6.0


def test_frame_folder_is_read_in_name_order(tmp_path):
    frames = _frames(3)
    for i in (2, 0, 1):
        write_image(tmp_path / "seq" / f"f{i:03d}.png", frames[i])
    (tmp_path / "seq" / "notes.txt").write_text("ignored")
    back, fps = read_video(tmp_path / "seq")
    assert np.array_equal(back, frames) and fps == 24.0
    assert read_video(tmp_path / "seq", default_fps=12.5)[1] == 12.5
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(NeuralRenderError, match="no frames"):
        read_video(tmp_path / "empty_dir")
    write_image(tmp_path / "seq" / "f999.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(NeuralRenderError, match="but f000.png is"):
        read_video(tmp_path / "seq")


def test_bad_videos_are_rejected(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("hello, I am not a video\n" * 20)
    (tmp_path / "noise.mp4").write_bytes(np.random.default_rng(2).bytes(4000))
    write_video(tmp_path / "good.mp4", _frames(3), lossless=True)
    data = (tmp_path / "good.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 3])
    for name in ("empty.mp4", "text.mp4", "noise.mp4", "truncated.mp4", "missing.mp4"):
        with pytest.raises(NeuralRenderError) as info:
            read_video(tmp_path / name)
        assert info.value.path == str(tmp_path / name), name


def test_write_video_validates_and_leaves_no_temp(tmp_path):
    with pytest.raises(NeuralRenderError, match="non-empty"):
        write_video(tmp_path / "v.mp4", np.zeros((0, 8, 12, 3), np.uint8))
    with pytest.raises(NeuralRenderError, match="uint8"):
        write_video(tmp_path / "v.mp4", np.zeros((2, 8, 12, 3), np.float32))
    with pytest.raises(NeuralRenderError, match="fps"):
        write_video(tmp_path / "v.mp4", _frames(2), fps=0)
    with pytest.raises(NeuralRenderError, match=".mp4"):
        write_video(tmp_path / "v.avi", _frames(2))
    assert list(tmp_path.iterdir()) == []
