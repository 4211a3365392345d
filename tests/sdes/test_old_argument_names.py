"""The SDEs' number of sources was called `ndim` (the model.sde node of checkpoints written
before the rename still says so): the old keyword builds the same SDE."""

import pytest
import torch
from hydra.utils import instantiate

import sdes

PARAMS = {
    sdes.MixSDE: {"d_lambda": 2.0, "sigma_min": 0.05, "sigma_max": 0.5, "N": 30},
    sdes.PriorMixSDE: {"d_lambda": 2.0, "sigma_min": 0.05, "sigma_max": 0.5, "N": 30,
                       "avg_len": 64},
    sdes.OUVESDE: {"theta": 1.5, "sigma_min": 0.05, "sigma_max": 0.5, "N": 30},
}


@pytest.mark.parametrize("cls", list(PARAMS), ids=lambda c: c.__name__)
@pytest.mark.parametrize("k", [2, 3])
def test_old_keyword_builds_the_same_sde(cls, k):
    new = cls(n_sources=k, **PARAMS[cls])
    with pytest.deprecated_call(match="ndim"):
        old = cls(ndim=k, **PARAMS[cls])
    assert type(old) is cls and vars(old) == vars(new) and old.n_sources == k
    assert vars(cls(k, *PARAMS[cls].values())) == vars(new)  # positional
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(2, 1, 100, generator=g)
    x0 = torch.randn(2, k, 100, generator=g)
    (mean_old, std_old), (mean_new, std_new) = (s.marginal_prob(x0, 0.4, mix) for s in (old, new))
    torch.testing.assert_close(mean_old, mean_new)
    torch.testing.assert_close(old.mult_std(std_old, x0), new.mult_std(std_new, x0))
    with pytest.deprecated_call():  # the old attribute, read-only
        assert new.ndim == k


@pytest.mark.parametrize("cls", list(PARAMS), ids=lambda c: c.__name__)
def test_both_or_neither_is_a_type_error(cls):
    with pytest.raises(TypeError, match="both n_sources= and its deprecated alias ndim="):
        cls(n_sources=2, ndim=2, **PARAMS[cls])
    with pytest.raises(TypeError, match="both"):
        cls(2, *PARAMS[cls].values(), ndim=2)
    with pytest.raises(TypeError, match=rf"{cls.__name__}\(\) missing .* n_sources \(formerly"):
        cls(**PARAMS[cls])
    with pytest.raises(TypeError):  # any other bad call keeps Python's own error
        cls(2, *PARAMS[cls].values(), 7, ndim=2)


def test_a_checkpoint_era_sde_node_still_instantiates():
    node = {"_target_": "sdes.MixSDE", "ndim": 2, "d_lambda": 2.0, "sigma_min": 0.05,
            "sigma_max": 0.5, "N": 30}  # fmt: skip
    with pytest.deprecated_call():
        sde = instantiate(node)
    assert type(sde) is sdes.MixSDE and sde.n_sources == 2 and sde.N == 30
