"""Fuzzing every file reader: >= 1000 generated inputs each; the only exception allowed is NeuralRenderError.

Inputs are mutations of a valid file (truncation, overwritten bytes, inserted bytes, duplicated chunks) or raw
random bytes, so both the header parsers and the payload decoders are exercised. A reader may also succeed.
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neural_render.errors import NeuralRenderError

EXAMPLES = 1000
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _mutations(seed: bytes):
    """Strategy of byte strings derived from ``seed`` (or unrelated random bytes)."""
    n = len(seed)
    truncate = st.integers(0, n).map(lambda k: seed[:k])
    overwrite = st.lists(st.tuples(st.integers(0, n - 1), st.binary(min_size=1, max_size=8)),
                         min_size=1, max_size=6).map(lambda edits: _apply_overwrites(seed, edits))
    insert = st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=64)).map(
        lambda e: seed[:e[0]] + e[1] + seed[e[0]:])
    duplicate = st.tuples(st.integers(0, n - 1), st.integers(1, 64)).map(lambda e: seed[:e[0] + e[1]] + seed[e[0]:])
    return st.one_of(truncate, overwrite, insert, duplicate, st.binary(max_size=512))


def _apply_overwrites(seed: bytes, edits) -> bytes:
    out = bytearray(seed)
    for pos, chunk in edits:
        out[pos:pos + len(chunk)] = chunk
    return bytes(out)


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def _fuzz(reader, path: Path, data: bytes):
    path.write_bytes(data)
    try:
        reader(path)
    except NeuralRenderError as err:
        assert err.path is not None and os.path.basename(str(path)) in str(err)


def _seed_exr(folder: Path) -> bytes:
    from neural_render.io import write_frame_exr

    rng = np.random.default_rng(0)
    n = rng.normal(size=(3, 4, 6)).astype(np.float32)
    write_frame_exr(folder / "seed.exr", {"rgb": rng.random((3, 4, 6), dtype=np.float32),
                                          "normal": n / np.linalg.norm(n, axis=0),
                                          "depth": rng.random((1, 4, 6), dtype=np.float32)})
    return (folder / "seed.exr").read_bytes()


def test_fuzz_exr(folder):
    from neural_render.io import read_exr

    seed = _seed_exr(folder)

    @FUZZ
    @given(_mutations(seed))
    def run(data):
        _fuzz(read_exr, folder / "fuzz.exr", data)

    run()


def test_fuzz_hdr(folder):
    from neural_render.io import load_envmap, write_hdr

    write_hdr(folder / "seed.hdr", np.random.default_rng(1).random((4, 8, 3), dtype=np.float32) * 10)
    seed = (folder / "seed.hdr").read_bytes()

    @FUZZ
    @given(_mutations(seed))
    def run(data):
        _fuzz(load_envmap, folder / "fuzz.hdr", data)

    run()


def test_fuzz_mp4(folder):
    from neural_render.io import read_video, write_video

    frames = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    write_video(folder / "seed.mp4", frames, lossless=True)
    seed = (folder / "seed.mp4").read_bytes()

    @FUZZ
    @given(_mutations(seed))
    def run(data):
        _fuzz(read_video, folder / "fuzz.mp4", data)

    run()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5), max_leaves=20)


def test_fuzz_meta_json(folder):
    import torch

    from neural_render.io import ClipMeta, read_meta
    from neural_render.types import Camera, look_at

    clip = folder / "clip"
    clip.mkdir()
    pose = look_at((0.0, 1.0, 3.0), (0.0, 0.0, 0.0)).expand(1, 2, 4, 4)
    meta = ClipMeta.for_camera(Camera.from_fov(50.0, 8, 6, pose),
                               envmap={"path": "sky.hdr", "rotation_deg": [10.0, 0.0, 0.0]})
    valid = json.loads(meta.to_json())
    seed = meta.to_json().encode()
    keys = sorted(valid)

    replaced = st.tuples(st.sampled_from(keys), json_values).map(
        lambda kv: json.dumps({**valid, kv[0]: kv[1]}).encode())
    dropped = st.sampled_from(keys).map(lambda k: json.dumps({x: v for x, v in valid.items() if x != k}).encode())

    @FUZZ
    @given(st.one_of(_mutations(seed), replaced, dropped, json_values.map(lambda v: json.dumps(v).encode())))
    def run(data):
        _fuzz(lambda p: read_meta(p.parent), clip / "meta.json", data)

    run()
    assert torch.is_tensor(meta.camera().camera_to_world)


def test_fuzz_mesh(folder):
    trimesh = pytest.importorskip("trimesh")
    from neural_render.synth.shapes import load_mesh_file

    seed_path = folder / "seed.obj"
    trimesh.creation.box().export(seed_path)
    seed = seed_path.read_bytes()

    @FUZZ
    @given(_mutations(seed))
    def run(data):
        _fuzz(load_mesh_file, folder / "fuzz.obj", data)

    run()
