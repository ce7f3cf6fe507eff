"""Tests of surgdiff.samplers: spacings, landings, DDIM/DDPM/DPM-Solver++ exactness, guidance, inversion.

diffusers is a test-only dependency here: it is the reference for the timestep sequences and for
the previous-step rule that surgdiff deliberately does not copy.
"""
import math

import pytest
import torch
from diffusers import DDIMScheduler

from surgdiff.diffusion import (NoiseSchedule, ddpm_sample, ddpm_step, gaussian_ideal_eps, predict_x0_eps, q_sample,
                                v_from_x0_eps)
from surgdiff.samplers import (SAMPLERS, SPACINGS, ddim_invert, ddim_sigma, ddim_step, dpmpp_2m, dpmpp_2m_step,
                               drop_labels, gaussian_ode_solution, guided_model, null_label_like, predict_x0_eps_f64,
                               sample, step_levels, timesteps)

L1000 = NoiseSchedule.from_name("linear-1000")
MU, SD = 0.3, 0.5


def scalar_noise(n=4000, seed=0):
    "n scalar samples laid out as the pixels of one image (one noise level per image keeps this cheap)."
    return torch.randn(1, 1, n, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def ode_error(sampler, steps, spacing="trailing", schedule=L1000, x_T=None):
    x_T = scalar_noise() if x_T is None else x_T
    x, traj = sample(gaussian_ideal_eps(MU, SD), None, sampler, steps, spacing=spacing, schedule=schedule, x_T=x_T,
                     return_trajectory=True, progress=False)
    return float((x - gaussian_ode_solution(x_T, traj.alpha_bar[0], MU, SD)).abs().mean())


# ---------------------------------------------------------------- spacings
HAND = {(10, 4): {"leading": [6, 4, 2, 0], "trailing": [9, 7, 4, 1], "linspace": [9, 6, 3, 0]},
        (10, 3): {"leading": [6, 3, 0], "trailing": [9, 6, 2], "linspace": [9, 4, 0]},
        (1000, 10): {"leading": list(range(900, -1, -100)), "trailing": list(range(999, 0, -100)),
                     "linspace": list(range(999, -1, -111))},
        (2000, 4): {"leading": [1500, 1000, 500, 0], "trailing": [1999, 1499, 999, 499], "linspace": [1999, 1333, 666, 0]}}


@pytest.mark.parametrize("key", list(HAND))
def test_spacings_hand_worked(key):
    for spacing, expected in HAND[key].items():
        assert timesteps(*key, spacing).tolist() == expected, (key, spacing)


def diffusers_timesteps(T, steps, spacing):
    sch = DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=0)
    sch.set_timesteps(steps)
    return sch.timesteps.tolist()


@pytest.mark.parametrize("spacing", SPACINGS)
def test_spacings_match_diffusers(spacing):
    overshoots = 0
    for T in list(range(1, 41)) + [1000, 2000]:
        sch = DDIMScheduler(num_train_timesteps=T, timestep_spacing=spacing, steps_offset=0)
        for steps in range(1, T + 1):
            sch.set_timesteps(steps)
            ref, ours = sch.timesteps.tolist(), timesteps(T, steps, spacing).tolist()
            if len(ref) == steps + 1:   # diffusers' float arange overshoots by one element, always -1
                assert spacing == "trailing" and ref[-1] == -1, (T, steps, ref)
                ref, overshoots = ref[:-1], overshoots + 1
            assert ours == ref, (T, steps, spacing)
            assert len(ours) == steps and min(ours) >= 0 and max(ours) <= T - 1
            assert all(a > b for a, b in zip(ours, ours[1:]))
    assert (overshoots > 0) == (spacing == "trailing")
    if spacing == "trailing":
        assert len(diffusers_timesteps(1000, 61, "trailing")) == 62 and len(timesteps(1000, 61, "trailing")) == 61


def test_logsnr_levels():
    s = NoiseSchedule.from_name("linear-2000")
    t, ab, ab_prev = step_levels(s, 12, "logsnr")
    lsnr = torch.log(ab / (1 - ab))
    assert torch.allclose(lsnr.diff(), lsnr.diff().mean().expand(11))
    assert torch.allclose(lsnr[[0, -1]], s.log_snr[[-1, 0]]) and t[0] == 1999 and t[-1] == 0
    assert ab_prev[-1] == 1 and torch.equal(ab_prev[:-1], ab[1:])


# ---------------------------------------------------------------- previous-step rule
def exact_path(x_T, ab_T, ab, mu=MU, sd=SD):
    "The exact probability-flow ODE path through x_T (level ab_T), at level ab, for N(mu, sd²) data."
    z = (x_T - math.sqrt(ab_T) * mu) / math.sqrt(ab_T * sd ** 2 + 1 - ab_T)
    return math.sqrt(ab) * mu + math.sqrt(ab * sd ** 2 + 1 - ab) * z


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("steps", [7, 10, 30, 61, 600])
def test_each_step_lands_on_the_next_timestep(spacing, steps):
    t, ab, ab_prev = step_levels(L1000, steps, spacing)
    assert torch.equal(ab, L1000.alpha_bar[timesteps(1000, steps, spacing)])
    assert torch.equal(ab_prev[:-1], L1000.alpha_bar[t[1:]]) and ab_prev[-1] == 1
    # Outcome: every step's input lies on the exact ODE path at the level the network is told (first-order error).
    x_T = scalar_noise(1000)
    x, traj = sample(gaussian_ideal_eps(MU, SD), None, "ddim", steps, spacing=spacing, schedule=L1000, x_T=x_T,
                     return_trajectory=True, progress=False)
    assert traj.t == t.tolist() and traj.alpha_bar == ab.tolist()
    errs = [float((xt.double() - exact_path(x_T, ab[0], a)).abs().mean()) for xt, a in zip(traj.x_t, ab.tolist())]
    errs.append(float((x - exact_path(x_T, ab[0], 1.0)).abs().mean()))
    assert max(errs) < 1.5 / steps, (max(errs), steps)


def diffusers_ddim(model, x_T, schedule, steps, spacing):
    sch = DDIMScheduler(num_train_timesteps=schedule.T, timestep_spacing=spacing, steps_offset=0, clip_sample=False,
                        set_alpha_to_one=True)
    sch.alphas_cumprod = schedule.alpha_bar.clone()   # float64, the same levels as surgdiff
    sch.set_timesteps(steps)
    x = x_T
    for t in sch.timesteps:
        x = sch.step(model(x, sch.alphas_cumprod[t].reshape(1), None), t, x).prev_sample
    return x


def wrong_prev_emulation(model, x_T, schedule, steps, spacing):
    "The notebook's `ddim_wrong_prev`: land on t - T//steps (clean when negative)."
    x = x_T
    for t in timesteps(schedule.T, steps, spacing).tolist():
        prev = t - schedule.T // steps
        ab, ab_prev = float(schedule.alpha_bar[t]), float(schedule.alpha_bar[prev]) if prev >= 0 else 1.0
        x, _ = ddim_step(x, model(x, torch.full((1,), ab, dtype=x.dtype), None), ab, ab_prev)
    return x


@pytest.mark.parametrize("spacing,steps", [("linspace", 10), ("linspace", 600), ("trailing", 7), ("trailing", 600),
                                           ("leading", 10), ("leading", 600)])
def test_diffusers_previous_step_rule(spacing, steps):
    ideal, x_T = gaussian_ideal_eps(MU, SD), scalar_noise(1000)
    ref = diffusers_ddim(ideal, x_T, L1000, steps, spacing)
    assert torch.allclose(ref, wrong_prev_emulation(ideal, x_T, L1000, steps, spacing), atol=1e-9)
    ours = sample(ideal, None, "ddim", steps, spacing=spacing, schedule=L1000, x_T=x_T, progress=False)
    exact = exact_path(x_T, L1000.alpha_bar[timesteps(1000, steps, spacing)[0]], 1.0)
    if spacing == "leading":
        assert torch.allclose(ours, ref, atol=1e-9)   # t - T//steps is right for leading
    elif steps == 600:   # T/steps = 1.67 but diffusers moves by 1: noise is left in the samples
        assert (ref - exact).abs().mean() > 0.1 > 20 * (ours - exact).abs().mean()
        assert ref.std() > 0.6 > SD > ours.std() > 0.49


# ---------------------------------------------------------------- the DDIM step
@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_eta_one_is_the_ddpm_posterior(prediction):
    g = torch.Generator().manual_seed(0)
    x0, eps, z = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    for t in [0, 1, 5, 250, 998, 999]:
        ab, ab_prev = L1000.alpha_bar[t], L1000.alpha_bar_prev[t]
        beta_tilde = float((1 - ab_prev) / (1 - ab) * L1000.betas[t])
        assert math.isclose(ddim_sigma(ab, ab_prev, 1.0) ** 2, beta_tilde, rel_tol=1e-9, abs_tol=1e-300)
        xt = q_sample(x0, ab, eps)
        out = {"eps": eps, "x0": x0, "v": v_from_x0_eps(x0, eps, ab)}[prediction]
        got, _ = ddim_step(xt, out, ab, ab_prev, eta=1.0, noise=z, prediction=prediction)
        want, _ = ddpm_step(L1000, xt, out, t, noise=z, prediction=prediction)
        assert torch.allclose(got, want, atol=1e-9), t


def test_ddim_step_details():
    g = torch.Generator().manual_seed(1)
    x0, eps = (torch.randn(3, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(2))
    ab, ab_prev = 0.3, 0.6
    xt = q_sample(x0, ab, eps)
    x_prev, x0_hat = ddim_step(xt, eps, ab, ab_prev)   # exact ε: lands exactly on q_sample at the new level
    assert torch.allclose(x_prev, q_sample(x0, ab_prev, eps)) and torch.allclose(x0_hat, x0)
    last, x0_hat = ddim_step(xt, eps, ab, 1.0, eta=1.0)
    assert torch.equal(last, x0_hat)
    xc, ec = predict_x0_eps_f64(xt, eps * 5, ab, clip=1.0)   # clipping keeps x̂0 and ε̂ consistent
    assert xc.abs().max() <= 1 and torch.allclose(q_sample(xc, ab, ec), xt)
    for kind, out in [("eps", eps), ("x0", x0), ("v", v_from_x0_eps(x0, eps, ab))]:
        for a, b in zip(predict_x0_eps_f64(xt, out, ab, kind), predict_x0_eps(xt, out, ab, kind)):
            assert torch.allclose(a, b, atol=1e-10), kind
    # per-example levels: the same as one call per example
    abs_t, abs_p = torch.tensor([0.2, 0.5, 0.9], dtype=torch.float64), torch.tensor([0.4, 0.8, 1.0], dtype=torch.float64)
    z = torch.randn(xt.shape, generator=g, dtype=torch.float64)
    batched, _ = ddim_step(xt, eps, abs_t, abs_p, eta=0.7, noise=z)
    single = torch.cat([ddim_step(xt[i:i + 1], eps[i:i + 1], float(abs_t[i]), float(abs_p[i]), 0.7, z[i:i + 1])[0]
                        for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-12)
    hist = (x0 * 0.9, torch.tensor([0.1, 0.3, 0.8], dtype=torch.float64))
    batched, _ = dpmpp_2m_step(xt, eps, abs_t, abs_p, hist)
    single = torch.cat([dpmpp_2m_step(xt[i:i + 1], eps[i:i + 1], float(abs_t[i]), float(abs_p[i]),
                                      (hist[0][i:i + 1], float(hist[1][i])))[0] for i in range(3)])
    assert torch.allclose(batched, single, atol=1e-12)


def test_float32_coefficients_are_computed_in_float64():
    s = NoiseSchedule.from_name("linear-2000")   # 1 - ᾱ_0 = 1e-6: float32 holds it to a few percent only
    g = torch.Generator().manual_seed(2)
    x0, eps = (torch.randn(1, 3, 16, 16, generator=g, dtype=torch.float64) for _ in range(2))
    ab, ab_prev = s.alpha_bar[1], s.alpha_bar[0]
    xt = q_sample(x0, ab, eps)
    want, _ = ddim_step(xt, eps, ab, ab_prev)
    got, _ = ddim_step(xt.float(), eps.float(), ab, ab_prev)
    a32, ap32 = ab.float(), ab_prev.float()   # the same step with the levels rounded to float32 first
    naive = ap32.sqrt() * (xt.float() - (1 - a32).sqrt() * eps.float()) / a32.sqrt() + (1 - ap32).sqrt() * eps.float()
    err, naive_err = (got.double() - want).abs().max(), (naive.double() - want).abs().max()
    assert got.dtype == torch.float32 and err < 1e-6 and err < naive_err / 10, (err, naive_err)
    assert ddim_step(xt.bfloat16(), eps.bfloat16(), ab, ab_prev)[0].dtype == torch.bfloat16


def test_sample_ddpm_with_all_steps_is_notebook_02():
    a = ddpm_sample(gaussian_ideal_eps(MU, SD), (8, 1, 4, 4), L1000, generator=torch.Generator().manual_seed(1),
                    progress=False)
    b = sample(gaussian_ideal_eps(MU, SD), None, "ddpm", 1000, schedule=L1000, shape=(8, 1, 4, 4),
               generator=torch.Generator().manual_seed(1), progress=False)
    assert torch.allclose(a, b, atol=1e-4)


# ---------------------------------------------------------------- accuracy with the ideal denoiser
def test_ddim_is_first_order_and_exact_in_the_limit():
    e = [ode_error("ddim", n) for n in (10, 20, 40)]
    assert all(1.6 < a / b < 2.4 for a, b in zip(e, e[1:])), e
    assert 0.08 < e[0] < 0.13 and e[-1] < 0.035


def test_dpmpp_2m_accuracy():
    e10, e20 = ode_error("dpmpp_2m", 10), ode_error("dpmpp_2m", 20)
    assert e10 < 0.09 and e20 < 0.025 and e10 / e20 > 3, (e10, e20)
    assert e10 < 0.8 * ode_error("ddim", 10)
    assert ode_error("dpmpp_2m", 10, "logsnr") < 0.02   # ≤ 10 steps: as good as DDIM with 80
    assert torch.equal(dpmpp_2m(gaussian_ideal_eps(MU, SD), None, x_T=scalar_noise(), schedule=L1000, progress=False),
                       sample(gaussian_ideal_eps(MU, SD), None, "dpmpp_2m", 10, spacing="logsnr", schedule=L1000,
                              x_T=scalar_noise(), progress=False))


def test_dpmpp_first_step_is_ddim_and_constant_x0_is_exact():
    g = torch.Generator().manual_seed(3)
    x0, eps = (torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(2))
    ab, abp, abl = 0.2, 0.5, 0.05
    xt = q_sample(x0, ab, eps)
    assert torch.allclose(dpmpp_2m_step(xt, eps, ab, abp)[0], ddim_step(xt, eps, ab, abp)[0], atol=1e-12)
    assert torch.allclose(dpmpp_2m_step(xt, eps, ab, abp, (x0, abl))[0], q_sample(x0, abp, eps), atol=1e-12)
    assert torch.equal(*dpmpp_2m_step(xt, eps, ab, 1.0, (x0 * 0, abl)))


def test_stochastic_samplers_match_the_data():
    n = 20_000
    for sampler, kw, seed in [("ddpm", {}, 4), ("ddim", {"eta": 1.0}, 5)]:
        x = sample(gaussian_ideal_eps(MU, SD), None, sampler, 1000, schedule=L1000, shape=(1, 1, n, 1),
                   generator=torch.Generator().manual_seed(seed), dtype=torch.float64, progress=False, **kw)
        # sampling error (4 standard errors) plus the 1000-step sampler's own bias (std 0.4961, computed exactly)
        assert abs(float(x.mean()) - MU) < 4 * SD / math.sqrt(n)
        assert abs(float(x.std()) - SD) < 4 * SD / math.sqrt(2 * n) + 0.004


# ---------------------------------------------------------------- the entry point
class Counting:
    def __init__(self):
        self.batches, self.model = [], gaussian_ideal_eps(MU, SD)

    def __call__(self, x, ab, label):
        assert ab.shape == (len(x),) and label is not None and label.shape[0] == len(x)
        self.batches.append(len(x))
        return self.model(x, ab, label)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("guidance", [1.0, 0.0, 3.0])
def test_network_calls_equal_steps(sampler, guidance):
    m, lab = Counting(), torch.zeros(2, 8, 8, dtype=torch.long)
    x, traj = sample(m, lab, sampler, steps=9, guidance=guidance, return_trajectory=True, progress=False,
                     generator=torch.Generator().manual_seed(0))
    assert len(m.batches) == 9 == len(traj) == len(traj.x0) == len(traj.x_t)
    assert set(m.batches) == {2 if guidance == 1 else 4}
    assert x.shape == (2, 3, 8, 8) and x.dtype == torch.float32 and torch.equal(traj.x0[-1], x)


def label_toy(x, ab, label):
    "A denoiser that depends on the label map: ideal for N(0.3 + 0.1·mean id, 0.5²), N(-0.5, 0.3²) for the null map."
    null = (label == 255).flatten(1).all(1).view(-1, 1, 1, 1)
    mu = 0.3 + 0.1 * label.float().mean((1, 2)).view(-1, 1, 1, 1).to(x.dtype)
    return torch.where(null, gaussian_ideal_eps(-0.5, 0.3)(x, ab, None), gaussian_ideal_eps(mu, 0.5)(x, ab, None))


def test_guidance():
    lab = torch.randint(0, 5, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    x_T = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    run = lambda model, label, g: sample(model, label, "ddim", 12, guidance=g, x_T=x_T, progress=False)
    plain = run(label_toy, lab, 1.0)
    assert torch.allclose(run(guided_model(label_toy, 1.0), lab, 1.0), plain, atol=1e-12)   # batched path, s = 1
    assert torch.allclose(run(label_toy, lab, 0.0), run(label_toy, null_label_like(lab), 1.0), atol=1e-12)
    s2 = run(label_toy, lab, 2.0)
    uncond = run(label_toy, null_label_like(lab), 1.0)
    assert ((s2 - uncond).mean() > (plain - uncond).mean() > 0)   # s > 1 extrapolates past the conditional
    with pytest.raises(ValueError, match="label"):
        sample(label_toy, None, shape=(1, 3, 8, 8), guidance=2.0, progress=False)


def test_drop_labels():
    lab = torch.randint(0, 8, (5000, 3, 3), generator=torch.Generator().manual_seed(0))
    out = drop_labels(lab, 0.15, torch.Generator().manual_seed(1))
    null, same = (out == 255).flatten(1).all(1), (out == lab).flatten(1).all(1)
    assert (null | same).all() and abs(float(null.float().mean()) - 0.15) < 4 * math.sqrt(0.15 * 0.85 / 5000)
    assert torch.equal(out, drop_labels(lab, 0.15, torch.Generator().manual_seed(1))) and out.dtype == lab.dtype
    with pytest.raises(ValueError, match="1.5"):
        drop_labels(lab, 1.5)


@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 0.5), ("ddpm", 0.0), ("dpmpp_2m", 0.0)])
def test_determinism_under_seed(sampler, eta):
    lab = torch.zeros(2, 8, 8, dtype=torch.long)
    run = lambda seed: sample(Counting(), lab, sampler, 6, eta=eta, generator=torch.Generator().manual_seed(seed),
                              progress=False)
    assert torch.equal(run(7), run(7)) and not torch.equal(run(7), run(8))


def test_inversion_round_trip():
    mu = torch.linspace(-0.8, 0.8, 3 * 16 * 16, dtype=torch.float64).view(1, 3, 16, 16)
    ideal, calls = gaussian_ideal_eps(mu, 0.25), []
    model = lambda x, ab, label: calls.append(1) or ideal(x, ab, label)
    x0 = mu + 0.25 * torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = NoiseSchedule.from_name("linear-2000")
    err = {}
    for refine in (0, 2):
        for n in (10, 20, 40):
            calls.clear()
            xT = ddim_invert(model, x0, steps=n, schedule=s, refine=refine, progress=False)
            assert len(calls) == n * (1 + refine)
            back = sample(ideal, None, "ddim", n, schedule=s, x_T=xT, progress=False)
            err[refine, n] = float((back - x0).abs().mean())
    assert err[0, 10] > 1.5 * err[0, 20] > 2.25 * err[0, 40], err
    assert all(err[2, n] < 0.1 * err[0, n] for n in (20, 40)), err


@pytest.mark.parametrize("kwargs,word", [(dict(sampler="euler"), "'euler'"), (dict(spacing="uniform"), "'uniform'"),
                                         (dict(steps=2001), "2001"), (dict(steps=0), "0"), (dict(steps=-3), "-3"),
                                         (dict(steps=2.5), "2.5"), (dict(eta=0.5, sampler="dpmpp_2m"), "0.5"),
                                         (dict(guidance=float("nan")), "nan")])
def test_bad_arguments_name_the_value(kwargs, word):
    with pytest.raises(ValueError) as err:
        sample(Counting(), torch.zeros(1, 8, 8, dtype=torch.long), **{"progress": False, **kwargs})
    assert word in str(err.value)


def test_bad_arguments_low_level():
    for call, word in [(lambda: timesteps(10, 11, "trailing"), "11"), (lambda: timesteps(10, 0, "leading"), "0"),
                       (lambda: timesteps(10, 3, "cosine"), "'cosine'"),
                       (lambda: ddim_step(torch.zeros(1), torch.zeros(1), 0.5, 0.6, eta=-1), "-1"),
                       (lambda: ddim_step(torch.zeros(1), torch.zeros(1), 0.5, 0.6, prediction="score"), "'score'"),
                       (lambda: sample(Counting(), torch.zeros(1, 2, 8, 8, dtype=torch.long), progress=False), "(1, 2, 8, 8)"),
                       (lambda: sample(Counting(), None, progress=False), "shape")]:
        with pytest.raises(ValueError) as err:
            call()
        assert word in str(err.value)


def test_default_schedule_and_prediction_come_from_the_model():
    seen = []

    class WithSchedule:
        schedule, prediction = NoiseSchedule.linear(50, 1e-3, 0.05), "x0"

        def __call__(self, x, ab, label):
            seen.append(float(ab[0]))
            return torch.zeros_like(x)   # x0-prediction of zero

    x = sample(WithSchedule(), torch.zeros(1, 4, 4, dtype=torch.long), steps=5, progress=False)
    assert seen[0] == pytest.approx(float(WithSchedule.schedule.alpha_bar[-1]), rel=1e-6)
    assert x.abs().max() == 0   # x0 prediction honoured: the last step returns x̂0 = 0
    seen.clear()
    plain = lambda x, ab, label: seen.append(float(ab[0])) or torch.zeros_like(x)
    sample(plain, None, steps=4, shape=(1, 3, 4, 4), progress=False)   # no schedule: the thesis's linear-2000
    assert seen[0] == pytest.approx(float(NoiseSchedule.from_name("linear-2000").alpha_bar[-1]), rel=1e-6)


def test_schedule_by_name_and_half_precision_levels():
    seen = []
    model = lambda x, ab, label: seen.append((ab.dtype, float(ab[0]))) or torch.zeros_like(x)
    x = sample(model, None, steps=3, shape=(1, 3, 4, 4), schedule="linear-1000", dtype=torch.bfloat16, progress=False)
    assert x.dtype == torch.bfloat16 and seen[0][0] == torch.float32   # bf16 would round ᾱ near 1 to 1
    assert seen[0][1] == pytest.approx(float(L1000.alpha_bar[-1]), rel=1e-6)
    with pytest.raises(ValueError, match="cosine-5"):
        sample(model, None, steps=3, shape=(1, 3, 4, 4), schedule="cosine-5", progress=False)


def test_half_precision_draws_the_same_noise_as_float32():
    zero = lambda x, ab, label: torch.zeros_like(x)
    runs = {dt: sample(zero, None, steps=2, shape=(2, 3, 8, 8), dtype=dt, return_trajectory=True, progress=False,
                       generator=torch.Generator().manual_seed(0))[1].x_t[0] for dt in (torch.float32, torch.bfloat16)}
    assert torch.equal(runs[torch.bfloat16], runs[torch.float32].bfloat16().float())
