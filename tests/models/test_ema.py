"""Exponential moving average: update rule, warmup, swap/restore, state round trip."""

import pytest
import torch
from torch import nn

from neural_render.errors import NeuralRenderError
from neural_render.models.ema import ExponentialMovingAverage


def test_update_rule_matches_closed_form_recursion():
    net = nn.Linear(3, 2)
    ema = ExponentialMovingAverage(net.named_parameters(), decay=0.9, warmup=False)
    expected = {n: p.detach().clone() for n, p in net.named_parameters()}
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=g))
        ema.update(net.named_parameters())
        for n, p in net.named_parameters():
            expected[n] = 0.9 * expected[n] + 0.1 * p.detach()
    for n in expected:
        assert torch.allclose(ema.shadow[n], expected[n], atol=1e-6)
    assert ema.num_updates == 5


def test_warmup_decay_schedule():
    ema = ExponentialMovingAverage(nn.Linear(1, 1).named_parameters(), decay=0.999, warmup=True)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        ema.num_updates += 1
    assert decays == pytest.approx([1 / 10, 2 / 11, 3 / 12])
    ema.num_updates = 100000
    assert ema.current_decay() == pytest.approx(0.999)


def test_constant_parameters_stay_fixed_and_swap_restores():
    net = nn.Linear(4, 4)
    live = {n: p.detach().clone() for n, p in net.named_parameters()}
    ema = ExponentialMovingAverage(net.named_parameters(), decay=0.5)
    for _ in range(3):
        ema.update(net.named_parameters())
    for n in live:
        assert torch.allclose(ema.shadow[n], live[n])
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net.named_parameters())
    trained = {n: p.detach().clone() for n, p in net.named_parameters()}
    with ema.swapped(net.named_parameters()):
        assert torch.equal(net.weight, ema.shadow["weight"])
        assert not torch.equal(net.weight, trained["weight"])
    for n, p in net.named_parameters():
        assert torch.equal(p, trained[n])


def test_state_dict_round_trip_and_mismatch_errors():
    net = nn.Linear(2, 3)
    ema = ExponentialMovingAverage(net.named_parameters(), decay=0.8)
    with torch.no_grad():
        net.weight.mul_(2)
    ema.update(net.named_parameters())
    state = ema.state_dict()
    other = ExponentialMovingAverage(nn.Linear(2, 3).named_parameters(), decay=0.1)
    other.load_state_dict(state)
    assert other.num_updates == 1 and other.decay == 0.8
    for n in ema.shadow:
        assert torch.equal(other.shadow[n], ema.shadow[n])
    with pytest.raises(NeuralRenderError):
        ExponentialMovingAverage(nn.Linear(2, 4).named_parameters()).load_state_dict(state)
    with pytest.raises(NeuralRenderError):
        ema.update(nn.Conv1d(2, 3, 1).named_parameters())  # same names, different shapes
    with pytest.raises(NeuralRenderError):
        ExponentialMovingAverage(net.named_parameters(), decay=1.5)
