"""Forward and reverse diffusion math held against closed forms."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from surgdiff.diffusion import (NoiseSchedule, ddpm_sample, ddpm_step, gaussian_ideal_eps, posterior_mean_variance,
                                predict_x0_eps, q_sample, sample_noise_level, v_from_x0_eps)

SCHEDULES = ["linear-2000", "linear-1000", "cosine"]


@pytest.mark.parametrize("name", SCHEDULES)
def test_schedule_shapes_and_monotone(name):
    s = NoiseSchedule.from_name(name)
    assert s.betas.dtype == torch.float64 and len(s.alpha_bar) == s.T
    assert (s.alpha_bar[1:] < s.alpha_bar[:-1]).all()
    assert torch.allclose(s.alphas, 1 - s.betas) and torch.allclose(s.alpha_bar, torch.cumprod(s.alphas, 0))
    assert torch.allclose(s.snr, s.alpha_bar / (1 - s.alpha_bar))
    assert (s.log_snr[1:] < s.log_snr[:-1]).all()


def test_schedule_presets_match_papers():
    sr3 = NoiseSchedule.linear()
    assert sr3.T == 2000 and math.isclose(sr3.betas[0], 1e-6) and math.isclose(sr3.betas[-1], 1e-2)
    ddpm = NoiseSchedule.from_name("linear-1000")
    assert ddpm.T == 1000 and math.isclose(ddpm.betas[0], 1e-4) and math.isclose(ddpm.betas[-1], 0.02)
    cos = NoiseSchedule.cosine(1000)
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
    assert math.isclose(float(cos.alpha_bar[499]), f(500) / f(0), rel_tol=1e-9)
    assert float(cos.betas.max()) == pytest.approx(0.999)


def test_schedule_bad_input():
    with pytest.raises(ValueError, match="unknown schedule 'linear-5'"):
        NoiseSchedule.from_name("linear-5")
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        NoiseSchedule(torch.tensor([0.1, 1.5]))


@pytest.mark.parametrize("ab", [0.999, 0.5, 0.02])
def test_q_sample_moments(ab):
    g = torch.Generator().manual_seed(1)
    n = 100_000
    x0 = torch.tensor([-1.0, 0.0, 0.7], dtype=torch.float64).expand(n, 3)
    xt = q_sample(x0, torch.full((n,), ab, dtype=torch.float64), torch.randn(n, 3, generator=g, dtype=torch.float64))
    assert torch.allclose(xt.mean(0), math.sqrt(ab) * x0[0], atol=5 * math.sqrt((1 - ab) / n))
    assert torch.allclose(xt.var(0), torch.full((3,), 1 - ab, dtype=torch.float64), atol=5 * (1 - ab) * math.sqrt(2 / n))


def test_noise_level_in_bracket_and_seeded():
    s = NoiseSchedule.linear(100, 1e-4, 0.05)
    for mode in ["alpha_bar", "sqrt_alpha_bar"]:
        t, ab = sample_noise_level(s, 5000, torch.Generator().manual_seed(0), uniform_in=mode)
        assert ((ab >= s.alpha_bar[t].float() - 1e-7) & (ab <= s.alpha_bar_prev[t].float() + 1e-7)).all()
        assert set(t.tolist()) == set(range(100))
    a = sample_noise_level(s, 10, torch.Generator().manual_seed(5))
    b = sample_noise_level(s, 10, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@settings(max_examples=40, deadline=None)
@given(ab=st.floats(1e-4, 0.9999), seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["eps", "x0", "v"]))
def test_prediction_conversions_round_trip(ab, seed, kind):
    g = torch.Generator().manual_seed(seed)
    x0, eps = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64), torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    abt = torch.full((2,), ab, dtype=torch.float64)
    xt = q_sample(x0, abt, eps)
    out = {"eps": eps, "x0": x0, "v": v_from_x0_eps(x0, eps, abt)}[kind]
    x0h, epsh = predict_x0_eps(xt, out, abt, kind)
    # x0 from eps divides by sqrt(ab): allow for that amplification of rounding error
    assert torch.allclose(x0h, x0, atol=1e-8 / math.sqrt(ab)) and torch.allclose(epsh, eps, atol=1e-8 / math.sqrt(1 - ab))


def test_prediction_kind_checked():
    with pytest.raises(ValueError, match="'score'"):
        predict_x0_eps(torch.zeros(1, 1), torch.zeros(1, 1), 0.5, "score")


@pytest.mark.parametrize("t", [0, 3, 250, 999])
def test_posterior_mean_equals_eps_form(t):
    s = NoiseSchedule.linear(1000, 1e-4, 0.02)
    g = torch.Generator().manual_seed(t)
    x0, eps = torch.randn(3, 5, generator=g, dtype=torch.float64), torch.randn(3, 5, generator=g, dtype=torch.float64)
    xt = q_sample(x0, s.alpha_bar[t], eps)
    mean, var = posterior_mean_variance(s, xt, x0, t)
    want = (xt - s.betas[t] / (1 - s.alpha_bar[t]).sqrt() * eps) / s.alphas[t].sqrt()
    assert torch.allclose(mean, want, atol=1e-10)
    ab_prev = 1.0 if t == 0 else float(s.alpha_bar[t - 1])
    assert var == pytest.approx((1 - ab_prev) / (1 - float(s.alpha_bar[t])) * float(s.betas[t]))
    assert posterior_mean_variance(s, xt, x0, t, "fixed_large")[1] == pytest.approx(float(s.betas[t]))


def test_posterior_is_exact_bayes_for_two_steps():
    "Monte Carlo: x_{t-1} drawn from the forward process, conditioned on x_t, has the posterior's moments."
    s = NoiseSchedule.linear(10, 0.05, 0.3)
    t, x0, n = 6, 0.4, 400_000
    g = torch.Generator().manual_seed(0)
    x_prev = q_sample(torch.full((n,), x0, dtype=torch.float64), s.alpha_bar[t - 1], torch.randn(n, generator=g, dtype=torch.float64))
    x_t = s.alphas[t].sqrt() * x_prev + s.betas[t].sqrt() * torch.randn(n, generator=g, dtype=torch.float64)
    # linear regression of x_prev on x_t recovers the posterior mean's coefficient and the posterior variance
    cov = torch.cov(torch.stack([x_prev, x_t]))
    slope = cov[0, 1] / cov[1, 1]
    resid_var = cov[0, 0] - slope * cov[0, 1]
    mean_at_1, var = posterior_mean_variance(s, torch.tensor(1.0, dtype=torch.float64), torch.tensor(x0, dtype=torch.float64), t)
    mean_at_0, _ = posterior_mean_variance(s, torch.tensor(0.0, dtype=torch.float64), torch.tensor(x0, dtype=torch.float64), t)
    assert float(slope) == pytest.approx(float(mean_at_1 - mean_at_0), abs=0.01)
    assert float(resid_var) == pytest.approx(var, rel=0.02)


@pytest.mark.parametrize("name", ["linear-1000", "cosine"])
def test_ddpm_sampler_reproduces_gaussian(name):
    mu, sd, n = -0.2, 0.6, 3000
    s = NoiseSchedule.from_name(name)
    x = ddpm_sample(gaussian_ideal_eps(mu, sd), (n, 1), s, generator=torch.Generator().manual_seed(0), progress=False)
    assert abs(float(x.mean()) - mu) < 4 * sd / math.sqrt(n)
    assert abs(float(x.std()) - sd) < 4 * sd / math.sqrt(2 * n)


def test_ddpm_sampler_seeded_and_trajectory():
    s = NoiseSchedule.linear(50, 1e-3, 0.2)
    kw = dict(generator=None, progress=False, return_trajectory=True)
    a, ta = ddpm_sample(gaussian_ideal_eps(0, 1), (4, 3, 8, 8), s, **{**kw, "generator": torch.Generator().manual_seed(3)})
    b, _ = ddpm_sample(gaussian_ideal_eps(0, 1), (4, 3, 8, 8), s, **{**kw, "generator": torch.Generator().manual_seed(3)})
    c, _ = ddpm_sample(gaussian_ideal_eps(0, 1), (4, 3, 8, 8), s, **{**kw, "generator": torch.Generator().manual_seed(4)})
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(ta) == 50 and ta.t == list(range(49, -1, -1)) and ta.x_t[0].shape == (4, 3, 8, 8)
    assert ta.alpha_bar[0] == pytest.approx(float(s.alpha_bar[-1]))


def test_ddpm_step_last_step_is_the_mean():
    s = NoiseSchedule.linear(20, 1e-3, 0.2)
    x = torch.randn(2, 3)
    out = torch.randn(2, 3)
    prev, x0 = ddpm_step(s, x, out, 0, noise=torch.randn(2, 3))
    assert torch.allclose(prev, x0)  # at t=0 the posterior mean is x0 itself and the variance is zero
