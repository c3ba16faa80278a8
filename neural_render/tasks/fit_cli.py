"""The LightningCLI of ``neural-render fit`` as a library: :func:`build_cli` parses composable YAML and instantiates
backbone, codec, denoiser, model, data and trainer (no training). Used by ``cli/fit.py`` (the command), by
:mod:`neural_render.training_chain` and by the training scripts. Importing this module imports neither lightning
nor torch (they are imported when a CLI is built).
"""

from __future__ import annotations

HELP = "train a diffusion system from composable LightningCLI YAML (--config a.yaml --config b.yaml ...)"


def _cli_class():
    """The LightningCLI subclass (built lazily: importing this module must not import lightning/torch)."""
    import torch
    from lightning.pytorch.cli import LightningCLI

    from neural_render.models.backbone import VideoBackbone
    from neural_render.models.codec import LatentCodec
    from neural_render.models.denoiser import Denoiser

    class FitCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_subclass_arguments(VideoBackbone, "backbone", required=True,
                                          help="the video backbone (e.g. neural_render.tasks.base.make_backbone)")
            parser.add_subclass_arguments(Denoiser, "denoiser", required=True, help="diffusion formulation")
            parser.add_subclass_arguments(LatentCodec, "codec", required=False, help="latent codec (frozen)")
            parser.add_subclass_arguments(torch.nn.Module, "pass_embedding", required=False,
                                          help="optional pass/task embedding giving context tokens")
            for name in ("backbone", "denoiser", "codec", "pass_embedding"):
                parser.link_arguments(name, f"model.init_args.{name}", apply_on="instantiate")
            parser.add_argument("--ckpt_path", type=str | None, default=None, help="resume training from a checkpoint")
            parser.add_argument("--export_dir", type=str | None, default=None,
                                help="after training, write a pipeline folder here (EMA weights); checked before "
                                     "training: it must be new, empty or an earlier pipeline folder (model_index.json)"
                                     ", which is replaced; anything else is refused (exit 2)")

    return FitCLI


def _project_error(err: BaseException):
    """The NeuralRenderError an exception was caused by (jsonargparse chains it as ``__cause__``), or None."""
    from neural_render.errors import NeuralRenderError

    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, NeuralRenderError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def build_cli(argv: list[str]):
    """Parse ``argv`` and instantiate backbone, codec, denoiser, model, data and trainer (no training yet)."""
    import warnings

    from lightning.pytorch.cli import SaveConfigCallback

    from neural_render.tasks.base import DiffusionSystem

    # `neural-render fit ARGS` passes ARGS explicitly while sys.argv also holds them; that is intended here.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    try:
        cli = _cli_class()(
            DiffusionSystem,
            None,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=SaveConfigCallback,
            save_config_kwargs={"overwrite": True},
            args=list(argv),
            run=False,
            parser_kwargs={"prog": "neural-render fit", "description": HELP},
        )
    except ValueError as err:  # jsonargparse wraps errors raised while instantiating; surface ours (exit 2)
        cause = _project_error(err)
        if cause is None:
            raise
        raise cause from None
    cli.model.run_config = cli.parser.dump(cli.config, skip_none=False)
    return cli
