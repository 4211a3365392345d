"""Fixtures for the model tests."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread(request):
    """One intra-op thread except for slow (large-network) tests: the others run many tiny
    ops, for which OpenMP barriers on a busy 2-core machine cost more than they save."""
    n = torch.get_num_threads()
    if request.node.get_closest_marker("slow") is None:
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
