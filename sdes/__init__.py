"""Score-based SDEs for source separation (pure maths, no nn.Module) and their samplers."""

from sdes.base import SDE, StdOp
from sdes.mix import MixSDE, PriorMixSDE
from sdes.ouve import OUVESDE
from sdes.sampling import (
    CORRECTORS,
    PREDICTORS,
    SAMPLER_DEFAULTS,
    SCHEDULES,
    ald2,
    euler_maruyama,
    get_ode_sampler,
    get_pc_sampler,
    get_time_grid,
    langevin,
    no_corrector,
    no_predictor,
    reverse_diffusion,
    sampler_options,
)

__all__ = [
    "CORRECTORS",
    "MixSDE",
    "OUVESDE",
    "PREDICTORS",
    "PriorMixSDE",
    "SAMPLER_DEFAULTS",
    "SCHEDULES",
    "SDE",
    "StdOp",
    "ald2",
    "euler_maruyama",
    "get_ode_sampler",
    "get_pc_sampler",
    "get_time_grid",
    "langevin",
    "no_corrector",
    "no_predictor",
    "reverse_diffusion",
    "sampler_options",
]
