import os

# MKL picks its kernels by CPU; on some (e.g. AMD EPYC with AVX-512) the same
# dot product rounds differently in different columns of one matrix product,
# so two identical gallery rows can get distances one ulp apart and exact ties
# (which the metrics break by index) stop being exact. The tests compare tie
# order against brute-force references, so they ask MKL for its
# CPU-independent, reproducible code path. Set before torch makes any MKL call.
os.environ.setdefault("MKL_CBWR", "COMPATIBLE")

import socket  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digits():
    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


@pytest.fixture(scope="session")
def small_digits(digits):
    X, y = digits
    return X[:400], y[:400]


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def run_cli(capsys):
    """Run the ``sktriplet`` command in-process: ``run_cli(*argv) -> (status, stdout, stderr)``."""
    from sktriplet.cli import main

    def run(*argv):
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


# tests/data holds files and the script that wrote them, not tests.
collect_ignore = ["data"]
