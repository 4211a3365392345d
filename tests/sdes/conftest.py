"""The SDE tests work on small tensors: one intra-op thread is as fast, and it avoids the
tenfold slowdown of OpenMP threads spinning on a busy 2-core machine."""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
