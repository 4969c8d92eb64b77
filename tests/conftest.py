"""Test-suite settings: one intra-op thread (the models here are tiny; threads only add overhead).

Set once at import, so collection and module-scoped fixtures run on one thread too, and again
around every test by :func:`_one_thread`, so a test that changes the count cannot leak it into
the next one. Test files need no thread fixture of their own."""

import pytest
import torch

# the shared checks in _helpers assert; rewritten like a test's asserts, their failures show values
pytest.register_assert_rewrite("_helpers")

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread before and after each test, whatever the test set."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    yield
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
