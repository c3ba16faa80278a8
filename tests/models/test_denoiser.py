"""Denoiser: preconditioning, loss and sampler share one network call; clean frames; CFG; diffusers equivalence."""

import math

import pytest
import torch
from torch import nn

from neural_render.errors import NeuralRenderError
from neural_render.models.denoiser import Denoiser, drop_condition


class StandInBackbone(nn.Module):
    """Tiny stand-in following the VideoBackbone interface: (B,T,C,h,w) in/out, timestep (B,) or (B,T)."""

    def __init__(self, latent_channels=4, cond_channels=4, context_dim=8, hidden=16, seed=0):
        super().__init__()
        self.latent_channels, self.cond_channels, self.context_dim, self.spatial_multiple = (
            latent_channels, cond_channels, context_dim, 1)
        torch.manual_seed(seed)
        self.inp = nn.Conv3d(latent_channels + cond_channels, hidden, 3, padding=1)
        self.temb = nn.Linear(8, hidden)
        self.ctx = nn.Linear(context_dim, hidden)
        self.out = nn.Conv3d(hidden, latent_channels, 3, padding=1)

    def forward(self, noisy, timestep, cond=None, context=None, added=None):
        b, t = noisy.shape[:2]
        if self.cond_channels:
            cond = torch.zeros(b, t, self.cond_channels, *noisy.shape[3:]) if cond is None else cond
            noisy = torch.cat([noisy, cond], 2)
        ts = timestep[:, None].expand(b, t) if timestep.ndim == 1 else timestep
        freqs = torch.exp(torch.linspace(0, -6, 4))
        emb = self.temb(torch.cat([torch.sin(ts[..., None] * freqs), torch.cos(ts[..., None] * freqs)], -1))
        h = self.inp(noisy.permute(0, 2, 1, 3, 4)) + emb.permute(0, 2, 1)[..., None, None]
        if context is not None:
            h = h + self.ctx(context.mean(1))[:, :, None, None, None]
        return self.out(torch.tanh(h)).permute(0, 2, 1, 3, 4)


class Recorder(nn.Module):
    """Wraps a backbone and records every call's inputs."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, []

    def forward(self, noisy, timestep, cond=None, context=None, added=None):
        self.calls.append({"noisy": noisy.detach().clone(), "timestep": timestep.detach().clone(), "cond": cond,
                           "context": context})
        return self.inner(noisy, timestep, cond, context, added)


SHAPE = (2, 4, 4, 6, 6)


def _inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(SHAPE, generator=g)
    cond = torch.randn(SHAPE, generator=g)
    context = torch.randn(2, 3, 8, generator=g)
    return x0, cond, context


@pytest.mark.parametrize("with_add", [False, True])
@pytest.mark.parametrize("kind", ["flow", "edm", "x0"])
def test_loss_equals_weighted_x0_error_of_predict_x0(kind, with_add):
    """The loss and predict_x0 use the same preconditioning: loss == mean(|predict_x0 + a - x0|^2 / c_out^2), where
    a is the known term ``x0_add`` (0 when not given; x_t always from the true x0) and gradients reach a."""
    den, net = Denoiser(kind), StandInBackbone()
    x0, cond, ctx = _inputs()
    sigma = den.sample_sigma(2, torch.Generator().manual_seed(3))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    gain = torch.tensor(0.3, requires_grad=True)
    add = gain * torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)) if with_add else None
    loss = den.loss(net, x0, cond, ctx, sigma=sigma, noise=noise, x0_add=add)
    sig_bt = sigma[:, None].expand(2, 4)
    x_t = den.add_noise(x0, noise, sig_bt)
    x0_hat = den.predict_x0(net, x_t, sig_bt, cond, ctx) + (0.0 if add is None else add)
    c_out = den.precondition(sig_bt).c_out
    manual = ((x0_hat - x0) ** 2 / c_out ** 2).mean()
    assert torch.allclose(loss, manual, rtol=1e-3, atol=1e-5)
    assert loss.requires_grad
    if with_add:
        assert not torch.allclose(loss, den.loss(net, x0, cond, ctx, sigma=sigma, noise=noise))
        loss.backward()
        assert gain.grad is not None and float(gain.grad.abs()) > 0
        with pytest.raises(NeuralRenderError, match="x0_add shape"):
            den.loss(net, x0, cond, ctx, sigma=sigma, noise=noise, x0_add=add[:, :2])


@pytest.mark.parametrize("kind", ["flow", "edm"])
def test_preconditioning_matches_paper_formulas(kind):
    den = Denoiser(kind, sigma_data=1.0)
    s = torch.tensor([[0.3, 2.0]])
    pre = den.precondition(s)
    if kind == "flow":  # x0 = x_t - s v, timestep 1000 s
        assert torch.allclose(pre.c_out.flatten(), -s.flatten())
        assert torch.allclose(pre.c_skip, torch.ones(1, 2, 1, 1, 1))
        assert torch.allclose(pre.c_noise, 1000 * s)
    else:  # SVD VScaling: c_skip = 1/(s^2+1), c_out = -s/sqrt(s^2+1), c_in = 1/sqrt(s^2+1), c_noise = ln(s)/4
        assert torch.allclose(pre.c_skip.flatten(), 1 / (s.flatten() ** 2 + 1))
        assert torch.allclose(pre.c_out.flatten(), -s.flatten() / torch.sqrt(s.flatten() ** 2 + 1))
        assert torch.allclose(pre.c_in.flatten(), 1 / torch.sqrt(s.flatten() ** 2 + 1))
        assert torch.allclose(pre.c_noise, 0.25 * torch.log(s))


@pytest.mark.parametrize("kind", ["flow", "edm", "x0"])
def test_clean_frames_never_noised_and_never_in_loss(kind):
    den = Denoiser(kind)
    x0, cond, ctx = _inputs()
    clean = torch.tensor([[True, False, False, True], [False, True, False, False]])
    rec = Recorder(StandInBackbone())
    den.loss(rec, x0, cond, ctx, generator=torch.Generator().manual_seed(0), clean_frames=clean)
    call = rec.calls[0]
    c_in0 = den.precondition(torch.zeros(1, 1)).c_in.item()
    # the network sees the clean frames exactly (up to the sigma-0 input scale) at the sigma-0 timestep
    assert torch.equal(call["noisy"][clean], c_in0 * x0[clean])
    assert call["timestep"].shape == (2, 4)
    t_clean = den.precondition(torch.zeros(1, 1)).c_noise.item()
    assert torch.all(call["timestep"][clean] == t_clean) and torch.all(call["timestep"][~clean] != t_clean)
    # the complement form gives the same call
    rec2 = Recorder(StandInBackbone())
    den.loss(rec2, x0, cond, ctx, generator=torch.Generator().manual_seed(0), timestep_mask=~clean)
    assert torch.equal(rec2.calls[0]["noisy"], call["noisy"])

    # never in the loss: changing the network output on clean frames does not change the loss or its gradient
    class FixedOutput(nn.Module):
        def __init__(self, out):
            super().__init__()
            self.out = nn.Parameter(out.clone())

        def forward(self, noisy, timestep, cond=None, context=None, added=None):
            return self.out

    out = torch.randn(SHAPE, generator=torch.Generator().manual_seed(9))
    fixed = FixedOutput(out)
    args = dict(generator=torch.Generator().manual_seed(0), clean_frames=clean)
    loss_a = den.loss(fixed, x0, cond, ctx, **args)
    loss_a.backward()
    assert torch.all(fixed.out.grad[clean] == 0) and torch.any(fixed.out.grad[~clean] != 0)
    out2 = out.clone()
    out2[clean] += 100.0
    loss_b = den.loss(FixedOutput(out2), x0, cond, ctx, generator=torch.Generator().manual_seed(0), clean_frames=clean)
    assert torch.equal(loss_a.detach(), loss_b.detach())


def test_all_frames_clean_gives_zero_loss_with_a_graph():
    x0, cond, ctx = _inputs()
    net = StandInBackbone()
    loss = Denoiser("flow").loss(net, x0, cond, ctx, clean_frames=torch.ones(2, 4, dtype=torch.bool))
    assert float(loss) == 0.0
    loss.backward()
    assert all(p.grad is None or torch.all(p.grad == 0) for p in net.parameters())


def test_loss_mask_restricts_the_loss():
    den = Denoiser("flow")
    x0, cond, ctx = _inputs()
    mask = torch.zeros(2, 4, 1, 6, 6)
    mask[:, 2:, :, :3] = 1.0
    out = nn.Parameter(torch.randn(SHAPE))

    def net(noisy, timestep, cond=None, context=None, added=None):
        return out

    den.loss(net, x0, cond, ctx, generator=torch.Generator().manual_seed(0), loss_mask=mask).backward()
    inside = mask.expand(SHAPE).bool()
    assert torch.all(out.grad[~inside] == 0) and torch.all(out.grad[inside] != 0)
    with pytest.raises(NeuralRenderError):
        den.loss(net, x0, cond, ctx, loss_mask=torch.ones(3, 1, 1, 1, 1))


@pytest.mark.parametrize("kind", ["flow", "edm"])
def test_euler_step_equals_diffusers_scheduler_step(kind):
    from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

    den = Denoiser(kind, shift=3.0)
    if kind == "flow":
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    else:
        sched = EulerDiscreteScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction",
            use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0, timestep_type="continuous",
            interpolation_type="linear", timestep_spacing="leading", steps_offset=1)
    sched.set_timesteps(6)
    sigmas = den.sampling_sigmas(6)
    assert torch.allclose(sigmas, sched.sigmas.float())
    g = torch.Generator().manual_seed(0)
    for i in (0, 2, 5):
        x, out = torch.randn(SHAPE, generator=g) * (1 + float(sigmas[i])), torch.randn(SHAPE, generator=g)
        ours_x0 = den.precondition(sigmas[i].expand(2, 4))
        x0_hat = ours_x0.c_skip * x + ours_x0.c_out * out
        ours = den.step(x, x0_hat, sigmas[i].expand(2, 4), sigmas[i + 1].expand(2, 4))
        sched._step_index = i
        theirs = sched.step(out, sched.timesteps[i], x).prev_sample
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4 * (1 + float(sigmas[i])))


@pytest.mark.parametrize("kind", ["flow", "edm"])
def test_cfg_sampling_equals_manual_combination_with_diffusers(kind):
    """Guided sampling == an independent loop: raw calls, v_u + g (v_c - v_u), diffusers scheduler.step."""
    from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

    den, net = Denoiser(kind, shift=3.0), StandInBackbone()
    _, cond, ctx = _inputs()
    steps, g = 4, 2.5
    ours = den.sample(net, SHAPE, cond, ctx, num_steps=steps, generator=torch.Generator().manual_seed(5),
                      guidance_scale=g)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))
    if kind == "flow":
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    else:
        sched = EulerDiscreteScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, prediction_type="v_prediction",
            use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0, timestep_type="continuous",
            interpolation_type="linear", timestep_spacing="leading", steps_offset=1)
    sched.set_timesteps(steps)
    x = noise * float(sched.sigmas[0])
    with torch.no_grad():
        for t in sched.timesteps:
            inp = sched.scale_model_input(x, t) if kind == "edm" else x
            tb = t.expand(2).float()
            v_c = net(inp, tb, cond, ctx)
            v_u = net(inp, tb, torch.zeros_like(cond), torch.zeros_like(ctx))
            x = sched.step(v_u + g * (v_c - v_u), t, x).prev_sample
    assert torch.allclose(ours, x, rtol=1e-3, atol=1e-3)
    # guidance actually matters
    unguided = den.sample(net, SHAPE, cond, ctx, num_steps=steps, generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(unguided, ours, atol=1e-3)


@pytest.mark.parametrize("kind", ["flow", "edm", "x0"])
def test_sample_keeps_clean_frames_and_calls_callback(kind):
    den = Denoiser(kind)
    x0, cond, ctx = _inputs()
    mask = torch.tensor([[True, False, False, False], [False, False, False, True]])
    rec = Recorder(StandInBackbone())
    seen = []

    def callback(step, x_t):
        seen.append(step)
        return x_t * 0.5  # replacement must be applied (on noisy frames only)

    out = den.sample(rec, SHAPE, cond, ctx, num_steps=3, generator=torch.Generator().manual_seed(0),
                     clean=(x0, mask), callback=callback)
    n = 1 if kind == "x0" else 3
    assert seen == list(range(n)) and len(rec.calls) == n
    assert torch.equal(out[mask], x0[mask])
    c_in0 = den.precondition(torch.zeros(1, 1)).c_in.item()
    t_clean = den.precondition(torch.zeros(1, 1)).c_noise.item()
    for call in rec.calls:
        assert torch.equal(call["noisy"][mask], c_in0 * x0[mask])
        ts = call["timestep"]  # (B,) when all frames share c_noise (edm's last step: sigma_min floors c_noise)
        assert torch.all((ts[:, None].expand(2, 4) if ts.ndim == 1 else ts)[mask] == t_clean)
    plain = den.sample(StandInBackbone(), SHAPE, cond, ctx, num_steps=3, generator=torch.Generator().manual_seed(0),
                       clean=(x0, mask))
    assert not torch.allclose(plain[~mask], out[~mask])  # the callback's replacement changed the result


def test_x0_kind_is_a_single_deterministic_call():
    den = Denoiser("x0", x0_timestep=999)
    _, cond, ctx = _inputs()
    rec = Recorder(StandInBackbone())
    a = den.sample(rec, SHAPE, cond, ctx, num_steps=10, generator=torch.Generator().manual_seed(0))
    b = den.sample(rec, SHAPE, cond, ctx, num_steps=10, generator=torch.Generator().manual_seed(1))
    assert len(rec.calls) == 2 and torch.equal(a, b)
    assert torch.all(rec.calls[0]["noisy"] == 0) and torch.all(rec.calls[0]["timestep"] == 999)
    assert torch.allclose(a, StandInBackbone()(torch.zeros(SHAPE), torch.full((2,), 999.0), cond, ctx))


def test_training_noise_levels():
    g = torch.Generator().manual_seed(0)
    s = Denoiser("flow", shift=1.0, flow_sampling="uniform").sample_sigma(20000, g)
    assert 0 < s.min() and s.max() <= 1 and abs(float(s.mean()) - 0.5) < 0.02
    shifted = Denoiser("flow", shift=3.0, flow_sampling="uniform").sample_sigma(20000, g)
    assert float(shifted.mean()) > float(s.mean()) + 0.1  # shift > 1 moves training towards high noise
    ln_sigma = torch.log(Denoiser("edm", p_mean=0.7, p_std=1.6).sample_sigma(20000, g))
    assert abs(float(ln_sigma.mean()) - 0.7) < 0.05 and abs(float(ln_sigma.std()) - 1.6) < 0.05


def test_drop_condition():
    _, cond, ctx = _inputs()
    c, x, keep = drop_condition(cond, ctx, 0.0)
    assert keep.all() and torch.equal(c, cond) and torch.equal(x, ctx)
    c, x, keep = drop_condition(cond, ctx, 1.0)
    assert not keep.any() and torch.all(c == 0) and torch.all(x == 0)
    big = torch.randn(4000, 1, 1, 1, 1)
    c, _, keep = drop_condition(big, None, 0.3, torch.Generator().manual_seed(0))
    assert abs(1 - float(keep.float().mean()) - 0.3) < 0.03
    assert torch.equal(c[keep], big[keep]) and torch.all(c[~keep] == 0)
    _, _, keep2 = drop_condition(big, None, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(keep, keep2)
    with pytest.raises(NeuralRenderError):
        drop_condition(None, None, 0.1)


def test_config_round_trip_and_bad_input(tmp_path):
    den = Denoiser("edm", p_mean=0.7, p_std=1.6, sigma_max=80.0)
    den.save_pretrained(tmp_path)
    again = Denoiser.from_pretrained(tmp_path)
    assert again.config == den.config
    assert torch.equal(again.sampling_sigmas(5), den.sampling_sigmas(5))
    with pytest.raises(NeuralRenderError):
        Denoiser("ddpm")
    with pytest.raises(NeuralRenderError, match="denoiser_config.json"):
        Denoiser.from_pretrained(tmp_path / "missing")
    (tmp_path / "denoiser_config.json").write_text('{"kind": "flow", "bogus": 1}')
    with pytest.raises(NeuralRenderError):
        Denoiser.from_pretrained(tmp_path)
    with pytest.raises(NeuralRenderError):
        Denoiser("flow").loss(StandInBackbone(), torch.zeros(2, 4, 6, 6), None, None)


def test_flow_sampler_recovers_data_with_an_oracle_network():
    """With the exact v for a single known x0 the sampler must return that x0 (schedule and step consistent)."""
    target = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    for kind in ("flow", "edm"):
        den = Denoiser(kind)

        def oracle(noisy, timestep, cond=None, context=None, added=None, den=den):
            # invert the preconditioning: find F such that c_skip x_t + c_out F = target
            ts = timestep[:, None].expand(2, 4)
            sigma = ts / 1000.0 if den.kind == "flow" else torch.exp(4 * ts)
            pre = den.precondition(sigma)
            x_t = noisy / pre.c_in
            return (target - pre.c_skip * x_t) / pre.c_out

        out = den.sample(oracle, SHAPE, num_steps=5, generator=torch.Generator().manual_seed(0), device="cpu")
        assert torch.allclose(out, target, atol=1e-3 * (1 if kind == "flow" else 10)), kind
        assert math.isfinite(float(out.abs().max()))
