"""``neural-render`` command line: one module per command group, imported only when needed.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``;
modules must not import heavy libraries at module level so ``--help`` stays fast. A module may
instead define ``run_argv(argv) -> int`` to parse its own arguments (e.g. LightningCLI for ``fit``).
Bad input raises :class:`~neural_render.errors.NeuralRenderError`, printed here and mapped to exit 2.

Layering (tests/test_layering.py): a command module parses arguments, calls library functions and prints results;
the work lives in the library (model folders: neural_render.hub), nothing outside ``cli/`` imports it, and no
module here is over 150 lines.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name -> module path. Later features register their commands here.
COMMANDS: dict[str, str] = {
    "info": "neural_render.cli.info",
    "demo": "neural_render.cli.demo",
    "contact-sheet": "neural_render.cli.contact_sheet",
    "import": "neural_render.cli.import_video",
    "shade": "neural_render.cli.shade",
    "fit": "neural_render.cli.fit",
    "synth": "neural_render.cli.synth",
    "bench": "neural_render.cli.bench",
    "inverse": "neural_render.cli.inverse",
    "autolabel": "neural_render.cli.autolabel",
    "forward": "neural_render.cli.forward",
    "relight": "neural_render.cli.relight",
    "edit": "neural_render.cli.edit",
    "eval": "neural_render.cli.eval",
    "insert": "neural_render.cli.insert",
    "sim2real": "neural_render.cli.sim2real",
    "sim2real-data": "neural_render.cli.sim2real_data",
    "serve": "neural_render.cli.serve",
    "report": "neural_render.cli.report",
}

EXIT_BAD_INPUT = 2


def _module(name: str):
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neural-render", description="Inverse and forward neural rendering of video.")
    from neural_render import __version__
    parser.add_argument("--version", action="version", version=f"neural-render {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _module(name)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP, add_help=not hasattr(mod, "run_argv"))
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command (``argv``: its arguments, default sys.argv[1:]); returns the exit code (module doc).
    Logging and SIGTERM handling: neural_render/process_setup.py."""
    from neural_render.process_setup import configure_logging, sigterm_unwinds

    configure_logging()
    with sigterm_unwinds():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    from neural_render.errors import NeuralRenderError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in COMMANDS and hasattr(_module(argv[0]), "run_argv"):
            return int(_module(argv[0]).run_argv(argv[1:]) or 0)
        args = build_parser().parse_args(argv)
        if args.command is None:
            build_parser().print_help()
            return 0
        return int(_module(args.command).run(args) or 0)
    except NeuralRenderError as err:
        print(f"neural-render: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as err:  # a write that failed after the checks (disk full, permissions changed): one line
        where = f"{err.filename}: " if err.filename else ""
        print(f"neural-render: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("neural-render: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
