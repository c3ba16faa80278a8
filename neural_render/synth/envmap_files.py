"""Which env map files a synthetic dataset is lit by (``neural-render synth --envmaps``, bench synth)."""

from __future__ import annotations


def resolve_envmaps(spec: str) -> list[str]:
    """'train' | 'val' | 'test' | 'train_extra' (shipped maps of data/envmaps/split.json) | 'train_all' (train +
    train_extra) | a folder of .hdr/.exr files | one such file -> env map file paths (NeuralRenderError when none
    or not HDR)."""
    from pathlib import Path

    from neural_render.data_assets import ENVMAP_SPLITS, ENVMAP_UNIONS, envmap_names, envmap_path
    from neural_render.errors import NeuralRenderError
    from neural_render.io.hdr import HDR_SUFFIXES, LDR_SUFFIXES

    if spec in ENVMAP_SPLITS or spec in ENVMAP_UNIONS:
        return [str(envmap_path(name)) for name in envmap_names(spec)]
    path = Path(spec)
    if path.is_file():
        return [str(path)]
    if not path.is_dir():
        raise NeuralRenderError(f"--envmaps must be one of {', '.join((*ENVMAP_SPLITS, *ENVMAP_UNIONS))}, a folder or "
                                "an env map file",
                                spec)
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in HDR_SUFFIXES + LDR_SUFFIXES)
    ldr = [p for p in files if p.suffix.lower() in LDR_SUFFIXES]
    if ldr:
        raise NeuralRenderError(f"not an HDR environment map ({ldr[0].suffix} is 8-bit); env maps must be .hdr or "
                                ".exr", ldr[0])
    if not files:
        raise NeuralRenderError("folder holds no .hdr or .exr env maps", path)
    return [str(p) for p in files]
