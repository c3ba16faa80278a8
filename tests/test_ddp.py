"""DDP with 2 CPU processes (gloo) through the fit CLI's builder: both ranks end with identical weights.

The script below is launched as a subprocess; Lightning's DDP launcher re-runs it for rank 1 (hence the
``__main__`` guard). Each rank sees a different clip (DistributedSampler), so only gradient all-reduce can keep
the weights identical; each rank saves its weights to a file and the test compares them.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

SCRIPT = '''
import sys
import torch
from neural_render.tasks.fit_cli import build_cli

if __name__ == "__main__":
    out_dir, argv = sys.argv[1], sys.argv[2:]
    torch.set_num_threads(1)
    cli = build_cli(argv)
    initial = {k: v.detach().clone() for k, v in cli.model.state_dict().items()}
    seen, step = [], cli.model.training_step

    def spy(batch, batch_idx):
        seen.append(float(batch["input"].sum()))
        return step(batch, batch_idx)

    cli.model.training_step = spy
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    rank = cli.trainer.global_rank
    torch.save({"state": cli.model.state_dict(), "ema": cli.model.ema.state_dict()["shadow"], "initial": initial,
                "world_size": cli.trainer.world_size, "step": cli.trainer.global_step,
                "seen_inputs": seen},
               f"{out_dir}/rank{rank}.pt")
'''


@pytest.mark.parametrize("backbone,task,steps", [("tiny_wan.yaml", "toy.yaml", 3), ("tiny_svd.yaml", "toy_x0.yaml", 2)])
def test_ddp_two_cpu_processes_keep_identical_weights(tmp_path, backbone, task, steps):
    script = tmp_path / "ddp_fit.py"
    script.write_text(SCRIPT)
    args = [sys.executable, str(script), str(tmp_path)]
    for kind in ("trainer/ddp_cpu.yaml", "data/toy.yaml", f"backbone/{backbone}", f"task/{task}"):
        args += ["--config", str(CONFIGS / kind)]
    args += ["--trainer.default_root_dir", str(tmp_path / "logs"), "--trainer.max_steps", str(steps),
             "--trainer.limit_val_batches", "0", "--data.init_args.batch_size", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("MASTER_PORT", None)
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["step"] for r in ranks] == [steps, steps]
    # the ranks trained on different clips ...
    assert len(ranks[0]["seen_inputs"]) == steps and ranks[0]["seen_inputs"][0] != ranks[1]["seen_inputs"][0]
    # ... yet hold identical weights (and EMA) afterwards
    state0, state1 = ranks[0]["state"], ranks[1]["state"]
    assert state0.keys() == state1.keys()
    for key in state0:
        assert torch.equal(state0[key], state1[key]), key
    for key in ranks[0]["ema"]:
        assert torch.equal(ranks[0]["ema"][key], ranks[1]["ema"][key]), key
    changed = [k for k in state0 if not torch.equal(state0[k], ranks[0]["initial"][k])]
    assert len(changed) > len(state0) // 2  # it trained
    assert (tmp_path / "logs" / "lightning_logs" / "version_0" / "config.yaml").is_file()
