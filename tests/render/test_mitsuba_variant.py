"""Mitsuba variant choice: llvm_ad_rgb only after a subprocess probe proved it renders (a libLLVM Dr.Jit cannot
drive aborts the whole process, issue #21), the probe result cached per key, the env override, an unwritable
cache dir."""

import glob
import os
import subprocess
import sys

import pytest

from neural_render.errors import NeuralRenderError
from neural_render.render import mitsuba_variant as mv

pytest.importorskip("mitsuba")

LIB_DIRS = ("/lib/*-linux-gnu", "/usr/lib/*-linux-gnu", "/usr/lib/llvm-15/lib", "/lib64", "/usr/lib64", "/usr/lib")
MISSING_LLVM = "/nonexistent/libLLVM.so.19.1"  # the probe fails fast (ImportError in the child)


def llvm15() -> str:
    """A libLLVM 15 on this machine (Dr.Jit 1.5 aborts with it: 'Cannot select fminimum'), or skip."""
    for d in LIB_DIRS:
        for pattern in ("libLLVM-15.so*", "libLLVM.so.15*"):
            found = sorted(glob.glob(os.path.join(d, pattern)))
            if found:
                return found[0]
    pytest.skip("no libLLVM 15 on this machine")


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    """A fresh cache dir, no override, no decision remembered from earlier tests."""
    monkeypatch.setenv(mv.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(mv.ENV_OVERRIDE, raising=False)
    monkeypatch.setattr(mv, "_MEMO", {})


def count_runs(monkeypatch) -> list:
    calls = []
    real = subprocess.run

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting)
    return calls


def forbid_runs(monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise AssertionError(f"unexpected subprocess: {args}")

    monkeypatch.setattr(subprocess, "run", boom)


def test_llvm15_falls_back_to_scalar_with_the_reason_and_synth_completes(monkeypatch, tmp_path):
    lib = llvm15()
    monkeypatch.setenv(mv.LLVM_PATH_ENV, lib)
    status = mv.mitsuba_status()
    assert status.startswith("scalar_rgb (llvm_ad_rgb probe failed: "), status
    assert "libLLVM" in status and "libllvm19" in status, status
    assert mv.select_mitsuba_variant().variant() == "scalar_rgb"
    # the CLI in a fresh process with the same environment: no abort (exit 134 before the fix)
    out = tmp_path / "synth"
    proc = subprocess.run([sys.executable, "-c", "from neural_render.cli import main; main()", "synth", "--out",
                           str(out), "--clips", "1", "--frames", "2", "--size", "32x32", "--spp", "4",
                           "--no-progress"], capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "scalar_rgb" in proc.stdout and len(list((out / "clip_000000" / "frames").glob("0*.exr"))) == 2


def test_probe_result_is_cached_and_keyed_by_the_llvm_path(monkeypatch, tmp_path):
    monkeypatch.setenv(mv.LLVM_PATH_ENV, MISSING_LLVM)
    mv.cache_file().parent.mkdir(parents=True)
    mv.cache_file().write_text("{not json")  # a broken cache is ignored (and replaced)
    calls = count_runs(monkeypatch)
    ok, detail = mv.probe_result("llvm_ad_rgb")
    assert not ok and "LLVM" in detail and len(calls) == 1
    assert mv.cache_file().is_file()
    monkeypatch.setattr(mv, "_MEMO", {})  # a new process: only the JSON cache is left
    forbid_runs(monkeypatch)
    assert mv.probe_result("llvm_ad_rgb") == (ok, detail)
    assert mv.select_mitsuba_variant().variant() == "scalar_rgb"
    key = mv._digest(mv.probe_key("llvm_ad_rgb"))
    monkeypatch.setenv(mv.LLVM_PATH_ENV, MISSING_LLVM + ".other")
    assert mv._digest(mv.probe_key("llvm_ad_rgb")) != key
    with pytest.raises(AssertionError, match="unexpected subprocess"):
        mv.probe_result("llvm_ad_rgb")  # a new key probes again
    # a libLLVM appearing on the loader's path (e.g. libllvm19 installed later) changes the key too
    monkeypatch.setenv(mv.LLVM_PATH_ENV, MISSING_LLVM)
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "libLLVM.so.19.1").write_bytes(b"not really")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(libs))
    assert mv._digest(mv.probe_key("llvm_ad_rgb")) != key


def test_env_override_is_obeyed_without_a_probe(monkeypatch):
    forbid_runs(monkeypatch)
    monkeypatch.setenv(mv.ENV_OVERRIDE, "scalar_rgb")
    assert mv.select_mitsuba_variant().variant() == "scalar_rgb"
    assert mv.mitsuba_status() == f"scalar_rgb (set by {mv.ENV_OVERRIDE})"
    monkeypatch.setenv(mv.ENV_OVERRIDE, "no_such_variant")
    with pytest.raises(NeuralRenderError, match="no_such_variant"):
        mv.select_mitsuba_variant()
    assert mv.mitsuba_status().startswith("unusable (")


def test_forced_llvm_is_never_swapped_for_scalar_and_a_failed_probe_is_an_error(monkeypatch):
    monkeypatch.setenv(mv.LLVM_PATH_ENV, MISSING_LLVM)
    monkeypatch.setenv(mv.ENV_OVERRIDE, "llvm_ad_rgb")
    with pytest.raises(NeuralRenderError, match="llvm_ad_rgb probe failed"):
        mv.select_mitsuba_variant()  # an error, not scalar_rgb and not a process abort


def test_unwritable_cache_dir_still_decides(monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv(mv.CACHE_ENV, str(blocker / "cache"))  # no folder can be made there, not even by root
    monkeypatch.setenv(mv.LLVM_PATH_ENV, MISSING_LLVM)
    calls = count_runs(monkeypatch)
    with caplog.at_level("WARNING", logger=mv.__name__):
        assert mv.select_mitsuba_variant().variant() == "scalar_rgb"
    assert "cannot cache" in caplog.text and len(calls) == 1
    assert mv.mitsuba_status().startswith("scalar_rgb (llvm_ad_rgb probe failed")
    assert len(calls) == 1  # remembered in this process
