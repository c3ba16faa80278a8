"""ExponentialMovingAverage on diffusers' EMAModel: this schedule (not EMAModel's), nested swaps, the checkpoint
format written before the switch, pickling (DDP spawn / deepcopy)."""

import copy
import pickle

import torch
from torch import nn

from neural_render.models.ema import ExponentialMovingAverage


def test_first_update_keeps_a_tenth_of_the_initial_weights():
    net = nn.Linear(2, 2)
    init = {n: p.detach().clone() for n, p in net.named_parameters()}
    ema = ExponentialMovingAverage(net.named_parameters(), decay=0.999, warmup=True)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net.named_parameters())  # EMAModel's own schedule would copy here (decay 0 at its first step)
    assert torch.allclose(ema.shadow["weight"], 0.1 * init["weight"] + 0.9 * net.weight.detach(), atol=1e-6)
    assert not torch.equal(ema.shadow["weight"], net.weight.detach())


def test_nested_swaps_restore_the_live_weights():
    net = nn.Linear(3, 3)
    ema = ExponentialMovingAverage(net.named_parameters(), decay=0.5, warmup=False)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net.named_parameters())
    live = net.weight.detach().clone()
    with ema.swapped(net.named_parameters()):
        with ema.swapped(net.named_parameters()):  # e.g. an export during validation
            assert torch.equal(net.weight, ema.shadow["weight"])
        assert torch.equal(net.weight, ema.shadow["weight"])
    assert torch.equal(net.weight, live)


def test_checkpoint_format_and_pickling():
    net = nn.Linear(2, 3)
    written_before = {"decay": 0.9, "warmup": False, "num_updates": 7,
                      "shadow": {"weight": torch.full((3, 2), 0.25), "bias": torch.full((3,), -1.0)}}
    ema = ExponentialMovingAverage(net.named_parameters(), decay=0.5)
    ema.load_state_dict(written_before)
    assert (ema.decay, ema.warmup, ema.num_updates, ema.current_decay()) == (0.9, False, 7, 0.9)
    state = ema.state_dict()
    assert set(state) == {"decay", "warmup", "num_updates", "shadow"} and set(state["shadow"]) == {"weight", "bias"}
    assert torch.equal(state["shadow"]["weight"], written_before["shadow"]["weight"])
    for clone in (pickle.loads(pickle.dumps(ema)), copy.deepcopy(ema)):
        clone.update(net.named_parameters())
        assert clone.num_updates == 8 and ema.num_updates == 7
        assert torch.allclose(clone.shadow["bias"], 0.9 * -1.0 + 0.1 * net.bias.detach(), atol=1e-6)


def test_shadows_follow_the_parameters_dtype_and_device():
    net = nn.Linear(2, 2)
    ema = ExponentialMovingAverage(net.named_parameters(), decay=0.5, warmup=False)
    net.double()  # as a strategy moving the module after the EMA was made (dtype here; device the same way)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net.named_parameters())
    assert ema.shadow["weight"].dtype == torch.float64
    with ema.swapped(net.named_parameters()):
        assert torch.equal(net.weight, ema.shadow["weight"])
