"""``neural-render synth``: a killed run resumes to the same dataset as an uninterrupted one; bad input -> exit 2;
sky, preview, progress bar and the timing report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from neural_render.cli import main
from neural_render.io.clip import is_complete_clip, read_clip_envmap, read_meta
from neural_render.io.exr import read_exr

ARGS = ["synth", "--clips", "5", "--frames", "3", "--size", "40x32", "--spp", "8", "--seed", "9", "--no-progress"]


def run_cli(out: Path, extra=()):
    return subprocess.run([sys.executable, "-m", "neural_render", *ARGS, "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=600)


def snapshot(root: Path) -> dict:
    """Every visible file under root -> comparable content (EXR channels as arrays, other files as bytes)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or any(part.startswith(".") for part in rel.parts):
            continue
        out[str(rel)] = read_exr(path) if path.suffix == ".exr" else path.read_bytes()
    return out


def same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            if x.keys() != y.keys() or not all(np.array_equal(x[c], y[c]) for c in x):
                return False
        elif x != y:
            return False
    return True


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    proc = subprocess.Popen([sys.executable, "-m", "neural_render", *ARGS, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (killed / "clip_000000").is_dir():
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    clips = sorted(killed.glob("clip_*"))
    assert 1 <= len(clips) < 5
    for clip in clips:  # whatever is visible is complete
        assert is_complete_clip(clip)
    resumed = run_cli(killed)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(clips)} already complete" in resumed.stdout
    hidden = [p.name for p in killed.iterdir() if p.name.startswith(".")]
    assert hidden == [".neural-render-output.json"]  # dead temp folders cleaned up; only the owner marker
    fresh = run_cli(straight)
    assert fresh.returncode == 0, fresh.stderr
    a, b = snapshot(killed), snapshot(straight)
    assert len([k for k in a if k.endswith("meta.json")]) == 5
    assert same(a, b)


def test_bad_input_exits_2(tmp_path, capsys):
    from PIL import Image

    out = str(tmp_path / "out")
    base = ["synth", "--out", out, "--clips", "1", "--frames", "2", "--size", "16x16", "--spp", "1", "--no-progress"]
    garbage = tmp_path / "garbage.obj"
    garbage.write_text("v 1 2\nnonsense\n")
    png = tmp_path / "sky.png"
    Image.new("RGB", (16, 8), (200, 200, 255)).save(png)
    folder = tmp_path / "maps"
    folder.mkdir()
    Image.new("RGB", (16, 8)).save(folder / "a.jpg")
    cases = [(["--meshes", str(garbage)], "garbage.obj"), (["--envmaps", str(png)], "HDR"),
             (["--envmaps", str(folder)], "HDR"), (["--frames", "0"], "frames"), (["--size", "4x16"], "WxH"),
             (["--size", "4x4"], "size"), (["--clips", "0"], "clips"), (["--spp", "0"], "spp"),
             (["--envmaps", str(tmp_path / "nowhere")], "envmaps")]
    for extra, needle in cases:
        code = main(base + extra)
        err = capsys.readouterr().err
        assert code == 2, (extra, err)
        assert needle in err, (extra, err)
    assert not list((tmp_path / "out").glob("clip_*")) if (tmp_path / "out").exists() else True
    proc = subprocess.run([sys.executable, "-m", "neural_render", *base, "--frames", "-3"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and "frames" in proc.stderr


def test_sky_preview_progress_and_report(tmp_path, capsys):
    out = tmp_path / "sky"
    args = ["synth", "--out", str(out), "--clips", "1", "--frames", "2", "--size", "24x16", "--spp", "2", "--sky",
            "--preview", "--seed", "1"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "frame" in captured.err and "synth" in captured.err  # tqdm progress bar on stderr
    for needle in ("total time", "raw Mitsuba render", "ratio", "frames/s", "variant"):
        assert needle in captured.out
    clip = out / "clip_000000"
    for name in ("preview.png", "rgb.mp4", "sky.exr", "frames/flow_000001.exr", "frames/object_id_000000.exr"):
        assert (clip / name).is_file(), name
    meta = read_meta(clip)
    assert meta.envmap["path"] == "sky.exr" and meta.extra["synth"]["env"]["kind"] == "sky"
    assert meta.extra["synth"]["variant"] in captured.out
    assert read_clip_envmap(clip).image.shape == (3, 128, 256)
    # a second run with the same arguments skips the finished clip; other arguments are refused
    assert main(args) == 0
    assert "1 already complete" in capsys.readouterr().out
    assert main(args[:-1] + ["2"]) == 2
    assert "different arguments" in capsys.readouterr().err
    spec = json.loads((out / "synth.json").read_text())
    assert spec["seed"] == 1 and spec["config"]["sky"] is True


@pytest.mark.parametrize("variant", ["scalar_rgb"])
def test_scalar_variant_cli_run(tmp_path, variant):
    env = dict(os.environ, NEURAL_RENDER_MITSUBA_VARIANT=variant)
    proc = subprocess.run([sys.executable, "-m", "neural_render", "synth", "--out", str(tmp_path / "s"), "--clips", "1",
                           "--frames", "2", "--size", "16x12", "--spp", "2", "--no-progress"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert variant in proc.stdout
    assert read_meta(tmp_path / "s" / "clip_000000").extra["synth"]["variant"] == variant


def test_bench_synth_runs_and_reports(capsys):
    code = main(["bench", "synth", "--clips", "1", "--frames", "2", "--size", "16x16", "--spp", "1", "--no-warmup",
                 "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["frames"] == 2 and result["raw_render_seconds"] > 0 and result["frames_per_second"] > 0
    assert result["ratio_total_over_raw"] == pytest.approx(result["total_seconds"] / result["raw_render_seconds"])


def test_temporaries_of_dead_runs_are_removed(tmp_path):
    from neural_render.synth.dataset import SynthJob, prepare_output
    from neural_render.synth.scene import SynthConfig

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    names = [f".clip_000001.tmp-{pid}-0a1b2c3d", f"..clip_000001.tmp-{pid}-0a1b2c3d.tmp-{pid}-99aa",
             f".clip_000002.old-{pid}-beef", f".clip_000003.tmp-{os.getpid()}-abcd", ".unrelated"]
    for name in names:
        (tmp_path / name).mkdir()
    prepare_output(SynthJob(str(tmp_path), SynthConfig(num_frames=1, sky=True), 0), [], 1)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert left == sorted([f".clip_000003.tmp-{os.getpid()}-abcd", ".unrelated"])


def test_first_clip_renders_a_later_slice_of_the_same_dataset(tmp_path):
    """--first-clip 2 --clips 1 writes clip_000002 only, equal to clip 2 of a run over clips 0..2; resumable."""
    small = ["synth", "--frames", "2", "--size", "16x16", "--spp", "2", "--seed", "5", "--no-progress"]
    assert main([*small, "--clips", "3", "--out", str(tmp_path / "all")]) == 0
    assert main([*small, "--clips", "1", "--first-clip", "2", "--out", str(tmp_path / "slice")]) == 0
    assert sorted(p.name for p in (tmp_path / "slice").glob("clip_*")) == ["clip_000002"]
    assert same(snapshot(tmp_path / "all" / "clip_000002"), snapshot(tmp_path / "slice" / "clip_000002"))
    assert main([*small, "--clips", "1", "--first-clip", "2", "--out", str(tmp_path / "slice")]) == 0
    assert main([*small, "--clips", "1", "--first-clip", "-1", "--out", str(tmp_path / "bad")]) == 2
