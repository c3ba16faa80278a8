"""``neural-render fit``: train a diffusion system with LightningCLI from composable YAML.

    neural-render fit --config configs/trainer/cpu_smoke.yaml --config configs/data/toy.yaml \\
                      --config configs/backbone/tiny_wan.yaml --config configs/task/toy.yaml [--trainer.max_steps 100]

Configs are applied left to right (later ones override earlier ones; put a task config that overrides denoiser
settings after the backbone config). Top-level groups:
    backbone / codec / denoiser / pass_embedding   class_path + init_args, injected into the model
    model          the task (a DiffusionSystem subclass): class_path + init_args (lr, warmup_steps, ema_decay, ...)
    data           a LightningDataModule: class_path + init_args
    trainer        Lightning Trainer arguments (strategy ddp/fsdp, devices, num_nodes, precision, gradient_clip_val)
    ckpt_path      resume from this checkpoint;  export_dir   write a pipeline folder (EMA weights) after training
The full merged config is saved as ``config.yaml`` in the run's log dir (next to ``checkpoints/``) and inside every
checkpoint (``run_config``). ``--print_config`` prints it without training. To export a finished checkpoint:
``neural-render fit --config <log dir>/config.yaml --ckpt_path <ckpt> --export_dir <dir>`` (max_steps is already
reached, so it restores the weights and EMA, trains no further and exports). Multi-process strategies re-launch
this command in each process, so it must be started from a script or console entry (it is).
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
    from lightning.pytorch.cli import SaveConfigCallback

    from neural_render.tasks.base import DiffusionSystem

    import warnings

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


def run_argv(argv: list[str]) -> int:
    """Entry of ``neural-render fit``: train, then optionally export. Returns the exit code."""
    from neural_render.io.output import check_output

    cli = build_cli(argv)
    export_dir = cli.config.get("export_dir")
    if export_dir:  # before minutes of training, not after
        check_output(export_dir, command="fit", kind="dir", also_owned_if=["model_index.json"])
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    if export_dir and cli.trainer.is_global_zero:
        cli.model.export(export_dir)
    return 0
