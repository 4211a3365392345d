"""Blending a DiffSep model's estimate with a one-shot separator's.

A one-shot separator is the network of a DiffSep model trained to map the sampler's
starting point at t = T (the prior mean ``y / K`` of every source) straight to the
sources (``bench/bench_discriminative_baseline.py``). Its errors differ from those of
the diffusion sampler, so a weighted mean of the two estimates can be better than
either (``docs/model-card-speech-2spk-8k.md``). A shipped model may name such a *partner*
(``models.pretrained.PARTNERS``); :func:`models.loading.load_model` attaches it and
:meth:`models.diffsep.DiffSepModel.separate` then returns the blend, unless it is called
with ``blend=False``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metrics.separation import best_permutation
from models.diffsep import denormalize, normalize


def one_shot(net, sde, mix_n: Tensor) -> Tensor:
    """Sources ``(B, K, L)`` of a normalised mixture: ``y / K`` plus the network's output
    at t = T from there."""
    start = sde.prior_mean(mix_n)
    t = torch.full((mix_n.shape[0],), float(sde.T), device=mix_n.device)
    return start + net(start, t, mix_n)


def estimate(net, sde, mix: Tensor) -> Tensor:
    """:func:`one_shot` in the scale of ``mix (B, 1, L)``."""
    mix_n, _, stats = normalize(mix)
    return denormalize(one_shot(net, sde, mix_n), stats)


def fit_to_mixture(est: Tensor, mix: Tensor) -> Tensor:
    """``est (B, K, L)`` with each source scaled by the least-squares coefficients that
    make their sum closest to ``mix (B, 1, L)`` (a separator trained on a scale-invariant
    loss has no scale of its own)."""
    a = est.double().transpose(1, 2)  # (B, L, K)
    coef = torch.linalg.lstsq(a, mix.double().transpose(1, 2)).solution  # (B, K, 1)
    return (est.double() * coef).to(est.dtype)


def combine(first: Tensor, second: Tensor, mix: Tensor, weight: float = 0.5) -> Tensor:
    """``weight * first + (1 - weight) * second`` after both are fitted to the mixture
    (:func:`fit_to_mixture`) and ``second``'s sources are put in the order of ``first``'s
    that matches them best (the highest summed correlation; no reference is used)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    if first.shape != second.shape:
        raise ValueError(f"estimates of shapes {tuple(first.shape)} and "
                         f"{tuple(second.shape)} cannot be combined")
    first, second = fit_to_mixture(first, mix), fit_to_mixture(second, mix)
    a = first / first.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = second / second.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    corr = torch.einsum("bkl,bjl->bkj", a, b)  # corr[:, k, j]: first's k against second's j
    order = best_permutation(corr).to(second.device)  # (B, K): second's source for each k
    second = torch.gather(second, 1, order[..., None].expand_as(second))
    return weight * first + (1 - weight) * second


class Partner:
    """A one-shot separator blended into a DiffSep model's output.

    Not a ``torch.nn.Module`` on purpose: attached to a model it adds nothing to the
    model's ``state_dict`` or parameters. ``weight`` is the share of the DiffSep
    estimate in the blend.
    """

    def __init__(self, model, weight: float = 0.5, path=None):
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {weight}")
        self.net, self.sde = model.score_model.eval(), model.sde
        self.n_sources, self.fs = int(model.n_sources), int(model.fs)
        self.weight, self.path = float(weight), path  # the file it was loaded from

    @torch.no_grad()
    def estimate(self, mix: Tensor) -> Tensor:
        if next(self.net.parameters()).device != mix.device:  # follows the model's device
            self.net.to(mix.device)
        return estimate(self.net, self.sde, mix)

    def blend(self, est: Tensor, mix: Tensor) -> Tensor:
        """The DiffSep estimate ``est`` blended with this separator's estimate of ``mix``."""
        return combine(est, self.estimate(mix), mix, self.weight)


class OneShot:
    """A one-shot separator (a :class:`Partner`) used on its own in the place of a DiffSep
    model: it has what :class:`evaluation.separator.Separator` and
    :func:`evaluation.runner.evaluate_item` ask of one (``fs``, ``n_sources``,
    ``source_names``, ``parameters()``, ``separate()``; ``config`` and ``exp_name`` for
    the evaluation scripts, from the run config given, else None). One network
    evaluation per excerpt and nothing drawn at random.
    """

    def __init__(self, partner: Partner, config=None):
        self.partner, self.config = partner, config
        self.exp_name = None if config is None else config.get("name")
        self.fs, self.n_sources = partner.fs, partner.n_sources
        self.source_names = [f"s{k + 1}" for k in range(self.n_sources)]

    def parameters(self):
        return self.partner.net.parameters()

    def separate(self, mix: Tensor, intermediate=False, generator=None,
                 **sampler) -> tuple[Tensor, int, None]:
        """``mix (B, 1, L)`` -> ``(est (B, K, L), 1, None)``, as ``DiffSepModel.separate``.
        There is no sampler: ``generator`` and sampler options are accepted for the
        common interface and change nothing (``separate.py --one-shot`` refuses them)."""
        return self.partner.estimate(mix), 1, None
