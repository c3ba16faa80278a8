"""Output safety through the CLI (issue #21): a command never deletes or overwrites what it did not create, never
touches its input, validates --out before any model work, and reports every output error as exit 2 in one line.

Table-driven: each case runs a real command (tiny UNTRAINED models from tests/conftest.py: mechanics, not quality)
and checks the exit code, the message, that no traceback was printed, and that the user's files are untouched.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neural_render.cli import EXIT_BAD_INPUT, build_parser, main
from neural_render.demo.scene import demo_scene
from neural_render.io import Clip, ClipMeta, write_clip, write_video
from neural_render.io.output import MARKER_FILE, check_output, output_lock, written_by

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def assets(tmp_path_factory, untrained_pipelines):
    root = tmp_path_factory.mktemp("assets")
    frames = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    write_video(root / "clip.mp4", frames, fps=8.0)
    scene = demo_scene(2, 16, 16)
    write_clip(root / "gbuffers", Clip(rgb=None, gbuffer=scene.gbuffer, camera=scene.camera,
                                       meta=ClipMeta.for_camera(scene.camera)))
    return {"video": root / "clip.mp4", "gbuffers": root / "gbuffers",
            "inverse": untrained_pipelines / "inverse_model", "forward": untrained_pipelines / "forward_model"}


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _command(name: str, a: dict, out: str) -> list[str]:
    """The argv of command ``name`` writing to ``out`` (inputs from the ``assets`` fixture)."""
    return {
        "inverse": ["inverse", str(a["video"]), "--model", str(a["inverse"]), "--no-progress", "--out", out],
        "import": ["import", str(a["video"]), "--out", out],
        "shade": ["shade", str(a["gbuffers"]), "--envmap", "venice_sunset", "--out", out],
        "forward": ["forward", str(a["gbuffers"]), "--envmap", "venice_sunset", "--model", str(a["forward"]),
                    "--out", out],
        "relight": ["relight", str(a["video"]), "--envmap", "venice_sunset", "--inverse-model", str(a["inverse"]),
                    "--model", str(a["forward"]), "--out", out],
        "contact-sheet": ["contact-sheet", str(a["gbuffers"]), "--out", out],
    }[name]


def _run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# ------------------------------------------------------------------------------------------- the user's files
@pytest.mark.parametrize("name, out_name", [("inverse", "w"), ("import", "w"), ("shade", "w"), ("forward", "w"),
                                            ("relight", "w"), ("shade", "notes.txt"), ("forward", "notes.mp4"),
                                            ("relight", "notes.mp4"), ("contact-sheet", "notes.png")])
def test_existing_user_output_is_refused_and_untouched(name, out_name, assets, tmp_path, capsys):
    out = tmp_path / out_name
    if out.suffix:
        out.write_bytes(b"the user's own notes")
    else:
        out.mkdir()
        (out / "thesis.txt").write_text("years of work")
    before = _snapshot(tmp_path)
    code, text = _run(_command(name, assets, str(out)), capsys)
    assert code == EXIT_BAD_INPUT and "not written by" in text and "--overwrite" in text
    assert "Traceback" not in text
    assert _snapshot(tmp_path) == before


def test_input_inside_out_is_never_deleted_even_with_overwrite(assets, tmp_path, capsys):
    work = tmp_path / "w"
    work.mkdir()
    video = work / "only.mp4"
    video.write_bytes(assets["video"].read_bytes())
    for extra in ([], ["--overwrite"]):
        argv = ["inverse", str(video), "--model", str(assets["inverse"]), "--out", str(work), *extra]
        code, text = _run(argv, capsys)
        assert code == EXIT_BAD_INPUT and "would replace the input" in text
        assert video.read_bytes() == assets["video"].read_bytes()


def test_overwrite_replaces_a_user_folder_only_when_asked(assets, tmp_path, capsys):
    out = tmp_path / "w"
    out.mkdir()
    (out / "old.txt").write_text("x")
    code, _ = _run(_command("import", assets, str(out)) + ["--overwrite"], capsys)
    assert code == 0 and not (out / "old.txt").exists() and (out / "meta.json").is_file()
    assert written_by(out) == "neural-render import"


@pytest.mark.parametrize("name, out_name", [("inverse", "out_dir"), ("shade", "out.mp4"), ("relight", "out.mp4"),
                                            ("contact-sheet", "sheet.png")])
def test_rerun_replaces_its_own_output_but_another_command_may_not(name, out_name, assets, tmp_path, capsys):
    out = tmp_path / out_name
    assert _run(_command(name, assets, str(out)), capsys)[0] == 0
    assert written_by(out) == f"neural-render {name}"
    assert _run(_command(name, assets, str(out)), capsys)[0] == 0  # its own previous output: replaced
    other = "import" if out.suffix == "" else ("forward" if out.suffix == ".mp4" else None)
    if other is not None:
        code, text = _run(_command(other, assets, str(out)), capsys)
        assert code == EXIT_BAD_INPUT and f"not written by `neural-render {other}`" in text


# ------------------------------------------------------------------------------------------- bad output paths
BAD_OUTS = {
    "current folder": ".",
    "parent is a file": "{tmp}/afile/sub",
    "unwritable folder": "/proc/neural_render_out/x",
    "name too long": "{tmp}/" + "n" * 300,
    "root": "/",
}


@pytest.mark.parametrize("name", ["inverse", "relight", "import", "shade"])
@pytest.mark.parametrize("case", sorted(BAD_OUTS))
def test_bad_out_paths_exit_2_in_one_line(name, case, assets, tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("a file")
    monkeypatch.chdir(tmp_path)
    out = BAD_OUTS[case].format(tmp=tmp_path)
    code, text = _run(_command(name, assets, out), capsys)
    assert code == EXIT_BAD_INPUT, text
    assert "Traceback" not in text and text.strip().count("\n") == 0 and text.startswith("neural-render: error:")


SYNTH = ["synth", "--clips", "1", "--frames", "1", "--size", "16x16", "--spp", "1", "--out"]


@pytest.mark.parametrize("argv", [
    [*SYNTH, "."], [*SYNTH, "{tmp}/afile/sub"], [*SYNTH, "/proc/neural_render_out"], [*SYNTH, "{tmp}/" + "n" * 300],
    ["autolabel", "{video_dir}", "--out", "."], ["autolabel", "{video_dir}", "--out", "{tmp}/afile/sub"],
    ["autolabel", "{video_dir}", "--out", "/proc/neural_render_out"],
])
def test_incremental_commands_refuse_bad_outs(argv, assets, tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").write_text("a file")
    monkeypatch.chdir(tmp_path)
    argv = [a.format(tmp=tmp_path, video_dir=assets["video"].parent) for a in argv]
    code, text = _run(argv, capsys)
    assert code == EXIT_BAD_INPUT and "Traceback" not in text


def test_synth_and_autolabel_refuse_a_foreign_folder(assets, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    for argv in (["synth", "--out", str(out), "--clips", "1", "--frames", "1", "--size", "16x16", "--spp", "1"],
                 ["autolabel", str(assets["video"].parent), "--out", str(out), "--model", str(assets["inverse"])]):
        code, text = _run(argv, capsys)
        assert code == EXIT_BAD_INPUT and "not written by" in text
        assert sorted(os.listdir(out)) == ["keep.txt"]


@pytest.mark.parametrize("name", ["forward", "relight", "edit"])
def test_output_checked_before_any_model_is_loaded(name, assets, tmp_path, capsys):
    (tmp_path / "afile").write_text("a file")
    if name == "edit":
        from neural_render.io import write_image

        write_image(tmp_path / "mask.png", np.full((16, 16), 255, np.uint8))
        argv = ["edit", str(assets["video"]), "--mask", str(tmp_path / "mask.png"), "--set", "roughness=0.1",
                "--envmap", "venice_sunset", "--model", "M", "--out", str(tmp_path / "afile" / "x.mp4")]
    else:
        argv = _command(name, assets, str(tmp_path / "afile" / "x.mp4"))
    argv[argv.index("--model") + 1] = str(tmp_path / "no_such_model")
    code, text = _run(argv, capsys)
    assert code == EXIT_BAD_INPUT and "is a file, not a folder" in text and "no_such_model" not in text


# ------------------------------------------------------------------------------------------- concurrency
def test_second_writer_of_the_same_output_exits_2_naming_the_holder(assets, tmp_path, capsys):
    out = tmp_path / "out_dir"
    with output_lock(out, "inverse"):
        code, text = _run(_command("inverse", assets, str(out)), capsys)
    assert code == EXIT_BAD_INPUT and "another run is writing this output" in text and f"pid {os.getpid()}" in text
    assert not out.exists() and not (tmp_path / ".out_dir.lock").exists()
    assert _run(_command("inverse", assets, str(out)), capsys)[0] == 0  # released


def test_autolabel_leaves_a_live_runs_temporaries_and_busy_clips_alone(assets, tmp_path, capsys):
    videos, out = tmp_path / "videos", tmp_path / "labels"
    videos.mkdir()
    for name in ("a", "b"):
        (videos / f"{name}.mp4").write_bytes(assets["video"].read_bytes())
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        argv = ["autolabel", str(videos), "--out", str(out), "--model", str(assets["inverse"])]
        assert _run(argv, capsys)[0] == 0
        live = out / f".a.tmp-{sleeper.pid}-0123abcd"      # another (live) run's temporary of clip a
        dead = out / ".a.tmp-999999999-0123abcd"           # a killed run's leftover
        live.mkdir()
        dead.mkdir()
        (out / ".autolabel" / "status" / "a.json").unlink()  # clip a must be redone
        with output_lock(out / "b", "autolabel"):           # another run is labelling clip b right now
            (out / ".autolabel" / "status" / "b.json").unlink()
            code, text = _run(argv, capsys)
        assert code == 0, text
        assert live.is_dir() and not dead.exists()
        assert "b: skipped, another run is writing this output" in text and "failed" not in text.split("labels:")[0]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_sigterm_removes_temporaries_and_the_lock(assets, tmp_path):
    frames = np.random.default_rng(1).integers(0, 256, (48, 64, 64, 3), dtype=np.uint8)
    video = tmp_path / "long.mp4"
    write_video(video, frames, fps=8.0)
    out = tmp_path / "out_dir"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "neural_render", "inverse", str(video), "--model",
                             str(assets["inverse"]), "--size", "64", "--steps", "30", "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / ".out_dir.lock"
    deadline = time.monotonic() + 120
    while not lock.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None, "finished before it could be terminated; make the run longer"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["long.mp4"]


# ------------------------------------------------------------------------------------------- conventions
def test_every_option_has_help_and_out_says_what_happens_to_existing_content():
    parser = build_parser()
    missing, out_help = [], {}

    def walk(p, prefix):
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}")
            elif action.option_strings and action.dest != "help" and not action.help:
                missing.append(f"{prefix} {action.option_strings[0]}")
            elif "--out" in action.option_strings:
                out_help[prefix] = action.help

    walk(parser, "neural-render")
    assert not missing, f"options without help: {missing}"
    vague = [cmd for cmd, text in out_help.items() if not any(w in text for w in ("refused", "untouched", "touched"))]
    assert not vague, f"--out help does not say what happens to existing content: {vague}"


def test_check_output_recognises_markers(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / MARKER_FILE).write_text('{"written_by": "neural-render inverse"}')
    (folder / "x").write_text("x")
    assert check_output(folder, command="inverse") == folder
    with pytest.raises(Exception, match="not written by"):
        check_output(folder, command="import")


def test_decoded_frames_give_the_same_lossless_rgb_as_converting_the_float_rgb(tmp_path):
    """inverse writes rgb.mp4 from the decoded uint8 frames (write_clip srgb8=) instead of converting the linear rgb
    back: identical bytes for every 8-bit value (the table of srgb8_to_linear inverts exactly under display)."""
    from neural_render.io import read_video
    from neural_render.io.video_input import srgb8_to_linear
    from neural_render.types import Camera, GBuffer

    frames = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, 3).repeat(2, 0)
    frames[1] = frames[1][::-1]
    rgb = srgb8_to_linear(frames)
    camera = Camera.from_fov(60.0, 16, 16, torch.eye(4).repeat(1, 2, 1, 1))
    clip = Clip(rgb=rgb, gbuffer=GBuffer(), camera=camera, meta=ClipMeta.for_camera(camera))
    write_clip(tmp_path / "a", clip, rgb_format="mp4")
    write_clip(tmp_path / "b", clip, rgb_format="mp4", srgb8=frames)
    a, _ = read_video(tmp_path / "a" / "rgb.mp4")
    b, _ = read_video(tmp_path / "b" / "rgb.mp4")
    assert np.array_equal(a, frames) and np.array_equal(b, frames)


def test_paths_are_resolved_as_the_os_does_and_links_are_never_replaced(assets, tmp_path, capsys):
    a = tmp_path / "a"
    (a / "b").mkdir(parents=True)
    (a / "precious").mkdir()
    (a / "precious" / "file.txt").write_text("keep")
    (tmp_path / "L").symlink_to(a / "b")
    (tmp_path / "link_out").symlink_to(tmp_path / "empty", target_is_directory=True)
    (tmp_path / "empty").mkdir()
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    before = _snapshot(tmp_path)
    for out in (str(tmp_path / "L" / ".." / "precious"), str(tmp_path / "link_out"), str(tmp_path / "loop" / "x")):
        code, text = _run(_command("import", assets, out), capsys)  # L/.. is a/, so a/precious is what is checked
        assert code == EXIT_BAD_INPUT and "Traceback" not in text, (out, text)
    assert _snapshot(tmp_path) == before and (tmp_path / "link_out").is_symlink()


def test_inputs_models_and_the_shipped_data_are_never_written_even_with_overwrite(assets, tmp_path, capsys):
    from neural_render.data_assets import data_dir

    clip = tmp_path / "clip"
    assert _run(_command("import", assets, str(clip)), capsys)[0] == 0
    before = _snapshot(clip)
    inside = ["inverse", str(clip), "--model", str(assets["inverse"]), "--out", str(clip / "labels")]
    cases = [inside,                                                                 # inside an input folder
             _command("inverse", assets, str(assets["inverse"])),                  # the model being used
             _command("inverse", assets, str(data_dir())),                         # the shipped data folder
             _command("inverse", assets, str(data_dir() / "models" / "inverse_tiny"))]
    for argv in cases:
        code, text = _run(argv + ["--overwrite"], capsys)
        assert code == EXIT_BAD_INPUT and "Traceback" not in text, (argv, text)
    assert _snapshot(clip) == before and (data_dir() / "models" / "inverse_tiny" / "model_index.json").is_file()


def test_export_into_an_existing_model_folder_keeps_its_test_scoring_log(untrained_pipelines, tmp_path):
    from neural_render.pipelines.inverse import InverseRenderingPipeline

    folder = tmp_path / "model"
    pipe = InverseRenderingPipeline.from_pretrained(untrained_pipelines / "inverse_model")
    pipe.save_pretrained(folder)
    (folder / "test_scorings.jsonl").write_text('{"command": "eval inverse"}\n')
    (folder / "eval_test_inverse.json").write_text("{}")  # describes the old weights: not kept
    pipe.save_pretrained(folder)
    assert (folder / "test_scorings.jsonl").read_text() == '{"command": "eval inverse"}\n'
    assert not (folder / "eval_test_inverse.json").exists()
