"""``neural-render bench all --quick``: one run writes bench.md / bench.json / 4 PNGs with the measured ratios and
replaces the README block; the block replacement and the PIL plot fallback are also checked on their own."""

import json

import pytest
from PIL import Image

from neural_render.bench.all import END, PLOTS, START, replace_block
from neural_render.bench.plots import line_plot
from neural_render.cli import main
from neural_render.errors import NeuralRenderError


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench_all")
    readme = tmp / "README.md"
    readme.write_text(f"# Project\n\nintro\n\n## Benchmarks\n\nsentence\n\n{START}\nold table\n{END}\n\n"
                      "## After\nkept\n")
    code = main(["bench", "all", "--quick", "--out", str(tmp / "out"), "--readme", str(readme)])
    return code, tmp


def test_quick_run_writes_table_json_and_plots(quick_run):
    code, tmp = quick_run
    assert code == 0
    out = tmp / "out"
    result = json.loads((out / "bench.json").read_text())
    assert result["errors"] == {} and result["mode"] == "quick"
    assert set(result["benchmarks"]) == {"backbone", "synth", "inverse", "inverse-e2e", "gpu-estimate"}
    e2e = result["benchmarks"]["inverse-e2e"]
    assert f"| end to end / model | {e2e['ratio']:.2f} " in (out / "bench.md").read_text()
    assert result["total_seconds"] > 0  # timings are the benchmark's output, never a test's pass condition
    md = (out / "bench.md").read_text()
    # the measured ratios appear in the table exactly as measured
    b, s, i = (result["benchmarks"][k] for k in ("backbone", "synth", "inverse"))
    assert f"| adapter step / bare diffusers step | {b['overhead_ratio']:.3f} " in md
    assert f"| fp32 step / bf16-autocast step | {b['bf16_speed_ratio']:.3f} " in md
    assert f"| {s['ratio_total_over_raw']:.3f} | <= 1.2 |" in md
    assert f"| 5 per-pass runs / 1 joint run (speed) | {i['speed_ratio']:.2f}x " in md
    assert i["speed_ratio"] == pytest.approx(i["per_pass_seconds"] / i["joint_seconds"])
    row = result["benchmarks"]["gpu-estimate"]["rows"][0]
    assert f"| SVD-xt UNet | inverse | {row['frames']} | {row['params_B']:.2f} |" in md
    assert f"{result['machine']['cpu_count']} CPUs" in md and result["machine"]["torch"] in md
    assert f"total wall time {result['total_seconds']:.0f} s" in md
    # sweeps: every point measured, in the table, and plotted
    for name in ("inverse", "shade"):
        sweep = result["sweeps"][name]
        assert [p["frames"] for p in sweep["frames"]] == sweep["settings"]["frames"]
        assert [p["size"] for p in sweep["sizes"]] == sweep["settings"]["sizes"]
        for p in sweep["frames"] + sweep["sizes"]:
            assert p["seconds"] > 0 and p["process_peak"] > 0
            assert f"| {p['frames']} | {p['size']} | " in md and f"{p['seconds']:.3f}" in md
    assert "RANDOM weights" in md and "split-sum" in md
    for name in PLOTS:
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] >= 300
        assert f"]({name})" in md
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".neural-render-output.json"]  # no leftovers


def test_quick_run_replaces_the_readme_block_only(quick_run):
    _, tmp = quick_run
    text = (tmp / "README.md").read_text()
    result = json.loads((tmp / "out" / "bench.json").read_text())
    assert text.startswith("# Project\n\nintro\n\n## Benchmarks\n\nsentence\n\n" + START + "\n")
    assert text.endswith(END + "\n\n## After\nkept\n") and "old table" not in text
    block = text.split(START)[1].split(END)[0]
    assert f"{result['benchmarks']['backbone']['overhead_ratio']:.3f}" in block
    for name in PLOTS:
        assert f"](docs/bench/{name})" in block
        assert (tmp / "docs" / "bench" / name).read_bytes() == (tmp / "out" / name).read_bytes()


def test_replace_block_needs_one_ordered_pair():
    assert replace_block(f"a\n{START}\nx\n{END}\nb", "new") == f"a\n{START}\nnew\n{END}\nb"
    for bad in ("no markers", f"{END}\n{START}", f"{START}{START}{END}", f"{START} only"):
        with pytest.raises(NeuralRenderError):
            replace_block(bad, "new")


def test_pil_fallback_plot(tmp_path):
    path = tmp_path / "p.png"
    assert line_plot(path, "t", "frames", "s", {"a": ([8, 16, 32], [0.1, 0.2, 0.4]), "b": ([8, 16], [0, 5.0])},
                     use_matplotlib=False) == "pil"
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (640, 420)
        colors = {c for _, c in img.getcolors(1 << 16)}
    assert (31, 119, 180) in colors and (255, 127, 14) in colors  # both series drawn


def test_readme_without_markers_fails_before_measuring(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    assert main(["bench", "all", "--quick", "--out", str(tmp_path / "out"), "--readme", str(readme)]) == 2
    assert not (tmp_path / "out").exists()
