"""DiffSep LightningModule: score-matching training, EMA, validation separation, inference.

The module receives built parts (score network, SDE, optimizer and scheduler
partials) and plain options, as in lightning-hydra-template. How training examples
are drawn and scored lives in :mod:`models.training_strategies`.
"""

import pytorch_lightning as pl
import torch

from metrics import separation as metrics
from models.ema import EMA
from models.loading import EMA_KEY, STATE_KEY
from models.tb_logging import log_separation_example, tensorboard_writer
from models.training_strategies import (
    SOURCE_ORDERS,
    TIME_SAMPLINGS,
    check_refine_p,
    draw_training_example,
    resolve_train_strategy,
    score_matching_loss,
)
from sdes import get_pc_sampler, sampler_options

NORM_EPS = 1e-5
PARAMETERIZATIONS = ("score", "data")  # what the network outputs: the score, or E[x0 | x_t]
LOSS_WEIGHTINGS = ("score", "unit")


def normalize(mix, tgt=None, eps=NORM_EPS):
    """Per-example normalisation by the mixture: ``(mix_n, tgt_n, stats)``.

    The targets are shifted by mean / K each so that they still sum to the
    normalised mixture (the SDE's prior is built on that sum).
    """
    mean = mix.mean(dim=(1, 2), keepdim=True)
    std = mix.std(dim=(1, 2), keepdim=True).clamp_min(eps)
    mix_n = (mix - mean) / std
    tgt_n = None if tgt is None else (tgt - mean / tgt.shape[1]) / std
    return mix_n, tgt_n, (mean, std)


def denormalize(x, stats):
    """Inverse of :func:`normalize` for K signals ``(B, K, L)`` that sum to the mixture."""
    mean, std = stats
    return x * std + mean / x.shape[1]


def _unpack(batch):
    mix, tgt = batch[0], batch[1]
    lengths = batch[2] if len(batch) > 2 else None
    return mix, tgt, lengths


def _length_mask(lengths, n):
    """(B, 1, L) 0/1 mask of the valid samples, or None when nothing is padded."""
    if lengths is None or bool((lengths == n).all()):
        return None
    return (torch.arange(n, device=lengths.device)[None, :] < lengths[:, None])[:, None]


class DiffSepModel(pl.LightningModule):
    """Score-based source separation model (DiffSep).

    Args:
        score_model: ``forward(x (B,K,L), t (B,), mix (B,1,L)) -> score (B,K,L)``.
        sde: the SDE (``sdes.MixSDE``, ``PriorMixSDE``, ``OUVESDE``).
        optimizer: partial taking ``params``; scheduler: partial taking
            ``optimizer`` or None, stepped as ``scheduler_config`` says.
        fs, n_sources, source_names: audio rate, K and the names of the sources.
        t_eps, time_sampling, source_order, pit_threshold: see training_strategies.
        train_strategy, mismatch_p: ``standard``, ``prior_mismatch_pit`` or
            ``prior_mismatch_fraction`` and its per-example probability;
            ``init_hack``/``init_hack_p`` are the original numeric aliases.
        ema_decay, ema_warmup: EMA of the weights, used for validation, test and
            inference (warm-up: decay min(ema_decay, (1 + n) / (10 + n)) at update n).
        lr_warmup_steps: linear learning-rate warm-up over that many optimizer steps.
        sampler: defaults of :meth:`separate`.
        valid_max_sep_batches: validation batches that are fully separated.
        val_pesq_mode: null, "nb" or "wb"; log_audio_n: examples sent to TensorBoard.
        score_skip_var: null, or the variance ``v`` of a Gaussian source model whose
            exact score (:meth:`sdes.base.SDE.gaussian_source_score`) is added to the
            network's output, so that the network learns only what that model lacks
            (which source is which) instead of also re-deriving the noise of ``x_t``.
            With ``parameterization: data`` the network sees that model's posterior
            mean instead of ``x_t`` (the same information about the sources: the
            noise on their sum is removed, the rest shrunk towards ``mix / K``), and
            the sources are that mean plus the network's output, made to sum to zero
            over the sources and scaled by the posterior std
            (:meth:`sdes.base.SDE.gaussian_source_posterior`): the estimates always
            sum to the mixture, and at small t, where the posterior is sharp, the
            network cannot move them far from ``x_t``.
        mismatch_weight: loss weight of the mismatch steps (t = T from the prior)
            against the ordinary steps (1: the paper's plain mean).
        refine_p: per-example probability of a refinement step (our extension, 0 by
            default): ``x_t`` is drawn around the model's own one-step estimate of the
            sources from a prior draw (:meth:`one_step_estimate`, no gradient) instead
            of around the true sources, at an ordinary t, and the target is the true
            sources in the best order (see
            :func:`models.training_strategies.draw_training_example`). The sampler's
            states after its first step carry the trace of such a guess, not of the
            true sources; these steps teach the network to improve on the guess
            instead of reading it as the truth.
        parameterization: ``score``: the network's output is the score (DiffSep);
            ``data``: it is an estimate of the sources ``E[x0 | x_t]``, turned into the
            score by :meth:`sdes.base.SDE.data_score` (the loss is then a weighted
            regression on the sources; the sampler is unchanged).
        loss_weighting: ``score``: the score-matching loss as it is; ``unit`` (needs
            ``parameterization: data`` and ``score_skip_var``): each squared error is
            divided by ``w(t) = a_diff^2 v / (a_diff^2 v + diff^2)``, the share of the
            source variance that ``x_t`` explains, so the loss is ``|Pbar (r - r*)|^2``
            on the network's output ``r`` at every t (EDM's ``1 / c_out^2``) instead
            of fading out towards t = T, where the sources are told apart.
    """

    def __init__(self, score_model, sde, optimizer, scheduler=None, *, fs=8000, n_sources=2,
                 source_names=None, t_eps=0.03, time_sampling="uniform", source_order="random",
                 pit_threshold=None, train_strategy="standard", mismatch_p=None, init_hack=None,
                 init_hack_p=None, ema_decay=0.999, ema_warmup=True, lr_warmup_steps=0,
                 scheduler_config=None, sampler=None, valid_max_sep_batches=1,
                 val_pesq_mode=None, log_audio_n=2, val_seed=0, score_skip_var=None,
                 mismatch_weight=1.0, parameterization="score", loss_weighting="score",
                 refine_p=0.0):
        super().__init__()
        self.score_model = score_model
        self.sde = sde
        self.fs = int(fs)
        self.n_sources = int(n_sources)
        if sde.n_sources != self.n_sources:
            raise ValueError(
                f"the SDE has n_sources={sde.n_sources} but the model n_sources={self.n_sources}")
        self._named_sources = bool(source_names)
        self.source_names = list(source_names or [f"s{i + 1}" for i in range(self.n_sources)])
        if len(self.source_names) != self.n_sources:
            raise ValueError(f"{len(self.source_names)} source_names for {n_sources} sources")
        if time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"time_sampling must be one of {TIME_SAMPLINGS}")
        if source_order not in SOURCE_ORDERS:
            raise ValueError(f"source_order must be one of {SOURCE_ORDERS}")
        if pit_threshold is not None and source_order != "pit":
            raise ValueError("pit_threshold needs source_order: pit")
        if not 0.0 < t_eps < sde.T:
            raise ValueError(f"t_eps must be in (0, T), got {t_eps}")
        if val_pesq_mode not in (None, "nb", "wb"):
            raise ValueError(f"val_pesq_mode must be null, 'nb' or 'wb', got {val_pesq_mode!r}")
        self.t_eps = float(t_eps)
        self.time_sampling = time_sampling
        self.source_order = source_order
        self.pit_threshold = pit_threshold
        self.train_strategy, self.mismatch_p = resolve_train_strategy(
            train_strategy, mismatch_p, init_hack, init_hack_p, n_steps=sde.N)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_config = dict(scheduler_config or {"interval": "epoch", "frequency": 1})
        self.lr_warmup_steps = int(lr_warmup_steps or 0)
        self.sampler = sampler_options(sampler, sde.N)  # null entries: sdes.SAMPLER_DEFAULTS
        self.valid_max_sep_batches = int(valid_max_sep_batches)
        self.val_pesq_mode = val_pesq_mode
        self.log_audio_n = int(log_audio_n)
        self.val_seed = int(val_seed)
        if score_skip_var is not None and not score_skip_var > 0:
            raise ValueError(f"score_skip_var must be null or > 0, got {score_skip_var}")
        self.score_skip_var = None if score_skip_var is None else float(score_skip_var)
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, "
                             f"got {parameterization!r}")
        self.parameterization = parameterization
        backbone = getattr(score_model, "backbone", score_model)
        if parameterization == "data" and getattr(backbone, "scale_by_sigma", False):
            raise ValueError(
                "parameterization 'data' with a backbone that divides its output by t "
                "(scale_by_sigma): the network outputs sources, not a score; set "
                "model.score_model.backbone.scale_by_sigma=false")
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, "
                             f"got {loss_weighting!r}")
        if loss_weighting == "unit" and (parameterization != "data" or score_skip_var is None):
            raise ValueError("loss_weighting: unit weights the output of the data "
                             "parameterisation with the Gaussian skip: set "
                             "parameterization: data and score_skip_var (e.g. 0.5)")
        self.loss_weighting = loss_weighting
        if not float(mismatch_weight) > 0:
            raise ValueError(f"mismatch_weight must be > 0, got {mismatch_weight}")
        self.mismatch_weight = float(mismatch_weight)
        self.refine_p = float(refine_p or 0.0)
        check_refine_p(self.refine_p, self.mismatch_p)  # at build time, not at the first step
        self.ema = EMA(self.score_model, ema_decay, ema_warmup)
        self._warmup_base_lr = None
        self._audio_logged = 0
        # Set by models.loading.load_model: the run's resolved config and name, and the
        # one-shot separator that a shipped model blends its estimate with
        # (models/blend.py; None: the sampler's estimate as it is).
        self.config = None
        self.exp_name = None
        self.partner = None

    @property
    def labelled_sources(self):
        """True when output k is source ``source_names[k]`` (fixed order, e.g. music stems).

        Otherwise the outputs come in an arbitrary order and are matched to the
        references (validation, evaluation) or between chunks (``separate.py``).
        """
        return self.source_order == "fixed"

    def forward(self, x, t, mix):
        return self.score(x, t, mix)

    def score(self, x, t, mix):
        """The model's score of ``x_t`` (normalised scale): the network's output, plus
        the Gaussian-source score when ``score_skip_var`` is set; with
        ``parameterization: data`` the score whose posterior mean is the output."""
        if self.parameterization == "data" and self.score_skip_var is not None:
            mean, std = self.sde.gaussian_source_posterior(x, t, mix, self.score_skip_var)
            out = self.score_model(mean, t, mix)
            out = mean + std * (out - out.mean(dim=1, keepdim=True))
            return self.sde.data_score(x, t, mix, out)
        out = self.score_model(x, t, mix)
        if self.parameterization == "data":
            return self.sde.data_score(x, t, mix, out)
        if self.score_skip_var is not None:
            out = out + self.sde.gaussian_source_score(x, t, mix, self.score_skip_var)
        return out

    def one_step_estimate(self, x, t, mix):
        """Tweedie's estimate ``E[x0 | x_t]`` from the model's score (normalised scale); with
        ``parameterization: data`` this is the network's own estimate of the sources."""
        return self.sde.tweedie(x, t, mix, self.score(x, t, mix))

    # ---- loss ----------------------------------------------------------------------
    def compute_loss(self, mix, tgt, lengths=None, generator=None):
        """Score-matching loss of a batch in the input scale (normalised inside)."""
        mix_n, tgt_n, _ = normalize(mix, tgt)
        example = draw_training_example(
            self.sde, tgt_n, mix_n, t_eps=self.t_eps, time_sampling=self.time_sampling,
            source_order=self.source_order, strategy=self.train_strategy,
            mismatch_p=self.mismatch_p, pit_threshold=self.pit_threshold, generator=generator,
            refine_p=self.refine_p, estimate=self.one_step_estimate)
        score = self.score(example["x_t"], example["t"], mix_n)
        mask = _length_mask(lengths, mix.shape[-1])
        weight = None
        if self.loss_weighting == "unit":
            std = example["std"]
            _, a_diff, _ = self.sde.mean_coefs(example["t"][:, None, None])
            weight = 1.0 + std.diff**2 / (a_diff**2 * self.score_skip_var)
        loss = score_matching_loss(self.sde, score, example, mix_n, mask, weight)
        if self.mismatch_weight != 1.0:
            loss = loss * torch.where(example["mismatch"], self.mismatch_weight, 1.0)
        return loss.mean()

    def training_step(self, batch, batch_idx):
        mix, tgt, lengths = _unpack(batch)
        loss = self.compute_loss(mix, tgt, lengths)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True,
                 batch_size=mix.shape[0])
        return loss

    # ---- optimisation --------------------------------------------------------------
    def configure_optimizers(self):
        opt = self.optimizer_factory(params=self.parameters())
        self._warmup_base_lr = [group["lr"] for group in opt.param_groups]
        if self.scheduler_factory is None:
            return opt
        sched = self.scheduler_factory(optimizer=opt)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, **self.scheduler_config}}

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        if self.global_step < self.lr_warmup_steps:
            # Warm-up overrides any scheduler during its first steps.
            scale = (self.global_step + 1) / self.lr_warmup_steps
            for group, base in zip(optimizer.param_groups, self._warmup_base_lr):
                group["lr"] = base * scale
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.ema.update(self.score_model)

    def on_before_optimizer_step(self, optimizer):
        # Called after unscaling and before clipping: this is the pre-clip norm.
        grads = [p.grad.detach() for p in self.parameters() if p.grad is not None]
        if grads:
            norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g)
                                                         for g in grads]))
            self.log("train/grad_norm", norm, on_step=True, on_epoch=False)
        self.log("train/lr", float(optimizer.param_groups[0]["lr"]), on_step=True,
                 on_epoch=False)

    # ---- EMA bookkeeping -----------------------------------------------------------
    def on_validation_epoch_start(self):
        self.ema.swap_in(self.score_model)
        self._audio_logged = 0

    def on_validation_epoch_end(self):
        self.ema.swap_out(self.score_model)

    def on_test_epoch_start(self):
        self.ema.swap_in(self.score_model)

    def on_test_epoch_end(self):
        self.ema.swap_out(self.score_model)

    def on_save_checkpoint(self, checkpoint):
        checkpoint[EMA_KEY] = self.ema.state_dict()
        if self.ema.swapped_in:
            # Saved mid-evaluation: keep the training weights in the state dict.
            for name, value in self.ema.training_weights().items():
                checkpoint[STATE_KEY][f"score_model.{name}"] = value.detach().clone()

    def on_load_checkpoint(self, checkpoint):
        if EMA_KEY in checkpoint:
            self.ema.load_state_dict(checkpoint[EMA_KEY])

    # ---- inference -----------------------------------------------------------------
    @torch.no_grad()
    def separate(self, mix, N=None, snr=None, corrector_steps=None, denoise=None, schedule=None,
                 predictor=None, corrector=None, final_step=None, intermediate=False,
                 generator=None, blend=True):
        """Separate ``mix (B, 1, L)`` -> ``(est (B, K, L), nfe, intermediates or None)``.

        Outputs are in the scale of the input; ``intermediates`` is the list of
        ``(t, x_t)`` states of the sampler, de-normalised too. Options left as None
        take the module's ``sampler`` defaults. With a ``partner`` attached (a shipped
        model's one-shot separator, :mod:`models.blend`) and ``blend`` true, ``est`` is
        the blend of the sampler's estimate with the partner's (one more network
        evaluation per speed view of the partner, counted in ``nfe``); the intermediates
        stay the sampler's.
        """
        given = dict(N=N, snr=snr, corrector_steps=corrector_steps, denoise=denoise,
                     schedule=schedule, predictor=predictor, corrector=corrector,
                     final_step=final_step)
        opt = {k: (self.sampler[k] if v is None else v) for k, v in given.items()}
        mix_n, _, stats = normalize(mix)
        sampler = get_pc_sampler(
            opt["predictor"], opt["corrector"], self.sde, self.score, mix_n, N=opt["N"],
            snr=opt["snr"], corrector_steps=opt["corrector_steps"], denoise=opt["denoise"],
            eps=self.t_eps, intermediate=intermediate, schedule=opt["schedule"],
            final_step=opt["final_step"], generator=generator)
        out = sampler()
        est, nfe = denormalize(out[0], stats), out[1]
        if blend and self.partner is not None:
            est, nfe = self.partner.blend(est, mix), nfe + self.partner.nfe
        states = None
        if intermediate:
            states = [(t, denormalize(x, stats)) for t, x in out[2]]
        return est, nfe, states

    # ---- validation and test -------------------------------------------------------
    def _separation_metrics(self, mix, est, tgt, lengths):
        """Per-example mean SI-SDR, SI-SDR improvement and PESQ (None when unavailable).

        Labelled sources are scored in the model's order; otherwise the order that
        maximises the SI-SDR is used (PIT).
        """
        rows = []
        for b in range(mix.shape[0]):
            n = int(lengths[b]) if lengths is not None else mix.shape[-1]
            e, r, m = est[b : b + 1, :, :n], tgt[b : b + 1, :, :n], mix[b : b + 1, :, :n]
            if self.labelled_sources:
                sdr, perm = metrics.si_sdr(e, r), torch.arange(self.n_sources)[None]
            else:
                sdr, perm = metrics.pit_si_sdr(e, r)
            sdr_mix = metrics.si_sdr(m.expand_as(r), r)
            matched = e[0, perm[0]]
            pesq_vals = []
            if self.val_pesq_mode is not None:
                for k in range(self.n_sources):
                    val, _ = metrics.pesq_score(matched[k].cpu().numpy(), r[0, k].cpu().numpy(),
                                                self.fs, self.val_pesq_mode)
                    if val is not None:
                        pesq_vals.append(val)
            rows.append(dict(si_sdr=float(sdr.mean()), si_sdri=float((sdr - sdr_mix).mean()),
                             pesq=sum(pesq_vals) / len(pesq_vals) if pesq_vals else None,
                             per_source=[float(v) for v in sdr[0]], matched=matched, n=n))
        return rows

    def _log_metrics(self, stage, rows):
        for key in ("si_sdr", "si_sdri", "pesq"):
            vals = [row[key] for row in rows if row[key] is not None]
            if vals:
                self.log(f"{stage}/{key}", sum(vals) / len(vals), on_epoch=True,
                         sync_dist=True, batch_size=len(vals))
        if rows and self._named_sources:
            # Per-reference SI-SDR of named sources, e.g. val/si_sdr_vocals.
            for k, name in enumerate(self.source_names):
                self.log(f"{stage}/si_sdr_{name}", sum(r["per_source"][k] for r in rows)
                         / len(rows), on_epoch=True, sync_dist=True, batch_size=len(rows))

    def _maybe_log_audio(self, mix, tgt, rows):
        writer = tensorboard_writer(self.logger) if self.logger is not None else None
        if writer is None or self.global_rank != 0 or self.trainer.sanity_checking:
            return
        for b, row in enumerate(rows):
            if self._audio_logged >= self.log_audio_n:
                return
            n = row["n"]
            log_separation_example(writer, f"val_example_{self._audio_logged}",
                                   mix[b, :, :n], row["matched"], tgt[b, :, :n], self.fs,
                                   self.source_names, self.global_step)
            self._audio_logged += 1

    def validation_step(self, batch, batch_idx):
        mix, tgt, lengths = _unpack(batch)
        # A fixed noise per batch makes val/loss comparable from epoch to epoch.
        gen = torch.Generator(device=mix.device).manual_seed(self.val_seed + batch_idx)
        loss = self.compute_loss(mix, tgt, lengths, generator=gen)
        self.log("val/loss", loss, on_epoch=True, sync_dist=True, batch_size=mix.shape[0])
        if batch_idx < self.valid_max_sep_batches:
            est, _, _ = self.separate(mix, generator=gen)
            rows = self._separation_metrics(mix, est, tgt, lengths)
            self._log_metrics("val", rows)
            self._maybe_log_audio(mix, tgt, rows)
        return loss

    def test_step(self, batch, batch_idx):
        mix, tgt, lengths = _unpack(batch)
        gen = torch.Generator(device=mix.device).manual_seed(self.val_seed + batch_idx)
        est, nfe, _ = self.separate(mix, generator=gen)
        self._log_metrics("test", self._separation_metrics(mix, est, tgt, lengths))
        self.log("test/nfe", float(nfe), on_epoch=True, sync_dist=True, batch_size=mix.shape[0])
