"""Sampler plumbing: shapes, NFE, the time grid, dt, reproducibility, errors."""

import itertools

import pytest
import torch

import sdes

B, K, L, N = 2, 3, 16, 4
EPS = 0.03


def make_sde(k=K):
    return sdes.MixSDE(k, 2.0, 0.05, 0.5, 30)


def shrink(x, t, mix):
    return -x


def mixture(b=B, length=L, seed=0):
    return torch.randn(b, 1, length, generator=torch.Generator().manual_seed(seed))


def expected_nfe(predictor, corrector, corrector_steps, final_step, n=N):
    per_step = (predictor != "none") + (corrector != "none") * corrector_steps
    return n * per_step + int(final_step)


@pytest.mark.parametrize(
    "predictor, corrector, schedule",
    list(itertools.product(sdes.PREDICTORS, sdes.CORRECTORS, sdes.SCHEDULES)),
)
def test_every_combination_runs_with_the_right_nfe(predictor, corrector, schedule):
    sde, y = make_sde(), mixture()
    for final_step, corrector_steps in [(False, 1), (True, 2)]:
        sampler = sdes.get_pc_sampler(predictor, corrector, sde, shrink, y, N=N,
                                      corrector_steps=corrector_steps, schedule=schedule,
                                      final_step=final_step)
        x, nfe = sampler()
        assert x.shape == (B, K, L) and x.dtype == y.dtype
        assert torch.isfinite(x).all()
        assert nfe == expected_nfe(predictor, corrector, corrector_steps, final_step)


def test_reference_nfe_and_default_n():
    sde, y = make_sde(), mixture()
    _, nfe = sdes.get_pc_sampler("reverse_diffusion", "ald2", sde, shrink, y)()
    assert nfe == 60  # N (1 + corrector_steps) with N = sde.N = 30
    _, nfe = sdes.get_pc_sampler("reverse_diffusion", "ald2", sde, shrink, y, final_step=True)()
    assert nfe == 61
    _, nfe = sdes.get_ode_sampler(sde, shrink, y)()
    assert nfe == 60  # Heun: two evaluations per step
    _, nfe = sdes.get_ode_sampler(sde, shrink, y, N=7, final_step=True)()
    assert nfe == 15


@pytest.mark.parametrize("schedule", sdes.SCHEDULES)
def test_time_grid_spans_exactly_eps_to_T(schedule):
    ts = sdes.get_time_grid(schedule, 25, 1.0, EPS)
    assert ts.shape == (26,) and ts.dtype == torch.float64
    assert ts[0] == 1.0 and ts[-1] == EPS
    steps = ts[:-1] - ts[1:]
    assert torch.all(steps > 0)
    if schedule == "linear":
        torch.testing.assert_close(steps, torch.full_like(steps, (1.0 - EPS) / 25))
    elif schedule == "log":  # equal steps in log t: fine near eps
        torch.testing.assert_close(ts[1:] / ts[:-1], torch.full_like(steps, EPS ** (1 / 25)))
        assert steps[-1] < steps[0] / 10
    else:  # revlog: fine near T
        assert steps[0] < steps[-1] / 10


def test_time_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="schedule"):
        sdes.get_time_grid("cosine", 10)
    with pytest.raises(ValueError, match="eps"):
        sdes.get_time_grid("linear", 10, 1.0, 0.0)
    with pytest.raises(ValueError, match="N must"):
        sdes.get_time_grid("linear", 0)


class ConstantDriftSDE(sdes.MixSDE):
    """dx = 1 dt, no noise: with a zero score every reverse step subtracts exactly dt."""

    def sde(self, x, t, mix):
        return torch.ones_like(x), torch.zeros_like(x[:, :1, :1])


@pytest.mark.parametrize("schedule", sdes.SCHEDULES)
@pytest.mark.parametrize("sampler_kind", ["reverse_diffusion", "euler_maruyama", "ode"])
def test_steps_use_the_grid_spacing_and_cover_T_minus_eps(schedule, sampler_kind):
    sde, y = ConstantDriftSDE(K, 2.0, 0.05, 0.5, 30), mixture(length=4)
    times = []

    def zero_score(x, t, mix):
        assert t.shape == (B,) and torch.all(t == t[0])
        times.append(float(t[0]))
        return torch.zeros_like(x)

    if sampler_kind == "ode":
        sampler = sdes.get_ode_sampler(sde, zero_score, y, N=9, eps=EPS, schedule=schedule,
                                       intermediate=True)
    else:
        sampler = sdes.get_pc_sampler(sampler_kind, "none", sde, zero_score, y, N=9, eps=EPS,
                                      schedule=schedule, intermediate=True)
    x, nfe, states = sampler()
    grid = sdes.get_time_grid(schedule, 9, 1.0, EPS)
    assert [t for t, _ in states] == pytest.approx(grid.tolist(), abs=0)
    x_T = states[0][1]
    torch.testing.assert_close(x, x_T - (1.0 - EPS))
    assert all(state.shape == (B, K, 4) for _, state in states)
    if sampler_kind == "ode":  # Heun evaluates at both ends of every step
        ends = torch.stack([grid[:-1], grid[1:]], dim=1).flatten()
        assert times == pytest.approx(ends.tolist())
    else:  # the predictor evaluates the score at the start of each step
        assert times == pytest.approx(grid[:-1].tolist())


def test_intermediate_states_include_the_final_step():
    sde, y = make_sde(), mixture()
    x, nfe, states = sdes.get_pc_sampler("reverse_diffusion", "ald2", sde, shrink, y, N=N,
                                         intermediate=True, final_step=True)()
    assert len(states) == N + 2
    assert states[-1][0] == 0.0 and states[-1][1] is x
    assert states[-2][0] == pytest.approx(EPS)


def test_denoise_returns_x_mean_of_the_last_step():
    sde, y = make_sde(), mixture()
    gen = torch.Generator().manual_seed(3)
    noisy, _, states = sdes.get_pc_sampler("euler_maruyama", "none", sde, shrink, y, N=N,
                                           denoise=False, intermediate=True, generator=gen)()
    gen.manual_seed(3)
    clean, _ = sdes.get_pc_sampler("euler_maruyama", "none", sde, shrink, y, N=N,
                                   denoise=True, generator=gen)()
    torch.testing.assert_close(noisy, states[-1][1])
    # x_mean of the last step, recomputed by hand from the state before it
    x, t, h = states[-2][1], torch.full((B,), states[-2][0]), states[-2][0] - EPS
    drift, g = sde.sde(x, t, y)
    torch.testing.assert_close(clean, x - (drift - g**2 * shrink(x, t, y)) * h)


def test_none_none_returns_the_prior_sample_without_evaluations():
    sde, y = make_sde(), mixture()
    gen = torch.Generator().manual_seed(5)
    x, nfe = sdes.get_pc_sampler("none", "none", sde, shrink, y, N=N, generator=gen)()
    assert nfe == 0
    prior = sde.prior_sampling((B, K, L), y, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(x, prior)


@pytest.mark.parametrize("predictor, corrector", [("reverse_diffusion", "ald2"),
                                                  ("euler_maruyama", "langevin")])
def test_generator_makes_sampling_reproducible(predictor, corrector):
    sde, y = make_sde(), mixture()

    def run(seed):
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        return sdes.get_pc_sampler(predictor, corrector, sde, shrink, y, N=N, generator=gen)()[0]

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    assert not torch.equal(run(None), run(None))
    # a sampler can be called again: the generator continues its stream
    gen = torch.Generator().manual_seed(1)
    sampler = sdes.get_pc_sampler(predictor, corrector, sde, shrink, y, N=N, generator=gen)
    assert torch.equal(sampler()[0], run(1)) and not torch.equal(sampler()[0], run(1))


def test_ode_sampler_is_deterministic_given_the_prior_draw():
    sde, y = make_sde(), mixture()

    def run(seed):
        gen = torch.Generator().manual_seed(seed)
        return sdes.get_ode_sampler(sde, shrink, y, N=N, generator=gen)()[0]

    assert torch.equal(run(4), run(4)) and not torch.equal(run(4), run(5))


def test_every_sde_and_k_runs_through_the_samplers():
    y = mixture(length=600)
    for sde in [sdes.MixSDE(2, 2.0, 0.05, 0.5, 30), sdes.MixSDE(4, 2.0, 0.05, 0.5, 30),
                sdes.PriorMixSDE(2, 2.0, 0.05, 0.5, 30), sdes.OUVESDE(3, 1.5, 0.05, 0.5, 30)]:
        for corrector in sdes.CORRECTORS:
            x, _ = sdes.get_pc_sampler("reverse_diffusion", corrector, sde, shrink, y, N=3)()
            assert x.shape == (B, sde.n_sources, 600) and torch.isfinite(x).all()
        x, _ = sdes.get_ode_sampler(sde, shrink, y, N=3, final_step=True)()
        assert x.shape == (B, sde.n_sources, 600) and torch.isfinite(x).all()


def test_sampling_runs_without_autograd():
    sde, y = make_sde(), mixture()
    w = torch.tensor(1.0, requires_grad=True)
    x, _ = sdes.get_pc_sampler("reverse_diffusion", "ald2", sde, lambda x, t, m: -w * x, y,
                               N=N)()
    assert not x.requires_grad


def test_invalid_sampler_arguments_raise():
    sde, y = make_sde(), mixture()
    with pytest.raises(ValueError, match="unknown predictor"):
        sdes.get_pc_sampler("heun", "none", sde, shrink, y)
    with pytest.raises(ValueError, match="unknown corrector"):
        sdes.get_pc_sampler("none", "ald", sde, shrink, y)
    with pytest.raises(ValueError, match="schedule"):
        sdes.get_pc_sampler("none", "none", sde, shrink, y, schedule="cosine")
    with pytest.raises(ValueError, match="corrector_steps"):
        sdes.get_pc_sampler("none", "ald2", sde, shrink, y, corrector_steps=-1)
    with pytest.raises(ValueError, match=r"\(B, 1, L\)"):
        sdes.get_pc_sampler("none", "none", sde, shrink, y[:, 0])
    with pytest.raises(ValueError, match=r"\(B, 1, L\)"):
        sdes.get_ode_sampler(sde, shrink, torch.zeros(2, 2, 8))
