"""Selection tests run single-threaded (see helpers.py for the tiny models)."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="package")
def one_thread():
    """Single-threaded torch: these models are tiny, and on a shared CPU extra threads only spin."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
