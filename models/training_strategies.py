"""How a training example is drawn and scored (method.md, "Score model and loss").

- time sampling: ``uniform`` on [t_eps, T] or ``varprop`` (density proportional
  to ``sde.noise_std``);
- source order of ordinary steps: ``random``, ``power``, ``fixed`` or ``pit``;
- training strategy: ``standard``, ``prior_mismatch_pit`` (the paper's mismatch
  steps: t = T, x_T drawn from the mixture prior, loss minimised over source
  permutations) or ``prior_mismatch_fraction`` (the enhancement variant: the same
  mismatch steps with the target in the ordinary source order, by default for a
  fraction 1/N of the examples);
- refinement steps (``refine_p``, our extension, off by default): ``x_t`` is built
  around the network's own one-shot estimate from a prior draw instead of around
  the true sources, and the target is the true sources in the best order;
- the permutation-aware score-matching loss ``mean((L s + z_pi)**2)``.

Every target noise has the one form ``z_pi = z + L^{-1}(base - mean_t(pi(x0)))``
where ``x_t = base + L z``: ``base`` is the true mean ``mean_t(x0)`` on ordinary
steps, the prior mean ``y / K`` on mismatch steps and ``mean_t(x0_hat)`` of the
network's own estimate on refinement steps, so ``z_pi`` explains ``x_t`` from the
permuted sources in every case.
"""

import functools
import itertools

import torch

TRAIN_STRATEGIES = ("standard", "prior_mismatch_pit", "prior_mismatch_fraction")
SOURCE_ORDERS = ("random", "power", "fixed", "pit")
TIME_SAMPLINGS = ("uniform", "varprop")
# The original code's numbered switches, kept as documented aliases.
INIT_HACK_ALIASES = {4: "prior_mismatch_fraction", 5: "prior_mismatch_pit"}
DEFAULT_MISMATCH_P = 0.1  # reference value of init_hack_p


def resolve_train_strategy(train_strategy="standard", mismatch_p=None, init_hack=None,
                           init_hack_p=None, n_steps=30):
    """Return ``(strategy, p)``: the strategy name and its per-example mismatch probability.

    ``init_hack`` aliases: 5 -> prior_mismatch_pit with p = ``init_hack_p``
    (default 0.1); 4 -> prior_mismatch_fraction with p = 1/N (``n_steps``);
    null/false/0 -> no alias. Any other value is an error.
    """
    if init_hack not in (None, False, 0):
        if isinstance(init_hack, bool) or init_hack not in INIT_HACK_ALIASES:
            raise ValueError(
                f"init_hack={init_hack!r} is not supported: use 5 (prior_mismatch_pit) or "
                f"4 (prior_mismatch_fraction), or set train_strategy directly"
            )
        alias = INIT_HACK_ALIASES[init_hack]
        if train_strategy not in ("standard", alias):
            raise ValueError(f"init_hack={init_hack} means {alias!r}, but "
                             f"train_strategy={train_strategy!r} was also given")
        if mismatch_p is not None:
            raise ValueError("give either init_hack/init_hack_p or train_strategy/mismatch_p")
        train_strategy = alias
        mismatch_p = (DEFAULT_MISMATCH_P if init_hack_p is None else init_hack_p) \
            if init_hack == 5 else None
    elif init_hack_p is not None:
        raise ValueError("init_hack_p is only read with init_hack: 5")

    if train_strategy not in TRAIN_STRATEGIES:
        raise ValueError(f"unknown train_strategy {train_strategy!r}, use {TRAIN_STRATEGIES}")
    if train_strategy == "standard":
        if mismatch_p not in (None, 0, 0.0):
            raise ValueError("mismatch_p needs train_strategy prior_mismatch_pit/_fraction")
        return train_strategy, 0.0
    if mismatch_p is None:
        mismatch_p = DEFAULT_MISMATCH_P if train_strategy == "prior_mismatch_pit" else 1.0 / n_steps
    if not 0.0 <= mismatch_p <= 1.0:
        raise ValueError(f"mismatch_p must be in [0, 1], got {mismatch_p}")
    return train_strategy, float(mismatch_p)


def check_refine_p(refine_p, mismatch_p):
    """Refinement and mismatch steps share one uniform draw: ``refine_p <= 1 - mismatch_p``."""
    if not 0.0 <= refine_p <= 1.0 - mismatch_p:
        raise ValueError(f"refine_p must be in [0, 1 - mismatch_p = {1.0 - mismatch_p:g}], "
                         f"got {refine_p}")


def _rand(shape, device, generator):
    return torch.rand(shape, device=device, generator=generator)


def sample_time(sde, batch_size, t_eps, method="uniform", device="cpu", generator=None,
                table_size=4097):
    """Diffusion times ``(B,)`` in [t_eps, T]: uniform, or density proportional to noise_std."""
    u = _rand((batch_size,), device, generator)
    if method == "uniform":
        return t_eps + (sde.T - t_eps) * u
    if method == "varprop":
        # Inverse-CDF sampling from a fine table of the density; inside a cell the
        # density is linear, so the quadratic cell CDF is inverted exactly.
        grid = torch.linspace(t_eps, sde.T, table_size, device=device, dtype=torch.float64)
        dens = sde.noise_std(grid.float()).to(torch.float64).clamp_min(0.0)
        h = (sde.T - t_eps) / (table_size - 1)  # a Python float: no device sync
        cdf = torch.cat([grid.new_zeros(1), torch.cumsum((dens[1:] + dens[:-1]) * h / 2, 0)])
        target = u.to(torch.float64) * cdf[-1]
        idx = torch.searchsorted(cdf, target, right=True).clamp(1, table_size - 1)
        d0, d1, rest = dens[idx - 1], dens[idx], target - cdf[idx - 1]
        slope = (d1 - d0) / h
        # Root of d0 x + slope x^2 / 2 = rest, in the form that is stable for slope -> 0.
        x = 2 * rest / (d0 + (d0**2 + 2 * slope * rest).clamp_min(0.0).sqrt()).clamp_min(1e-30)
        t = grid[idx - 1] + x.clamp(0.0, h)
        return t.clamp(t_eps, sde.T).to(u.dtype)
    raise ValueError(f"unknown time sampling {method!r}, use one of {TIME_SAMPLINGS}")


def order_sources(x0, order, generator=None):
    """Reorder the sources ``(B, K, L)`` of each example for an ordinary step.

    ``random``: a fresh permutation per example; ``power``: loudest first;
    ``fixed`` and ``pit``: dataset order (PIT resolves the order in the loss).
    """
    if order in ("fixed", "pit"):
        return x0
    if order == "random":
        idx = _rand(x0.shape[:2], x0.device, generator).argsort(dim=1)
    elif order == "power":
        idx = x0.pow(2).mean(dim=-1).argsort(dim=1, descending=True)
    else:
        raise ValueError(f"unknown source_order {order!r}, use one of {SOURCE_ORDERS}")
    return torch.gather(x0, 1, idx[..., None].expand_as(x0))


@functools.lru_cache(maxsize=32)
def _permutations(n_sources, device):
    return torch.tensor(list(itertools.permutations(range(n_sources))), device=device)


def permutations(n_sources, device="cpu"):
    """All K! orderings as a long tensor ``(K!, K)``; row 0 is the identity. Built once
    per (K, device) and cached: no host-to-device copy per training step. Read-only."""
    return _permutations(int(n_sources), torch.device(device))


def permuted_noise_targets(sde, x0, t, mix, z, base, perms):
    """Target noises ``(B, P, K, L)``: ``z_pi = z + L^{-1}(base - mean_t(pi(x0)))``."""
    b, k, n = x0.shape
    p = perms.shape[0]
    x0_perm = x0[:, perms]  # (B, P, K, L)
    rep = lambda v: v.repeat_interleave(p, dim=0)  # noqa: E731  (B*P, ...) copies
    mean_perm, std_perm = sde.marginal_prob(x0_perm.reshape(b * p, k, n), rep(t), rep(mix))
    gap = sde.mult_std_inv(std_perm, rep(base) - mean_perm)
    return z[:, None] + gap.reshape(b, p, k, n)


def mismatch_to_noise_ratio(sde, mean, mix, t):
    """RMS distance between the true mean and the prior mean, over the noise std: ``(B,)``."""
    gap = (mean - sde.prior_mean(mix)).pow(2).mean(dim=(-2, -1)).sqrt()
    return gap / sde.noise_std(t).clamp_min(1e-12)


def draw_training_example(sde, x0, mix, *, t_eps, time_sampling, source_order, strategy,
                          mismatch_p, pit_threshold=None, generator=None, refine_p=0.0,
                          estimate=None):
    """Draw ``(x_t, t)`` and everything the loss needs, as a dict.

    Keys: ``x_t``, ``t``, ``std`` (the opaque L of the marginal), ``z``, ``base``,
    ``x0`` (ordered sources), ``use_pit`` (B,) bool, ``mismatch`` (B,) bool,
    ``refine`` (B,) bool.

    Refinement steps (probability ``refine_p``, drawn from the same uniform number as
    the mismatch steps, so the two never coincide): ``estimate(x_T, t, mix)`` (no
    gradient) gives the network's estimate of the sources from a draw ``x_T`` of the
    mixture prior, and ``x_t = mean_t(estimate) + L(t) z`` at the ordinary time ``t``:
    a state like those the reverse sampler meets after its first steps, where the
    residual separation comes from the model's own guess, not from the true sources.
    The loss asks for the true sources in the order closest to the guess (PIT).
    """
    if refine_p and estimate is None:
        raise ValueError("refine_p > 0 needs an estimate(x, t, mix) function")
    check_refine_p(refine_p, mismatch_p)
    b, device = x0.shape[0], x0.device
    x0 = order_sources(x0, source_order, generator)
    t = sample_time(sde, b, t_eps, time_sampling, device, generator)
    u = _rand((b,), device, generator)
    mismatch = u < mismatch_p
    refine = (u >= mismatch_p) & (u < mismatch_p + refine_p)
    t = torch.where(mismatch, torch.full_like(t, sde.T), t)
    mean, std = sde.marginal_prob(x0, t, mix)
    base = torch.where(mismatch[:, None, None], sde.prior_mean(mix), mean)
    # (a data-dependent branch, so a synchronisation, only with refinement steps on)
    if refine_p and bool(refine.any()):
        idx = torch.nonzero(refine).flatten()
        t_end = torch.full((idx.numel(),), float(sde.T), device=device)
        x_end = sde.prior_sampling(x0[idx].shape, mix[idx], generator=generator)
        with torch.no_grad():
            guess = estimate(x_end, t_end, mix[idx]).detach()
        base[idx] = sde.marginal_mean(guess, t[idx], mix[idx])
    z = torch.randn(x0.shape, device=device, generator=generator, dtype=x0.dtype)
    x_t = base + sde.mult_std(std, z)

    use_pit = torch.zeros(b, dtype=torch.bool, device=device)
    if source_order == "pit":
        use_pit = ~mismatch
        if pit_threshold is not None:
            ratio = mismatch_to_noise_ratio(sde, mean, mix, t)
            use_pit = use_pit & (ratio < pit_threshold)
    if strategy == "prior_mismatch_pit":
        use_pit = use_pit | mismatch
    use_pit = use_pit | refine
    return dict(x_t=x_t, t=t, std=std, z=z, base=base, x0=x0, use_pit=use_pit,
                mismatch=mismatch, refine=refine)


def best_permutations(sde, std_score, example, mix, mask=None):
    """Index ``(B,)`` into :func:`permutations` of the ordering with the smallest loss.

    One network evaluation serves every ordering, and the K! losses need no K! target
    tensors: every SDE here treats the sources alike (the mean ``(P + c Pbar) x0 + d y``
    and ``L`` commute with a permutation of the source axis), so
    ``z_pi = z + L^{-1} base - pi(L^{-1} mean_t(x0))`` and, with
    ``a = L s + z + L^{-1} base`` and ``v = L^{-1} mean_t(x0)``,
    ``||a - pi(v)||^2 = ||a||^2 + ||v||^2 - 2 sum_k <a_k, v_pi(k)>``. Only the cross
    terms depend on pi: a (B, K, K) Gram matrix ranks all K! orderings (24 for the four
    music stems) at the cost of K^2 inner products; no (B, K!, K, L) tensor is formed.
    """
    mean, _ = sde.marginal_prob(example["x0"], example["t"], mix)
    a = std_score + example["z"] + sde.mult_std_inv(example["std"], example["base"])
    v = sde.mult_std_inv(example["std"], mean)
    if mask is not None:
        a = a * mask.to(a.dtype)
    gram = torch.einsum("bkn,bjn->bkj", a.detach().double(), v.detach().double())
    perms = permutations(gram.shape[1], gram.device)
    k = torch.arange(gram.shape[1], device=gram.device)
    return gram[:, k, perms].sum(-1).argmax(dim=1)  # (B, K!) cross terms -> best ordering


def score_matching_loss(sde, score, example, mix, mask=None, weight=None):
    """Per-example loss ``(B,)``: ``mean(w (L s + z_pi)**2)``, min over pi where ``use_pit``.

    ``weight`` (broadcastable to (B, 1, L), default 1) weights each sample's squared
    error; the ordering is chosen on the unweighted error (the same ordering whenever
    the weight is constant along the signal, as for every SDE but PriorMixSDE).

    The minimising ordering is found in closed form (:func:`best_permutations`); the
    loss is then evaluated exactly for that one ordering, so its value and gradient are
    those of the minimum over all K! orderings. ``mask`` (B, 1, L) of 0/1 excludes
    padded samples from the mean.
    """
    std_score = sde.mult_std(example["std"], score)
    use_pit = example["use_pit"]
    x0 = example["x0"]
    if x0.shape[1] > 1:  # always computed (cheap): no data-dependent branch to sync on
        perms = permutations(x0.shape[1], x0.device)
        best = best_permutations(sde, std_score, example, mix, mask)
        order = torch.where(use_pit[:, None], perms[best], perms[0])
        x0 = torch.gather(x0, 1, order[..., None].expand_as(x0))
    # z_pi for the chosen ordering: z on ordinary steps (identity), the corrected target
    # on mismatch steps.
    identity = torch.arange(x0.shape[1], device=x0.device)[None]
    target = permuted_noise_targets(sde, x0, example["t"], mix, example["z"], example["base"],
                                    identity)[:, 0]
    sq = (std_score + target).pow(2)  # (B, K, L)
    if weight is not None:
        sq = sq * weight
    if mask is None:
        return sq.mean(dim=(-2, -1))
    m = mask.to(sq.dtype)
    return (sq * m).sum(dim=(-2, -1)) / (m.sum(dim=(-2, -1)) * sq.shape[-2]).clamp_min(1)
