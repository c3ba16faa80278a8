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

from neural_render.tasks.fit_cli import HELP, build_cli  # noqa: F401  (build_cli: the library behind this command)


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
