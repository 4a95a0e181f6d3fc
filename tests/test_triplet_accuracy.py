"""Triplet accuracy against a loop over the triplets."""

from __future__ import annotations

import numpy as np
import pytest

from sktriplet.evaluation.metrics import indexed_triplet_accuracy, triplet_accuracy

from .reference import distance


@pytest.mark.parametrize("kind", ["sqeuclidean", "euclidean", "cosine"])
def test_triplet_accuracy_matches_a_loop(kind):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 4))
    idx = np.array([rng.choice(30, 3, replace=False) for _ in range(200)])
    want = np.mean(
        [distance(emb[a], emb[p], kind) < distance(emb[a], emb[n], kind) for a, p, n in idx]
    )
    assert 0.2 < want < 0.8
    assert triplet_accuracy(
        emb[idx[:, 0]], emb[idx[:, 1]], emb[idx[:, 2]], distance=kind
    ) == pytest.approx(want)
    assert indexed_triplet_accuracy(emb, idx, distance=kind) == pytest.approx(want)


def test_ties_count_as_misses():
    a = np.zeros((2, 2))
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    n = np.array([[0.0, 1.0], [0.0, 2.0]])
    assert triplet_accuracy(a, p, n) == 0.5


def test_triplet_accuracy_errors():
    with pytest.raises(ValueError, match="same shape"):
        triplet_accuracy(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least one triplet"):
        triplet_accuracy(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(ValueError, match="out of range for 3 samples"):
        indexed_triplet_accuracy(np.zeros((3, 2)), [[0, 1, 3]])
