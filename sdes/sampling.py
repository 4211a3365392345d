"""Reverse-time samplers: predictor-corrector (PC) and probability-flow ODE.

Time grid. A sampler with ``N`` steps uses ``N + 1`` times ``t_0 = T > t_1 > ... >
t_N = eps`` (:func:`get_time_grid`). Step ``i`` evaluates the score at ``t_i`` and moves
the state from ``t_i`` to ``t_{i+1}`` with ``dt_i = t_i - t_{i+1}``, so the steps cover
exactly ``[eps, T]`` whatever the schedule (the original code used ``dt = 1/N`` and
integrated past ``eps``). Schedules:

- ``"linear"``: ``t_i`` equally spaced.
- ``"log"``: ``t_i`` geometrically spaced (equal steps in ``log t``): fine steps near
  ``eps``, where the noise is small and the score changes fastest.
- ``"revlog"``: the mirror image of ``"log"`` (``t_i = T + eps - s_i`` with ``s_i``
  geometric from ``eps`` up to ``T``): fine steps near ``T``.

Predictors and correctors are plain functions with one signature each, looked up by
name in :data:`PREDICTORS` / :data:`CORRECTORS`. They only call SDE methods, so they
work unchanged for every SDE (including per-sample diffusion, PriorMixSDE).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from sdes.base import SDE, randn_like

ScoreFn = Callable[[Tensor, Tensor, Tensor], Tensor]

SCHEDULES = ("linear", "log", "revlog")


def get_time_grid(schedule: str, N: int, T: float = 1.0, eps: float = 0.03) -> Tensor:
    """``N + 1`` decreasing times from exactly ``T`` to exactly ``eps`` (float64, CPU)."""
    if int(N) != N or N < 1:
        raise ValueError(f"N must be an integer >= 1, got {N}")
    if not (0.0 < eps < T):
        raise ValueError(f"need 0 < eps < T = {T}, got eps={eps}")
    u = torch.linspace(0.0, 1.0, int(N) + 1, dtype=torch.float64)
    if schedule == "linear":
        ts = T + (eps - T) * u
    elif schedule == "log":
        ts = T * (eps / T) ** u
    elif schedule == "revlog":
        ts = T + eps - eps * (T / eps) ** u
    else:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    ts[0], ts[-1] = T, eps  # exact endpoints despite rounding
    return ts


# ---- predictors: (sde, score_fn, x, t, dt, mix, generator) -> (x, x_mean) --------------
def reverse_diffusion(sde: SDE, score_fn: ScoreFn, x, t, dt, mix, generator=None):
    """``x_mean = x - f + G^2 s``, ``x = x_mean + G z`` with ``(f, G) = sde.discretize``."""
    f, G = sde.discretize(x, t, mix, dt)
    x_mean = x - f + G**2 * score_fn(x, t, mix)
    return x_mean + G * randn_like(x, generator), x_mean


def euler_maruyama(sde: SDE, score_fn: ScoreFn, x, t, dt, mix, generator=None):
    """Euler-Maruyama on the reverse SDE ``dx = (f - g^2 s) dt + g dw`` backwards in time.

    With the default (Euler) ``sde.discretize`` this equals :func:`reverse_diffusion`,
    as in score_sde / SGMSE; the two differ for an SDE that discretises exactly.
    """
    drift, g = sde.sde(x, t, mix)
    h = dt[:, None, None]
    x_mean = x - (drift - g**2 * score_fn(x, t, mix)) * h
    return x_mean + g * torch.sqrt(h) * randn_like(x, generator), x_mean


def no_predictor(sde, score_fn, x, t, dt, mix, generator=None):
    return x, x


# ---- correctors: (sde, score_fn, x, t, mix, snr, n_steps, generator) -> (x, x_mean) ----
def ald2(sde: SDE, score_fn: ScoreFn, x, t, mix, snr, n_steps, generator=None):
    """Annealed Langevin preconditioned by the SDE covariance ``Cov(t) = L L``.

    ``x_mean = x + 2 snr^2 L L s``, ``x = x_mean + 2 snr L z``: Langevin with step
    ``eps = 2 snr^2`` and preconditioner ``Cov(t)`` (noise ``sqrt(2 eps) L z``).
    """
    std = sde.marginal_std(t, mix)
    x_mean = x
    for _ in range(n_steps):
        s = score_fn(x, t, mix)
        x_mean = x + 2 * snr**2 * sde.mult_std(std, sde.mult_std(std, s))
        x = x_mean + 2 * snr * sde.mult_std(std, randn_like(x, generator))
    return x, x_mean


def langevin(sde: SDE, score_fn: ScoreFn, x, t, mix, snr, n_steps, generator=None):
    """Plain Langevin (score_sde): step ``2 (snr |z| / |s|)^2``.

    The norms are taken per example (not averaged over the batch as in score_sde), so
    an example's result does not depend on the rest of its batch.
    """
    x_mean = x
    for _ in range(n_steps):
        s = score_fn(x, t, mix)
        z = randn_like(x, generator)
        s_norm = s.flatten(1).norm(dim=1).clamp_min(torch.finfo(s.dtype).tiny)
        z_norm = z.flatten(1).norm(dim=1)
        step = (2 * (snr * z_norm / s_norm) ** 2)[:, None, None]
        x_mean = x + step * s
        x = x_mean + torch.sqrt(2 * step) * z
    return x, x_mean


def no_corrector(sde, score_fn, x, t, mix, snr, n_steps, generator=None):
    return x, x


PREDICTORS = {
    "reverse_diffusion": reverse_diffusion,
    "euler_maruyama": euler_maruyama,
    "none": no_predictor,
}
CORRECTORS = {"ald2": ald2, "langevin": langevin, "none": no_corrector}


def _lookup(table: dict, name: str, kind: str):
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; choose one of {sorted(table)}")
    return table[name]


class _Counted:
    """Wraps a score function and counts its calls (the NFE)."""

    def __init__(self, score_fn: ScoreFn):
        self.score_fn = score_fn
        self.calls = 0

    def __call__(self, x, t, mix):
        self.calls += 1
        return self.score_fn(x, t, mix)


def _setup(sde: SDE, y: Tensor, N, eps, schedule):
    """The time grid as Python floats (no device round trip per step) and x's shape."""
    if y.dim() != 3 or y.shape[1] != 1:
        raise ValueError(f"y (the mixture) must have shape (B, 1, L), got {tuple(y.shape)}")
    N = sde.N if N is None else N
    ts = get_time_grid(schedule, N, sde.T, eps).tolist()
    shape = (y.shape[0], sde.n_sources, y.shape[2])
    return ts, shape


def _full(value: float, y: Tensor) -> Tensor:
    return torch.full((y.shape[0],), value, dtype=y.dtype, device=y.device)


def _finish(sde, score, x, out, y, eps, final_step, states):
    """Optional Tweedie step from ``eps`` to 0, applied to the noisy state ``x``."""
    if final_step:
        t = _full(eps, y)
        out = sde.tweedie(x, t, y, score(x, t, y))
        if states is not None:
            states.append((0.0, out))
    if states is not None:
        return out, score.calls, states
    return out, score.calls


# The sampler's defaults, stated once: a model's `sampler` config (null entries), the
# options of `DiffSepModel.separate`, `separate.py`, `evaluate.py` and the evaluation
# Settings all fall back to these. N None: the SDE's own number of steps (`sde.N`).
SAMPLER_DEFAULTS = dict(predictor="reverse_diffusion", corrector="ald2", N=None, snr=0.5,
                        corrector_steps=1, denoise=True, schedule="linear", final_step=True)


def sampler_options(options, n_steps):
    """:data:`SAMPLER_DEFAULTS` updated with the non-None entries of ``options``; N None
    becomes ``n_steps`` (the SDE's). Unknown names are refused."""
    options = dict(options or {})
    unknown = set(options) - set(SAMPLER_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown sampler options {sorted(unknown)}")
    out = {**SAMPLER_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
    if out["N"] is None:
        out["N"] = int(n_steps)
    return out


def get_pc_sampler(
    predictor_name: str,
    corrector_name: str,
    sde: SDE,
    score_fn: ScoreFn,
    y: Tensor,
    N: int | None = None,
    snr: float = SAMPLER_DEFAULTS["snr"],
    corrector_steps: int = SAMPLER_DEFAULTS["corrector_steps"],
    denoise: bool = SAMPLER_DEFAULTS["denoise"],
    eps: float = 0.03,
    intermediate: bool = False,
    schedule: str = SAMPLER_DEFAULTS["schedule"],
    final_step: bool = False,  # the bare sampler ends at eps; models default to the step
    generator: torch.Generator | None = None,
):
    """Predictor-corrector sampler of ``p(x | y)``; ``sampler()`` returns ``(x, nfe)``.

    Each of the ``N`` steps runs ``corrector_steps`` corrector updates at ``t_i`` and
    then one predictor update from ``t_i`` to ``t_{i+1}``. ``denoise`` returns
    ``x_mean`` of the last update instead of ``x``. ``final_step`` maps the (noisy) state
    at ``eps`` to ``E[x0 | x_eps]`` with Tweedie's formula (one more score evaluation;
    ``denoise`` then has no effect). ``nfe`` counts the score evaluations: ``N (1 +
    corrector_steps)`` (+1) with both a predictor and a corrector. With
    ``intermediate=True`` the sampler returns ``(x, nfe, states)``, ``states`` being the
    list of ``(t, x)`` from ``(T, x_T)`` to ``(eps, x)`` (and ``(0, E[x0|x_eps])``).
    With predictor ``"none"`` the state does not move in time: the last corrector update
    runs at ``t_{N-1}`` (the states keep the grid's labels); with both ``"none"`` the
    result is the prior draw and ``nfe`` is 0. Runs without autograd.
    """
    predictor = _lookup(PREDICTORS, predictor_name, "predictor")
    corrector = _lookup(CORRECTORS, corrector_name, "corrector")
    if int(corrector_steps) != corrector_steps or corrector_steps < 0:
        raise ValueError(f"corrector_steps must be an integer >= 0, got {corrector_steps}")
    ts, shape = _setup(sde, y, N, eps, schedule)

    @torch.no_grad()
    def sampler():
        score = _Counted(score_fn)
        x = sde.prior_sampling(shape, y, generator=generator)
        x_mean = x
        states = [(ts[0], x)] if intermediate else None
        for i in range(len(ts) - 1):
            t = _full(ts[i], y)
            dt = _full(ts[i] - ts[i + 1], y)
            x, x_mean = corrector(sde, score, x, t, y, snr, corrector_steps, generator)
            x, x_mean = predictor(sde, score, x, t, dt, y, generator)
            if states is not None:
                states.append((ts[i + 1], x))
        return _finish(sde, score, x, x_mean if denoise else x, y, eps, final_step, states)

    return sampler


def get_ode_sampler(
    sde: SDE,
    score_fn: ScoreFn,
    y: Tensor,
    N: int | None = None,
    eps: float = 0.03,
    schedule: str = "linear",
    final_step: bool = False,
    intermediate: bool = False,
    generator: torch.Generator | None = None,
):
    """Probability-flow ODE ``dx/dt = f - g^2 s / 2`` from the prior at ``T`` to ``eps``.

    Integrated backwards with Heun's method (explicit trapezoidal rule, second order),
    two score evaluations per step: ``nfe = 2 N`` (+1 with ``final_step``). Only the
    initial prior draw is random (``generator`` fixes it). ``sampler()`` returns
    ``(x, nfe)`` or, with ``intermediate``, ``(x, nfe, states)`` as
    :func:`get_pc_sampler` does.
    """
    ts, shape = _setup(sde, y, N, eps, schedule)

    def velocity(score, x, t):
        drift, g = sde.sde(x, t, y)
        return drift - 0.5 * g**2 * score(x, t, y)

    @torch.no_grad()
    def sampler():
        score = _Counted(score_fn)
        x = sde.prior_sampling(shape, y, generator=generator)
        states = [(ts[0], x)] if intermediate else None
        for i in range(len(ts) - 1):
            h = ts[i] - ts[i + 1]
            d1 = velocity(score, x, _full(ts[i], y))
            d2 = velocity(score, x - h * d1, _full(ts[i + 1], y))
            x = x - 0.5 * h * (d1 + d2)
            if states is not None:
                states.append((ts[i + 1], x))
        return _finish(sde, score, x, x, y, eps, final_step, states)

    return sampler


__all__ = [
    "CORRECTORS",
    "PREDICTORS",
    "SCHEDULES",
    "ald2",
    "euler_maruyama",
    "get_ode_sampler",
    "get_pc_sampler",
    "get_time_grid",
    "langevin",
    "no_corrector",
    "no_predictor",
    "reverse_diffusion",
]
