"""Blending a DiffSep model's estimate with a one-shot separator's.

A one-shot separator is the network of a DiffSep model trained to map the sampler's
starting point at t = T (the prior mean ``y / K`` of every source) straight to the
sources (``bench/bench_discriminative_baseline.py``). Its errors differ from those of
the diffusion sampler, so a weighted mean of the two estimates can be better than
either (``docs/model-card-speech-2spk-8k.md``). A shipped model may name such a *partner*
(``models.pretrained.PARTNERS``); :func:`models.loading.load_model` attaches it and
:meth:`models.diffsep.DiffSepModel.separate` then returns the blend, unless it is called
with ``blend=False``. A partner's own estimate is the mean over views of the mixture
played slower and faster (:func:`speed_views`, ``Partner.views``), then, when it has
one, put through a post-filter (``Partner.postfilter``: :mod:`models.postfilter`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import soxr
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


def _check_shapes(first: Tensor, second: Tensor) -> None:
    if first.shape != second.shape:
        raise ValueError(f"estimates of shapes {tuple(first.shape)} and "
                         f"{tuple(second.shape)} cannot be combined")


def reorder_to(first: Tensor, second: Tensor) -> Tensor:
    """``second (B, K, L)`` with its sources put in the order of ``first``'s that they
    match best (the highest summed correlation; no reference is used). Signed, unlike
    :func:`evaluation.overlap_add.match_order` (which is blind to polarity and returns
    the permutation): both estimates are already scaled to the same mixture here."""
    _check_shapes(first, second)
    a = first / first.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = second / second.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    corr = torch.einsum("bkl,bjl->bkj", a, b)  # corr[:, k, j]: first's k against second's j
    order = best_permutation(corr).to(second.device)  # (B, K): second's source for each k
    return torch.gather(second, 1, order[..., None].expand_as(second))


def combine(first: Tensor, second: Tensor, mix: Tensor, weight: float = 0.5) -> Tensor:
    """``weight * first + (1 - weight) * second`` after both are fitted to the mixture
    (:func:`fit_to_mixture`) and ``second``'s sources are put in the order of ``first``'s
    (:func:`reorder_to`)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    _check_shapes(first, second)
    first, second = fit_to_mixture(first, mix), fit_to_mixture(second, mix)
    return weight * first + (1 - weight) * reorder_to(first, second)


def stretch(x: Tensor, factor: float, length: int | None = None) -> Tensor:
    """``x (..., L)`` resampled to ``factor`` times as many samples (soxr, high quality):
    played at the same rate, slower and lower by ``factor``. ``length`` cuts or
    zero-pads the result to that many samples. Resampled on the CPU, returned on
    ``x``'s device."""
    flat = x.detach().reshape(-1, x.shape[-1]).cpu().double().numpy()
    out = soxr.resample(np.ascontiguousarray(flat.T), 1.0, float(factor), quality="HQ").T
    if length is not None:
        out = np.pad(out, ((0, 0), (0, max(0, length - out.shape[-1]))))[:, :length]
    y = torch.from_numpy(np.ascontiguousarray(out)).to(x.dtype)
    return y.reshape(*x.shape[:-1], y.shape[-1]).to(x.device)


def _factors(factors: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(f) for f in factors)
    if not out or min(out) <= 0:
        raise ValueError(f"speed factors must be positive, got {list(factors)}")
    return out


def speed_views(separate: Callable[[Tensor], Tensor], mix: Tensor,
                factors: Sequence[float]) -> Tensor:
    """The mean of ``separate``'s estimates of ``mix (B, 1, L)`` played at other speeds:
    for each factor f the mixture is stretched by f (:func:`stretch`; f > 1 slower and
    lower), separated, and the estimate stretched back to L samples. Each view is fitted
    to the mixture (:func:`fit_to_mixture`) and put in the first view's source order
    (:func:`reorder_to`) before the mean. A separator trained with speed perturbation
    errs differently on each view, so the mean is better than one view
    (``docs/model-card-speech-2spk-8k.md``). One factor 1 is ``separate(mix)`` as it is."""
    factors = _factors(factors)
    if factors == (1.0,):
        return separate(mix)
    n, out = mix.shape[-1], None
    for f in factors:
        est = separate(mix) if f == 1.0 else stretch(separate(stretch(mix, f)), 1.0 / f, n)
        est = fit_to_mixture(est, mix)
        out = est if out is None else out + reorder_to(out, est)
    return out / len(factors)


class Partner:
    """A one-shot separator blended into a DiffSep model's output.

    Not a ``torch.nn.Module`` on purpose: attached to a model it adds nothing to the
    model's ``state_dict`` or parameters. ``weight`` is the share of the DiffSep
    estimate in the blend. ``postfilter(est, mix)``, when given, filters the mean of the
    views (a :class:`models.postfilter.WienerFilter`).
    """

    def __init__(self, model, weight: float = 0.5, path=None, views: Sequence[float] = (1.0,),
                 postfilter: Callable[[Tensor, Tensor], Tensor] | None = None):
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1], got {weight}")
        self.net, self.sde = model.score_model.eval(), model.sde
        self.n_sources, self.fs = int(model.n_sources), int(model.fs)
        self.weight, self.path = float(weight), path  # the file it was loaded from
        self.views = _factors(views)  # speed factors (:func:`speed_views`)
        self.postfilter = postfilter

    def with_views(self, views: Sequence[float]) -> Partner:
        """This separator (the same network) with other speed views."""
        other = copy.copy(self)
        other.views = _factors(views)
        return other

    def with_postfilter(self, postfilter: Callable[[Tensor, Tensor], Tensor] | None) -> Partner:
        """This separator (the same network) with another post-filter, or None."""
        other = copy.copy(self)
        other.postfilter = postfilter
        return other

    @property
    def nfe(self) -> int:
        """Network evaluations per estimate: one per view."""
        return len(self.views)

    @torch.no_grad()
    def estimate(self, mix: Tensor) -> Tensor:
        if next(self.net.parameters()).device != mix.device:  # follows the model's device
            self.net.to(mix.device)
        est = speed_views(lambda y: estimate(self.net, self.sde, y), mix, self.views)
        return est if self.postfilter is None else self.postfilter(est, mix)

    def blend(self, est: Tensor, mix: Tensor) -> Tensor:
        """The DiffSep estimate ``est`` blended with this separator's estimate of ``mix``."""
        return combine(est, self.estimate(mix), mix, self.weight)


class OneShot:
    """A one-shot separator (a :class:`Partner`) used on its own in the place of a DiffSep
    model: it has what :class:`evaluation.separator.Separator` and
    :func:`evaluation.runner.evaluate_item` ask of one (``fs``, ``n_sources``,
    ``source_names``, ``parameters()``, ``separate()``; ``config`` and ``exp_name`` for
    the evaluation scripts, from the run config given, else None). One network
    evaluation per excerpt and speed view, nothing drawn at random.
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
        """``mix (B, 1, L)`` -> ``(est (B, K, L), nfe, None)``, as ``DiffSepModel.separate``
        (``nfe``: one network evaluation per speed view of the partner).
        There is no sampler: ``generator`` and sampler options are accepted for the
        common interface and change nothing (``separate.py --one-shot`` refuses them)."""
        return self.partner.estimate(mix), self.partner.nfe, None
