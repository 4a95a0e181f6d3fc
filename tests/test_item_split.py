"""Item splits of index triplets, against set arithmetic done one triplet at a time."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, cross_val_score

from sktriplet import TripletEmbedder
from sktriplet.evaluation.item_split import ItemShuffleSplit, train_test_split_items

FAST = {"max_epochs": 2, "n_components": 4, "random_state": 0, "device": "cpu"}


def _all_triplets(n_items):
    return np.array(list(itertools.permutations(range(n_items), 3)), dtype=np.int64)


def _reference(triplets, test_items):
    """Rows of the triplets wholly outside / wholly inside ``test_items``, by a loop."""
    test_items = set(test_items)
    train, test = [], []
    for row, t in enumerate(triplets.tolist()):
        inside = [i in test_items for i in t]
        if not any(inside):
            train.append(row)
        elif all(inside):
            test.append(row)
    return train, test


@pytest.mark.parametrize(("n_items", "test_size", "n_test"), [(12, 0.3, 4), (10, 4, 4)])
def test_split_of_every_triplet_matches_the_set_reference(n_items, test_size, n_test):
    # With every ordered triplet present, each item of a side appears in a
    # triplet of that side, so the sides are read off the output.
    triplets = _all_triplets(n_items)
    train, test = train_test_split_items(triplets, test_size=test_size, random_state=3)
    test_items = set(test.ravel().tolist())
    train_items = set(train.ravel().tolist())
    assert len(test_items) == n_test
    assert train_items == set(range(n_items)) - test_items
    want_train, want_test = _reference(triplets, test_items)
    np.testing.assert_array_equal(train, triplets[want_train])
    np.testing.assert_array_equal(test, triplets[want_test])
    assert len(test) == n_test * (n_test - 1) * (n_test - 2)


def test_sparse_triplets_keep_sides_apart_and_order():
    rng = np.random.default_rng(0)
    triplets = np.array([rng.choice(40, 3, replace=False) for _ in range(3000)])
    _, first = np.unique(triplets, axis=0, return_index=True)
    triplets = triplets[np.sort(first)]  # distinct rows, so each has one position
    train, test = train_test_split_items(triplets, test_size=0.3, random_state=1)
    assert not set(train.ravel().tolist()) & set(test.ravel().tolist())
    # Every kept triplet is a row of the input, in the input's order.
    rows = {tuple(t): i for i, t in enumerate(triplets.tolist())}
    for part in (train, test):
        positions = [rows[tuple(t)] for t in part.tolist()]
        assert positions == sorted(positions)
    # No triplet wholly on one side was dropped.
    test_items = set(test.ravel().tolist())
    want_train, want_test = _reference(triplets, test_items)
    assert len(test) == len(want_test)
    assert len(train) <= len(want_train)  # test items unseen in test triplets look like train


def test_random_state_reproduces_and_seeds_differ():
    triplets = _all_triplets(12)
    a = train_test_split_items(triplets, random_state=0)
    b = train_test_split_items(triplets, random_state=0)
    c = train_test_split_items(triplets, random_state=1)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    cv = ItemShuffleSplit(n_splits=3, random_state=0)
    first = [test.tolist() for _, test in cv.split(triplets)]
    assert first == [test.tolist() for _, test in cv.split(triplets)]
    assert len({str(t) for t in first}) == 3


def test_every_item_is_a_test_item_about_test_size_of_the_time():
    triplets = _all_triplets(10)
    cv = ItemShuffleSplit(n_splits=400, test_size=0.3, random_state=0)
    counts = np.zeros(10)
    for _, test in cv.split(triplets):
        counts[np.unique(triplets[test])] += 1
    np.testing.assert_allclose(counts / 400, 0.3, atol=0.08)


def test_splitter_rows_match_the_function_and_count():
    triplets = _all_triplets(9)
    cv = ItemShuffleSplit(n_splits=2, test_size=3, random_state=5)
    assert cv.get_n_splits() == 2
    for train, test in cv.split(triplets):
        assert len(train) == 6 * 5 * 4 and len(test) == 3 * 2 * 1
        want_train, want_test = _reference(triplets, set(triplets[test].ravel().tolist()))
        assert train.tolist() == want_train and test.tolist() == want_test
    assert "ItemShuffleSplit(n_splits=2" in repr(cv)


@pytest.mark.parametrize(
    ("triplets", "kwargs", "message"),
    [
        (np.zeros((4, 2), dtype=int), {}, r"shape \(n_triplets, 3\)"),
        (np.ones((4, 3)) * [0, 1, 2], {}, "must hold integers"),
        ([[0, 1, -2]], {}, "item numbers >= 0"),
        ([[0, 0, 1]], {}, "anchor == positive"),
        (np.zeros((0, 3), dtype=int), {}, "got 0 triplets"),
        (_all_triplets(6), {"test_size": 1.5}, "test_size must be a fraction"),
        (_all_triplets(6), {"test_size": 6}, r"must lie in \[1, 5\]"),
        (_all_triplets(6), {"test_size": 0.2}, "test part is empty"),
        (_all_triplets(6), {"test_size": 0.9}, "training part is empty"),
    ],
)
def test_bad_input_is_refused_with_the_fix(triplets, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_test_split_items(triplets, random_state=0, **kwargs)
    with pytest.raises(ValueError, match=message):
        next(ItemShuffleSplit(random_state=0, **kwargs).split(triplets))


@pytest.mark.parametrize("n_splits", [0, 1.5, True])
def test_bad_n_splits(n_splits):
    with pytest.raises(ValueError, match="n_splits must be an int"):
        ItemShuffleSplit(n_splits)


def _clusters(seed=0, n=24):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = (rng.normal(size=(n, 5)) + 3 * np.eye(3, 5)[y]).astype(np.float32)
    triplets = _all_triplets(n)
    keep = (y[triplets[:, 0]] == y[triplets[:, 1]]) & (y[triplets[:, 0]] != y[triplets[:, 2]])
    return X, triplets[keep]


def test_cross_val_score_scores_the_agreement_on_held_out_items():
    X, triplets = _clusters()
    cv = ItemShuffleSplit(n_splits=2, test_size=0.5, random_state=0)
    est = TripletEmbedder(triplets=True, samples=X, mining="none", **FAST)
    scores = cross_val_score(est, triplets, cv=cv)
    for score, (train, test) in zip(scores, cv.split(triplets), strict=True):
        Z = est.fit(triplets[train]).transform(X).astype(np.float64)
        agree = [
            np.sum((Z[a] - Z[p]) ** 2) < np.sum((Z[a] - Z[n]) ** 2)
            for a, p, n in triplets[test].tolist()
        ]
        assert score == pytest.approx(np.mean(agree))


def test_grid_search_takes_the_item_splitter():
    X, triplets = _clusters()
    grid = GridSearchCV(
        TripletEmbedder(triplets=True, samples=X, mining="none", **FAST),
        {"margin": [0.2, 0.5]},
        cv=ItemShuffleSplit(n_splits=2, test_size=0.5, random_state=0),
    ).fit(triplets)
    scores = grid.cv_results_["mean_test_score"]
    assert len(scores) == 2 and np.all((scores >= 0) & (scores <= 1))
