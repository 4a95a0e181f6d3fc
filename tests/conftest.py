import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits


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
