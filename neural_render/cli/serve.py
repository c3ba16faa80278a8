"""``neural-render serve [--port 7860] [--model DIR] [--inverse-model DIR]``: the Gradio web demo on localhost.

Upload an MP4 or pick the demo scene, pick a shipped env map or upload an .hdr/.exr, rotate it, edit materials,
press Run; see :mod:`neural_render.web.app`. Needs the ``web`` extra (``pip install -e ".[web]"``).
"""

from __future__ import annotations

HELP = "web demo (Gradio) on localhost: demo scene or uploaded MP4, env map + rotation, material edits -> video + still"


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--frames", type=int, default=16, help="frames of the demo scene (default 16)")
    parser.add_argument("--size", default="128x96", help="size of the demo scene: WxH, or N for NxN (default 128x96)")
    parser.add_argument("--fps", type=float, default=12.0, help="frame rate of the demo scene's video")
    parser.add_argument("--max-frames", type=int, default=24, help="uploaded videos are cut to this many frames")
    parser.add_argument("--model", default=None,
                        help="forward pipeline folder for uploaded videos (default: data/models/forward_tiny if "
                             "present)")
    parser.add_argument("--inverse-model", default=None,
                        help="inverse pipeline folder for uploaded videos (default: data/models/inverse_tiny if "
                             "present)")
    parser.add_argument("--device", default="cpu", help="device of the neural pipelines (default cpu)")
    parser.add_argument("--out", default=None,
                        help="folder for the rendered results (default: a temporary folder); each run writes a new "
                             "run_<id> subfolder, nothing already there is touched")


def make_config(args):
    """Parsed arguments -> :class:`neural_render.web.app.ServeConfig` (NeuralRenderError for bad values)."""
    from pathlib import Path

    from neural_render.errors import NeuralRenderError
    from neural_render.synth.frame_size import parse_size
    from neural_render.web.app import ServeConfig, find_models

    if not 0 < args.port < 65536:
        raise NeuralRenderError(f"--port must be in 1..65535, got {args.port}")
    if args.frames < 2 or args.max_frames < 1:
        raise NeuralRenderError("--frames must be >= 2 and --max-frames >= 1")
    if not args.fps > 0:
        raise NeuralRenderError(f"--fps must be > 0, got {args.fps}")
    width, height = parse_size(args.size)
    cfg = ServeConfig(frames=args.frames, width=width, height=height, fps=args.fps, max_frames=args.max_frames,
                      model=args.model, inverse_model=args.inverse_model, device=args.device)
    if args.out:
        cfg.out_dir = Path(args.out)
        cfg.out_dir.mkdir(parents=True, exist_ok=True)
    find_models(cfg)  # a given model folder that is not a pipeline fails here, before the server starts
    return cfg


def run(args) -> int:
    import os

    from neural_render.errors import NeuralRenderError

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    cfg = make_config(args)
    try:
        import gradio  # noqa: F401

        from neural_render.web.app import CSS, build_app
    except ImportError as err:
        raise NeuralRenderError(f"the web demo needs gradio: pip install -e \".[web]\" ({err})") from None
    app = build_app(cfg)
    print(f"serve: http://{args.host}:{args.port}  (results in {cfg.out_dir})", flush=True)
    app.launch(server_name=args.host, server_port=args.port, share=False, allowed_paths=[str(cfg.out_dir)],
               footer_links=[], quiet=True, css=CSS)
    return 0
