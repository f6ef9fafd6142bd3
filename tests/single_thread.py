"""Transitional: tests/test_fuser.py and tests/test_demo_bridge.py still import this autouse
fixture. New tests opt into conftest's `single_torch_thread` fixture with
``pytestmark = pytest.mark.usefixtures("single_torch_thread")``; delete this file once those
two modules do."""

import pytest

from pcseg import testing


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    """One torch intra-op thread for the whole importing module."""
    with testing.single_torch_thread():
        yield
