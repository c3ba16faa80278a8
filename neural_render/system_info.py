"""What this installation can use: versions of the package and its dependencies, torch threads, the Mitsuba variant
in use (and why), CUDA and nvdiffrast availability (``neural-render info``)."""

from __future__ import annotations


def collect() -> dict:
    """Everything ``info`` reports, as a dict (imports are local: this is the slow path on purpose)."""
    import importlib.metadata as md
    import platform

    import torch

    from neural_render import __version__
    from neural_render.render.mitsuba_variant import mitsuba_status

    def version(dist: str) -> str:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return "not installed"

    cuda = torch.cuda.is_available()
    try:
        import nvdiffrast.torch  # noqa: F401
        nvdiffrast = "usable" if cuda else "installed, but no CUDA device"
    except Exception as err:  # ImportError, or a CUDA build error at import
        nvdiffrast = f"not usable ({type(err).__name__})"
    return {
        "neural_render": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **{name: version(name) for name in ("torch", "diffusers", "peft", "lightning", "kornia", "mitsuba", "numpy",
                                            "openexr", "imageio-ffmpeg", "safetensors", "trimesh")},
        "torch_threads": torch.get_num_threads(),
        "cuda": f"available ({torch.cuda.get_device_name(0)})" if cuda else "not available",
        "mitsuba_variant": mitsuba_status(),
        "nvdiffrast": nvdiffrast,
    }
