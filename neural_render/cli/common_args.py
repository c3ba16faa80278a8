"""Argument groups shared by several command modules (argparse only; no command of its own, not in COMMANDS).

* :func:`add_relight_arguments`: what ``relight`` and ``edit`` share after their own arguments (output, inverse
  model, precomputed G-buffers, FOV, forward-model sampling, inverse processing size);
* :func:`add_eval_data_arguments` / :func:`add_eval_run_arguments`: ``--data`` / ``--model`` and the
  ``--max-clips --seed [--domain] --json [--device]`` tail of the ``eval`` sub-commands;
* :func:`add_resumable_out_argument`: the positional input folder and the resumable ``--out`` folder of
  ``autolabel`` and ``sim2real-data``;
* :func:`add_subcommands` / :func:`chosen_subcommand` / :func:`run_subcommand`: a command whose sub-commands are
  modules (``eval``, ``bench``), each with ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import importlib


def add_relight_arguments(parser, out_help: str) -> None:
    """``--out`` (help: ``out_help``), ``--inverse-model``, ``--gbuffer``, ``--fov``, the forward model's arguments
    (:func:`neural_render.cli.forward.add_model_arguments`) and ``--size`` of the inverse pass."""
    from neural_render.cli.forward import add_model_arguments
    from neural_render.cli.inverse import add_inverse_size_argument
    from neural_render.io.output import add_out_argument

    add_out_argument(parser, out_help)
    parser.add_argument("--inverse-model", default=None, help="inverse pipeline folder (default: shipped inverse_tiny)")
    parser.add_argument("--gbuffer", default=None,
                        help="clip folder with G-buffers of VIDEO (e.g. from `neural-render inverse`): skip the "
                             "inverse")
    parser.add_argument("--fov", type=float, default=60.0, help="horizontal FOV (degrees) for videos without a camera")
    add_model_arguments(parser)
    add_inverse_size_argument(parser)


def add_eval_data_arguments(parser, data_help: str, model_help: str, *, model_required: bool = False) -> None:
    """``--data`` (required) and ``--model`` (default None: the command's shipped model, unless ``model_required``)."""
    parser.add_argument("--data", required=True, help=data_help)
    parser.add_argument("--model", required=model_required, default=None, help=model_help)


def add_eval_run_arguments(parser, *, seed_help: str = "sampling and bootstrap seed (default 0)",
                           domain: str | None = None, domain_reason: str = "", device: bool = True) -> None:
    """``--max-clips``, ``--seed`` (help ``seed_help``), ``--domain`` when ``domain`` ("real" | "synthetic": the
    default Realiz3D domain, ``domain_reason`` says why), ``--json`` and, when ``device``, ``--device``."""
    parser.add_argument("--max-clips", type=int, default=None, help="evaluate the first N clips only")
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    if domain is not None:
        parser.add_argument("--domain", choices=("real", "synthetic"), default=domain,
                            help=f"Realiz3D domain for models with shifters (default {domain}: {domain_reason})")
    parser.add_argument("--json", default=None, help="also write all numbers to this JSON file")
    if device:
        parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def add_resumable_out_argument(parser, dest: str, input_help: str, command: str, contents: str) -> None:
    """The positional input folder ``dest`` and ``--out``: a folder (``contents`` says of what) that is created, or
    resumed when a previous output of ``command``; any other non-empty folder is refused."""
    parser.add_argument(dest, help=input_help)
    parser.add_argument("--out", required=True,
                        help=f"output folder ({contents}): created, or resumed when a previous {command} output; any "
                             "other non-empty folder is refused (exit 2), nothing in it is touched")


def add_subcommands(parser, dest: str, metavar: str, modules: dict[str, str]) -> list:
    """One sub-parser per ``modules`` entry (name -> module path; the module's ``HELP`` and ``add_arguments``),
    chosen name stored in ``args.<dest>``. Returns the sub-parsers (for arguments every sub-command shares)."""
    sub = parser.add_subparsers(dest=dest, metavar=metavar)
    parsers = []
    for name, path in modules.items():
        mod = importlib.import_module(path)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        parsers.append(p)
    return parsers


def chosen_subcommand(args, dest: str, modules: dict[str, str], what: str) -> str:
    """The sub-command named in ``args.<dest>``; NeuralRenderError ("name {what}: one of ...") when none was."""
    from neural_render.errors import NeuralRenderError

    name = getattr(args, dest, None)
    if not name:
        raise NeuralRenderError(f"name {what}: one of {sorted(modules)}")
    return name


def run_subcommand(modules: dict[str, str], name: str, args) -> int:
    """Run sub-command ``name``'s module on ``args``; its exit code (None = 0)."""
    return int(importlib.import_module(modules[name]).run(args) or 0)
