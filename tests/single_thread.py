"""A module fixture that runs a test file on one torch thread (import it into the file).

On the shared 2-core CI machine torch's intra-op threads make small bridge / fusion
workloads about 3x slower under load (measured on tests/test_fuser.py +
tests/test_demo_bridge.py: 7.9 s with one thread vs 23 s with two).
"""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
