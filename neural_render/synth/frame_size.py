"""Frame sizes of rendered scenes (synth datasets, the demo scene of the web app, test videos) as (width, height).

Parsed by the one size parser of every command, :func:`neural_render.pipelines.frame_size.parse_size_arg` (which
returns (h, w) or a longer side); here the result is always an explicit (width, height) in pixels.
"""

from __future__ import annotations


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), 'N' -> (N, N), both >= 8 (NeuralRenderError otherwise)."""
    from neural_render.pipelines.frame_size import parse_size_arg

    size = parse_size_arg(text, minimum=8)
    return (size, size) if isinstance(size, int) else (size[1], size[0])
