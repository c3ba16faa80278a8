"""Command line: help, info, exit codes and lazy imports."""

import json
import subprocess
import sys

import pytest

from neural_render.cli import EXIT_BAD_INPUT, main


def test_import_is_light():
    """`import neural_render` must not pull torch, mitsuba, diffusers or lightning (keeps it well under 2 s)."""
    code = ("import sys, neural_render, neural_render.cli; "
            "heavy = [m for m in ('torch', 'mitsuba', 'diffusers', 'lightning', 'cv2', 'OpenEXR') "
            "if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_help_does_not_import_heavy_libraries(capsys):
    code = ("import sys\nfrom neural_render.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY=' + ','.join(m for m in ('torch', 'mitsuba', 'diffusers', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "info" in out.stdout and "demo" in out.stdout
    assert out.stdout.strip().endswith("HEAVY=")


def test_info_reports_backends(capsys):
    assert main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for key in ("torch", "torch_threads", "mitsuba_variant", "cuda", "nvdiffrast", "diffusers"):
        assert key in data
    assert data["mitsuba_variant"].split()[0] in ("llvm_ad_rgb", "scalar_rgb")


def test_unknown_option_exits_2():
    with pytest.raises(SystemExit) as err:
        main(["info", "--no-such-option"])
    assert err.value.code == 2


def test_bad_input_exits_2_with_file_and_reason(tmp_path, capsys):
    bogus = tmp_path / "not_a_clip"
    bogus.mkdir()
    assert main(["contact-sheet", str(bogus)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "neural-render: error:" in err and "not_a_clip" in err


def test_console_script_exit_code(tmp_path):
    out = subprocess.run([sys.executable, "-m", "neural_render", "demo", "--envmaps", "no_such_env", "kiara_1_dawn",
                          "--out", str(tmp_path / "o")], check=False, capture_output=True, text=True)
    assert out.returncode == EXIT_BAD_INPUT and "no_such_env" in out.stderr
    assert not (tmp_path / "o").exists()
