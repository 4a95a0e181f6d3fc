"""embed over an iterable of batches: the preallocated output against a plain loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sktriplet.runtime.inference import embed


def _reference(module: torch.nn.Module, batches: list[torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([module(b).numpy() for b in batches])


@pytest.mark.parametrize("announced", [None, 23, 30, 10])
def test_batches_embed_like_a_plain_loop_whatever_count_is_announced(announced):
    # 23 samples in batches of 5, 5, 5, 5, 3; announced exactly, too many, too few.
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.5))
    X = torch.randn(23, 4)
    batches = list(X.split(5))
    expected = _reference(module.eval(), batches)
    module.train()
    out = embed(module, iter(batches), n_samples=announced)
    assert out.shape == (23, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)
    assert module.training  # its mode is restored


def test_no_batches_give_an_empty_array():
    out = embed(torch.nn.Linear(4, 3), iter([]), n_samples=0)
    assert out.shape[0] == 0
