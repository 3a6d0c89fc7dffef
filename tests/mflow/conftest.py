"""Shared settings for the model-library tests."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    # Tiny models run several times faster on one thread than on two contended ones.
    torch.set_num_threads(1)
