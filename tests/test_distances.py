"""Distances: the mined pairs' values and gradients against plain autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sktriplet.triplets.distances import gather_distances, paired_distances, pairwise_distances

DISTANCES = ["sqeuclidean", "euclidean", "cosine"]


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("width", [1, 5])
def test_gather_distances_matches_autograd_on_paired_differences(distance, width):
    # The reference differentiates the pairs' distances computed from
    # differences (paired_distances) with autograd; gather_distances reads
    # the values off the matrix and builds the gradient by hand.
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(20, 4))
    emb[3] = emb[7]  # a coincident pair, chosen below
    cols = rng.integers(0, 20, size=(20, width))
    cols[3, 0] = 7
    cols[cols == np.arange(20)[:, None]] = 0  # no pair of a row with itself
    cols[0][cols[0] == 0] = 1
    weights = torch.tensor(rng.normal(size=(20, width)))
    c = torch.tensor(cols)

    x = torch.tensor(emb, requires_grad=True)
    dist = pairwise_distances(x.detach(), distance=distance)
    values = gather_distances(x, dist, c, distance=distance)
    (values * weights).sum().backward()

    y = torch.tensor(emb, requires_grad=True)
    expected = paired_distances(y[:, None, :], y[c], distance=distance)
    (expected * weights).sum().backward()

    torch.testing.assert_close(values, expected.detach(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(x.grad, y.grad, rtol=1e-9, atol=1e-9)


def test_gather_distances_takes_one_column_per_row():
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    dist = pairwise_distances(x.detach())
    cols = torch.tensor([1, 0, 3, 2, 5, 4])
    out = gather_distances(x, dist, cols)
    assert out.shape == (6,)
    torch.testing.assert_close(out, dist[torch.arange(6), cols])
    torch.autograd.gradcheck(
        lambda e: gather_distances(e, pairwise_distances(e.detach()), cols), (x,)
    )
