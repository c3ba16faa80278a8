"""`neural-render serve`: the web demo's callbacks (demo scene, env maps, material edits, uploads, bad input) and an
end-to-end run in headless Chromium (skipped without a browser unless NEURAL_RENDER_REQUIRE_BROWSER=1)."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from neural_render.cli import EXIT_BAD_INPUT, main
from neural_render.errors import NeuralRenderError
from neural_render.io import read_image, read_video, write_video
from neural_render.web.app import (
    DEMO_SCENE,
    OBJECTS,
    PASSES,
    TARGET_ALL,
    TARGET_NONE,
    UPLOAD,
    ServeConfig,
    envmap_choices,
    parse_color,
    run_job,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def cfg(tmp_path):
    return ServeConfig(frames=4, width=48, height=32, out_dir=tmp_path / "results")


@pytest.fixture
def no_models(tmp_path, monkeypatch):
    """A data folder with the shipped env maps and no models (whatever data/models/ holds today)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "envmaps").symlink_to(REPO / "data" / "envmaps")
    monkeypatch.setenv("NEURAL_RENDER_DATA", str(data))
    return data


def run(cfg, source=DEMO_SCENE, video=None, envmap="kiara_1_dawn", env_file=None, yaw=0, pitch=0, roll=0,
        target=TARGET_NONE, passes=PASSES, roughness=0.1, metallic=1.0, color="#2a5bd7"):
    return run_job(cfg, source, video, envmap, env_file, yaw, pitch, roll, target, list(passes), roughness, metallic,
                   color)


def frames_of(result):
    video, still, status = result
    assert video is not None and still is not None, status
    frames, _ = read_video(video)
    return frames.astype(float), read_image(still).astype(float), status


def test_demo_run_writes_video_and_still(cfg):
    frames, still, status = frames_of(run(cfg))
    assert frames.shape == (4, 32, 48, 3) and still.shape == (32, 48, 3)
    assert frames.std() > 10 and still.std() > 10
    assert status.startswith("Done") and "classical split-sum" in status and "kiara_1_dawn" in status
    from neural_render.data_assets import data_dir

    shipped = sorted(p.stem for p in (data_dir() / "envmaps").glob("*.hdr"))
    assert "kiara_1_dawn" in envmap_choices() and envmap_choices() == shipped  # every shipped map, every split


def test_result_follows_env_map_rotation_and_materials(cfg):
    base, base_still, _ = frames_of(run(cfg))
    other, other_still, _ = frames_of(run(cfg, envmap="venice_sunset"))
    assert np.abs(base - other).mean() > 5 and np.abs(base_still - other_still).mean() > 5
    turned, _, _ = frames_of(run(cfg, yaw=90, pitch=10))
    assert np.abs(base - turned).mean() > 2
    rough = [frames_of(run(cfg, target=TARGET_ALL, passes=["roughness"], roughness=r))[0] for r in (0.05, 0.9)]
    assert np.abs(rough[0] - rough[1]).mean() > 1
    # passes left unticked, or "no edit", leave the scene as it is
    same, _, _ = frames_of(run(cfg, target=TARGET_NONE, roughness=0.9))
    assert np.abs(same - base).mean() < 0.5
    # an object edit changes that object only: compare the lossless still (middle frame) pixel for pixel
    from neural_render.demo.scene import demo_scene

    ids = demo_scene(4, 48, 32).object_ids[0, 2, 0].numpy()
    _, edited, status = frames_of(run(cfg, target="object 2: red rough sphere", color="#1133ee"))
    assert "object 2" in status
    inside = ids == OBJECTS["object 2: red rough sphere"]
    assert inside.sum() > 20 and np.abs(edited - base_still)[inside].mean() > 20
    assert np.array_equal(edited[~inside], base_still[~inside])


def test_uploaded_env_map_and_colours(cfg, tmp_path):
    from neural_render.data_assets import envmap_path

    env = tmp_path / "my_sky.hdr"
    shutil.copy(envmap_path("venice_sunset"), env)
    frames, _, status = frames_of(run(cfg, env_file=str(env)))  # the uploaded file overrides the dropdown
    shipped, _, _ = frames_of(run(cfg, envmap="venice_sunset"))
    assert "my_sky" in status and np.abs(frames - shipped).mean() < 0.5
    assert parse_color("#AbC") == "#aabbcc" and parse_color("rgba(255, 0, 127.6, 1)") == "#ff0080"
    with pytest.raises(NeuralRenderError):
        parse_color("blue")


@pytest.mark.parametrize("case", ["bad_video", "missing_video", "png_env", "bad_env", "bad_colour", "object_on_upload"])
def test_bad_input_is_a_message_not_a_crash(cfg, tmp_path, no_models, case):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(b"this is not an mp4")
    good = tmp_path / "good.mp4"
    write_video(good, np.full((2, 16, 16, 3), 120, np.uint8), fps=8.0)
    png = tmp_path / "sky.png"
    png.write_bytes(b"\x89PNG")
    broken = tmp_path / "sky.hdr"
    broken.write_bytes(b"#?RADIANCE\ngarbage")
    kwargs = {"bad_video": dict(source=UPLOAD, video=str(bad)), "missing_video": dict(source=UPLOAD),
              "png_env": dict(env_file=str(png)), "bad_env": dict(env_file=str(broken)),
              "bad_colour": dict(target=TARGET_ALL, color="nope"),
              "object_on_upload": dict(source=UPLOAD, video=str(good), target="object 3: gold sphere")}[case]
    video, still, status = run(cfg, **kwargs)
    assert video is None and still is None
    assert status.startswith("**Error:**"), status
    expected = {"bad_video": "clip.mp4", "missing_video": "upload an MP4", "png_env": ".hdr or .exr",
                "bad_env": "sky.hdr", "bad_colour": "colour", "object_on_upload": "only for the demo scene"}[case]
    assert expected in status
    assert not list((tmp_path / "results").glob("run_*/result.mp4"))


def test_uploaded_video_without_models_says_so_and_renders_nothing(cfg, tmp_path, no_models):
    good = tmp_path / "good.mp4"
    write_video(good, np.full((2, 16, 16, 3), 120, np.uint8), fps=8.0)
    video, still, status = run(cfg, source=UPLOAD, video=str(good))
    assert video is None and still is None
    assert "need trained model folders" in status and "inverse, forward" in status
    assert "Nothing was rendered" in status


@pytest.fixture(scope="module")
def tiny_models(untrained_pipelines):
    """Untrained tiny inverse + forward pipelines (tests/conftest.py): plumbing only."""
    return untrained_pipelines


def test_uploaded_video_goes_through_the_relight_and_edit_pipelines(tmp_path, tiny_models):
    cfg = ServeConfig(max_frames=3, model=str(tiny_models / "forward_model"),
                      inverse_model=str(tiny_models / "inverse_model"), out_dir=tmp_path / "results")
    ramp = np.linspace(30, 220, 16)
    frames = np.stack([np.stack([ramp[None, :] + 0 * ramp[:, None] + 5 * t, ramp[:, None] + 0 * ramp[None, :],
                                 np.full((16, 16), 90.0 + 10 * t)], -1) for t in range(5)]).astype(np.uint8)
    clip = tmp_path / "upload.mp4"
    write_video(clip, frames, fps=8.0)
    relit, still, status = frames_of(run(cfg, source=UPLOAD, video=str(clip)))
    assert relit.shape == (3, 16, 16, 3) and still.shape == (16, 16, 3)
    assert "neural inverse -> forward" in status and "first 3 of 5 frames" in status
    edited, _, status = frames_of(run(cfg, source=UPLOAD, video=str(clip), target=TARGET_ALL))
    assert edited.shape == (3, 16, 16, 3) and "edited" in status


def test_serve_command_checks_its_arguments(tmp_path, capsys):
    assert main(["serve", "--size", "4"]) == EXIT_BAD_INPUT  # below the 8-pixel minimum
    assert main(["serve", "--size", "12x"]) == EXIT_BAD_INPUT
    assert main(["serve", "--model", str(tmp_path)]) == EXIT_BAD_INPUT  # not a pipeline folder: fails before serving
    assert "model_index.json" in capsys.readouterr().err


def test_help_and_import_do_not_load_gradio_or_torch():
    code = ("import sys; from neural_render.cli import build_parser; build_parser().format_help(); "
            "import neural_render.web, neural_render.cli.serve; "
            "print(','.join(m for m in ('gradio', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_build_app_is_a_blocks(cfg):
    gr = pytest.importorskip("gradio")
    from neural_render.web.app import build_app

    assert isinstance(build_app(cfg), gr.Blocks)


# ---------------------------------------------------------------------------------------------- end to end ----

def _chromium() -> str | None:
    for name in (os.environ.get("NEURAL_RENDER_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _skip_or_fail(reason: str):
    if os.environ.get("NEURAL_RENDER_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (NEURAL_RENDER_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, server, seconds: float = 45.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"server exited with {server.returncode}: {server.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"server did not answer at {url} within {seconds} s")


@pytest.mark.timeout(120)
def test_end_to_end_in_headless_chromium(tmp_path):
    browser_path = _chromium()
    if browser_path is None:
        _skip_or_fail("no chromium binary found (apt-get install -y chromium, or set NEURAL_RENDER_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _skip_or_fail("playwright is not installed (pip install -e '.[dev]')")
    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", GRADIO_ANALYTICS_ENABLED="False")
    server = subprocess.Popen([sys.executable, "-m", "neural_render", "serve", "--port", str(port), "--frames", "8",
                               "--size", "128x96", "--out", str(tmp_path / "results")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_up(url, server)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=browser_path, headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(url)
                page.locator("#run").click()                      # the demo scene with the default light
                page.locator("#result-still img").wait_for(timeout=60_000)
                page.wait_for_function("() => { const v = document.querySelector('#result-video video');"
                                       " return v && v.src && v.readyState >= 2 && v.videoWidth > 0; }",
                                       timeout=60_000)
                status = page.locator("#status").inner_text()
                assert status.startswith("Done") and "kiara_1_dawn" in status, status
                src = page.evaluate("() => document.querySelector('#result-video video').src")
                assert src.endswith(".mp4")
                first_png = page.locator("#result-still img").screenshot()
                # another light and a material edit of one object, then Run again
                page.locator("#envmap input").click()
                page.get_by_role("option", name="venice_sunset").click()
                page.locator("#target input").click()
                page.get_by_role("option", name="object 2: red rough sphere").click()
                page.locator("#run").click()
                page.wait_for_function("() => document.querySelector('#status').innerText.includes('object 2')",
                                       timeout=60_000)
                page.wait_for_function(f"() => document.querySelector('#result-video video').src !== {src!r}",
                                       timeout=30_000)
                status = page.locator("#status").inner_text()
                assert status.startswith("Done") and "venice_sunset" in status, status
                page.wait_for_timeout(500)                         # let the new still finish loading
                still_png = page.locator("#result-still img").screenshot()
                page.screenshot(path=str(tmp_path / "web_demo_screenshot.png"), full_page=True)
            finally:
                browser.close()
        import imageio.v3 as iio

        still = iio.imread(still_png).astype(float)[..., :3]
        assert still.std() > 10, "the result image shows no rendered content"
        first = iio.imread(first_png).astype(float)[..., :3]
        assert first.shape == still.shape and np.abs(first - still).mean() > 5, "the second run shows nothing new"
        shot = iio.imread(tmp_path / "web_demo_screenshot.png")
        assert shot.shape[0] > 500 and shot.shape[1] >= 1280
        (REPO / "out").mkdir(exist_ok=True)
        shutil.copy(tmp_path / "web_demo_screenshot.png", REPO / "out" / "web_demo_screenshot.png")
    finally:
        server.kill()
        server.wait(timeout=10)
