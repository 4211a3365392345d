"""Where along the diffusion does a trained score model stop knowing the sources?

The reverse sampler has to do two things: break the symmetry between the sources
near t = T, where ``x_t`` is the mixture prior plus noise and the separation can
only come from the mixture, and denoise at smaller t, where ``x_t`` already holds
the separated sources under noise. A single SI-SDR of the sampler's output mixes
the two. This probe scores them apart, on references the model was not trained on:

- ``tweedie``: forward-noise the normalised references to ``x_t`` (the training
  distribution) and score the one-step estimate ``E[x0 | x_t]`` (Tweedie's formula,
  ``model.one_step_estimate``) from the model's score, for a grid of t;
- ``x_t``: the same states scored as they are (what the noise alone leaves);
- ``prior``: Tweedie's estimate at t = T from a draw of the mixture prior, i.e. the
  one-shot separation the paper's mismatch steps train;
- ``sampler``: the full PC sampler from the prior, as in validation, on the whole
  excerpts and, optionally, on each excerpt cut into shorter segments separated one
  by one. Segments score better than whole excerpts when the model assigns the
  speakers to its outputs consistently only over short spans (outputs that swap
  along time), e.g. over the length of its training crops.

- ``trajectory`` (:func:`trajectory`): along one run of the PC sampler, the state
  ``x_t`` after each step and the model's one-step estimate ``E[x0 | x_t]`` from it.
  It shows whether the sampler keeps, improves or loses what the first estimate
  from the prior had: a model trained only on forward-noised states reads the
  residual separation of its own earlier guesses as if it were the truth's, and
  the estimates drift (docs/demo.md, "The demo model").

Every number is the mean permutation-invariant SI-SDR improvement over the
mixture (dB). A model whose ``tweedie`` column is well above zero down from some
t while ``sampler`` stays below zero denoises but does not yet separate from the
prior.
"""

import torch

from metrics import separation as metrics
from models.diffsep import normalize

DEFAULT_TIMES = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _segments(x, length):
    """``(B, C, L)`` -> ``(B * S, C, length)``: S whole segments per example, b-major."""
    return x.unfold(-1, length, length).transpose(1, 2).flatten(0, 1)


def _sdri(est, ref, base):
    return float((metrics.pit_si_sdr(est, ref)[0].mean(dim=1) - base).mean())


@torch.no_grad()
def probe(model, mix, tgt, times=DEFAULT_TIMES, sampler_steps=(), segments=(), seed=0):
    """Mean SI-SDRi (dB) of one-step and sampled estimates; see the module docstring.

    Args:
        model: a DiffSepModel (use its EMA weights: ``models.loading.load_model``).
        mix ``(B, 1, L)``, tgt ``(B, K, L)``: mixtures and their references.
        times: diffusion times of the ``tweedie`` / ``x_t`` rows, in (0, T].
        sampler_steps: values of N for full sampler runs (none by default).
        segments: segment lengths in samples: each N is also run on the excerpts cut
            into non-overlapping segments of that length (the remainder is dropped),
            every segment scored on its own.
        seed: seed of every noise draw, so two models see the same states.

    Returns a dict ``{"mixture_si_sdr", "rows": [{"t", "tweedie", "x_t"}], "prior",
    "sampler": {N: sdri}, "segments": {(N, length): sdri}}``.
    """
    sde = model.sde
    short = [n for n in segments if not 0 < int(n) <= mix.shape[-1]]
    if short:
        raise ValueError(f"segment lengths must lie in (0, {mix.shape[-1]}] samples, got {short}")
    bad = [t for t in times if not 0.0 < float(t) <= sde.T]
    if bad:
        raise ValueError(f"probe times must lie in (0, T={sde.T}], got {bad}")
    mix_n, tgt_n, _ = normalize(mix, tgt)
    base = metrics.si_sdr(mix_n.expand_as(tgt_n), tgt_n).mean(dim=1)
    gen = torch.Generator(device=mix.device).manual_seed(int(seed))
    b = mix.shape[0]
    rows = []
    for t in times:
        tt = torch.full((b,), float(t), device=mix.device)
        z = torch.randn(tgt_n.shape, generator=gen, device=mix.device, dtype=tgt_n.dtype)
        x_t, _, _ = sde.perturb(tgt_n, tt, mix_n, z=z)
        x0 = model.one_step_estimate(x_t, tt, mix_n)
        rows.append(dict(t=float(t), tweedie=_sdri(x0, tgt_n, base), x_t=_sdri(x_t, tgt_n, base)))
    t_end = torch.full((b,), float(sde.T), device=mix.device)
    x_end = sde.prior_sampling(tgt_n.shape, mix_n, generator=gen)
    prior = _sdri(model.one_step_estimate(x_end, t_end, mix_n), tgt_n, base)
    cuts = {}  # length -> (segment mixtures, references, their mixture SI-SDR)
    for length in map(int, segments):
        seg_mix, seg_tgt = _segments(mix, length), _segments(tgt, length)
        cuts[length] = (seg_mix, seg_tgt,
                        metrics.si_sdr(seg_mix.expand_as(seg_tgt), seg_tgt).mean(dim=1))
    sampled, by_segment = {}, {}
    for n in map(int, sampler_steps):
        est, _, _ = model.separate(mix, N=n, generator=gen)
        sampled[n] = _sdri(est, tgt, base)
        for length, (seg_mix, seg_tgt, seg_base) in cuts.items():
            est, _, _ = model.separate(seg_mix, N=n, generator=gen)
            by_segment[(n, length)] = _sdri(est, seg_tgt, seg_base)
    return dict(mixture_si_sdr=float(base.mean()), rows=rows, prior=prior, sampler=sampled,
                segments=by_segment)


@torch.no_grad()
def trajectory(model, mix, tgt, N=8, seed=0):
    """SI-SDRi (dB) of the sampler's states and of the one-step estimates from them.

    Runs ``model.separate`` once (its sampler settings, ``N`` steps, seeded) on the
    normalised mixtures and returns ``{"rows": [{"t", "state", "estimate"}],
    "final"}``: one row per state the sampler returns (the prior draw at t = T, then
    the state after each step; not the final step's t = 0), ``estimate`` scoring
    ``model.one_step_estimate`` of that state, ``final`` the sampler's output.
    """
    mix_n, tgt_n, _ = normalize(mix, tgt)
    base = metrics.si_sdr(mix_n.expand_as(tgt_n), tgt_n).mean(dim=1)
    gen = torch.Generator(device=mix.device).manual_seed(int(seed))
    est, _, states = model.separate(mix_n, N=N, intermediate=True, generator=gen)
    rows = []
    for t, x in states:
        if float(t) <= 0.0:
            continue  # the final Tweedie step's (0, E[x0 | x_eps]): an estimate already
        tt = torch.full((mix.shape[0],), float(t), device=mix.device)
        rows.append(dict(t=float(t), state=_sdri(x, tgt_n, base),
                         estimate=_sdri(model.one_step_estimate(x, tt, mix_n), tgt_n, base)))
    return dict(rows=rows, final=_sdri(est, tgt_n, base))


def format_trajectory(result):
    lines = ["sampler trajectory: SI-SDRi of the state x_t and of E[x0 | x_t] from it",
             f"{'t':>6} {'state':>8} {'estimate':>9}"]
    lines += [f"{r['t']:>6.3f} {r['state']:>8.2f} {r['estimate']:>9.2f}" for r in result["rows"]]
    lines.append(f"sampler output: {result['final']:.2f}")
    return "\n".join(lines)


def format_probe(result):
    """The probe's result as a text table."""
    lines = [f"mixture SI-SDR {result['mixture_si_sdr']:.2f} dB; SI-SDRi in dB below",
             f"{'t':>6} {'tweedie':>8} {'x_t':>8}"]
    lines += [f"{r['t']:>6.2f} {r['tweedie']:>8.2f} {r['x_t']:>8.2f}" for r in result["rows"]]
    lines.append(f"one-step from the prior (t = T): {result['prior']:.2f}")
    lines += [f"PC sampler, N = {n}: {v:.2f}" for n, v in result["sampler"].items()]
    lines += [f"PC sampler, N = {n}, segments of {length} samples: {v:.2f}"
              for (n, length), v in result["segments"].items()]
    return "\n".join(lines)
