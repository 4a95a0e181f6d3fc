import warnings

import numpy as np
import pytest
import torch
from torch import nn

from sktriplet import TripletEmbedder
from sktriplet.evaluation.metrics import retrieval_scores
from sktriplet.training.callbacks import CollapseWarning

FAST = {"batch_size": 64, "samples_per_class": 4, "random_state": 0}


def test_history_has_mining_statistics(small_digits):
    X, y = small_digits
    emb = TripletEmbedder(max_epochs=2, **FAST).fit(X, y)
    for row in emb.net_.history:
        assert 0.0 <= row["train_active"] <= 1.0
        assert 0.0 <= row["train_fallback"] <= 1.0
        # unit embeddings, squared distances lie in [0, 4]
        assert 0.0 <= row["train_d_ap"] <= 4.0 and 0.0 <= row["train_d_an"] <= 4.0
        assert 0.0 < row["train_spread"] <= 4.0
    # Training separates classes: negatives end farther than positives.
    last = emb.net_.history[-1]
    assert last["train_d_an"] > last["train_d_ap"]


@pytest.mark.parametrize("split", ["class", "sample"])
def test_validation_records_scores_and_keeps_the_best_epoch(digits, split):
    X, y = digits
    emb = TripletEmbedder(
        max_epochs=6, validation_fraction=0.3, validation_split=split, **FAST
    ).fit(X, y)
    history = emb.net_.history
    # Epoch 0 (the untrained network) competes with the six epochs.
    scores = [history[0]["valid_map_at_r_start"]] + [row["valid_map_at_r"] for row in history]
    assert len(scores) == len(history) + 1 == 7
    assert emb.best_validation_score_ == max(scores)
    assert emb.best_epoch_ == int(np.argmax(scores))
    held = emb.validation_indices_
    if split == "class":
        # whole classes are held out, 3 of 10
        assert len(np.unique(y[held])) == 3
        assert not np.isin(np.delete(y, held), y[held]).any()
    else:
        assert len(np.unique(y[held])) == 10
        assert 0.25 < len(held) / len(y) < 0.35
    # The kept weights are the best epoch's: a fresh evaluation agrees.
    fresh = retrieval_scores(emb.transform(X[held]), y[held], k=1)["map_at_r"]
    assert fresh == pytest.approx(emb.best_validation_score_, abs=1e-6)
    # The fitted net does not keep the held-out data.
    assert dict(emb.net_.callbacks_)["retrieval_validation"].X is None


def test_early_stopping_stops_and_restores(digits):
    X, y = digits
    emb = TripletEmbedder(
        max_epochs=40, validation_fraction=0.3, n_iter_no_change=2, lr=3e-3, **FAST
    ).fit(X, y)
    n_epochs = len(emb.net_.history)
    assert n_epochs < 40
    assert n_epochs == emb.best_epoch_ + 2
    held = emb.validation_indices_
    fresh = retrieval_scores(emb.transform(X[held]), y[held], k=1)["map_at_r"]
    assert fresh == pytest.approx(emb.best_validation_score_, abs=1e-6)


def test_epoch_zero_is_scored_before_training(digits):
    # The first epoch's row holds the scores of the untrained network: the
    # same as a fit with no epochs at all (same seed, same held-out classes).
    X, y = digits
    params = {"validation_fraction": 0.3, **FAST}
    emb = TripletEmbedder(max_epochs=2, **params).fit(X, y)
    first = emb.net_.history[0]
    assert {"valid_map_at_r_start", "valid_r_precision_start", "valid_precision_at_1_start"} <= set(
        first
    )
    assert "valid_map_at_r_start" not in emb.net_.history[1]
    untrained = TripletEmbedder(max_epochs=0, **params).fit(X, y)
    assert untrained.best_epoch_ == 0
    np.testing.assert_array_equal(untrained.validation_indices_, emb.validation_indices_)
    held = emb.validation_indices_
    start = retrieval_scores(untrained.transform(X[held]), y[held], k=1)
    assert first["valid_map_at_r_start"] == pytest.approx(start["map_at_r"], abs=1e-6)
    assert untrained.best_validation_score_ == pytest.approx(start["map_at_r"], abs=1e-6)
    assert first["valid_precision_at_1_start"] == pytest.approx(start["precision_at_1"], abs=1e-6)


def test_untrained_network_is_kept_when_training_hurts(digits):
    # A learning rate far too large wrecks the embedding of the held-out
    # classes: no epoch beats epoch 0, training stops after n_iter_no_change
    # epochs and transform returns the untrained network's embedding.
    X, y = digits
    params = {"validation_fraction": 0.3, **FAST}
    hurt = TripletEmbedder(max_epochs=10, lr=5.0, n_iter_no_change=2, **params).fit(X, y)
    history = hurt.net_.history
    assert hurt.best_epoch_ == 0
    assert len(history) == 2
    assert all(row["valid_map_at_r"] < history[0]["valid_map_at_r_start"] for row in history)
    assert not any(row["valid_map_at_r_best"] for row in history)
    untrained = TripletEmbedder(max_epochs=0, **params).fit(X, y)
    np.testing.assert_allclose(hurt.transform(X), untrained.transform(X), rtol=0, atol=1e-6)
    assert hurt.best_validation_score_ == pytest.approx(untrained.best_validation_score_)


def test_validation_is_off_by_default(small_digits):
    X, y = small_digits
    emb = TripletEmbedder(max_epochs=1, **FAST).fit(X, y)
    assert "valid_map_at_r" not in emb.net_.history[-1]
    assert not hasattr(emb, "best_epoch_")


def test_class_split_needs_enough_classes():
    X = np.random.default_rng(0).normal(size=(30, 4))
    y = np.repeat([0, 1, 2], 10)
    with pytest.raises(ValueError, match="needs at least 4 classes"):
        TripletEmbedder(max_epochs=1, validation_fraction=0.3).fit(X, y)


class Constant(nn.Module):
    """Every input maps to the same unit vector: a collapsed network."""

    def __init__(self, n_features, n_components):
        super().__init__()
        self.bias = nn.Parameter(torch.ones(n_components))
        self.scale = nn.Parameter(torch.zeros(n_features, n_components))

    def forward(self, x):
        return nn.functional.normalize(x @ self.scale * 0 + self.bias, dim=1)


def test_collapse_is_warned_with_fixes(small_digits):
    X, y = small_digits
    with pytest.warns(CollapseWarning, match=r"lower lr.*samples_per_class.*soft=True"):
        TripletEmbedder(module=Constant, max_epochs=2, **FAST).fit(X, y)


def test_healthy_training_does_not_warn(small_digits):
    X, y = small_digits
    with warnings.catch_warnings():
        warnings.simplefilter("error", CollapseWarning)
        TripletEmbedder(max_epochs=3, **FAST).fit(X, y)


def test_grid_search_with_class_disjoint_folds(small_digits):
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    from sktriplet.evaluation.metrics import map_at_r
    from sktriplet.evaluation.scoring import make_retrieval_scorer

    X, y = small_digits
    margins = [0.05, 0.5]
    # Default score (MAP@R) of the embedder alone, folds by class.
    grid = GridSearchCV(
        TripletEmbedder(max_epochs=2, **FAST), {"margin": margins}, cv=GroupKFold(3)
    ).fit(X, y, groups=y)
    assert grid.best_params_["margin"] in margins
    # Each test fold holds classes its training folds never saw, and the
    # reported score is MAP@R on that fold.
    folds = list(GroupKFold(3).split(X, y, groups=y))
    for train, test in folds:
        assert not set(y[train]) & set(y[test])
    best = TripletEmbedder(max_epochs=2, margin=grid.best_params_["margin"], **FAST)
    train, test = folds[0]
    best.fit(X[train], y[train])
    assert grid.cv_results_["split0_test_score"][grid.best_index_] == pytest.approx(
        map_at_r(best.transform(X[test]), y[test])
    )
    # The retrieval scorer on a pipeline that ends in the embedder.
    pipe = make_pipeline(FunctionTransformer(), TripletEmbedder(max_epochs=2, **FAST))
    grid = GridSearchCV(
        pipe,
        {"tripletembedder__margin": margins},
        scoring=make_retrieval_scorer("precision_at_k", k=3),
        cv=GroupKFold(3),
    ).fit(X, y, groups=y)
    assert grid.best_params_["tripletembedder__margin"] in margins
    assert 0.0 < grid.best_score_ <= 1.0


def test_warns_when_the_input_retrieves_held_out_classes_better():
    from sktriplet.evaluation.metrics import map_at_r
    from sktriplet.training.callbacks import InputBeatsEmbeddingWarning

    # The classes live in two large columns; 30 tiny noise columns do not
    # matter to the raw input, but per-feature scaling inflates them, and a
    # fit that barely moves (lr=1e-6) keeps that geometry.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(8), 30)
    X = 1e-3 * rng.normal(size=(len(y), 32))
    X[:, :2] = 3 * rng.normal(size=(8, 2))[y] + 0.3 * rng.normal(size=(len(y), 2))
    emb = TripletEmbedder(max_epochs=1, lr=1e-6, validation_fraction=0.3, **FAST)
    with pytest.warns(InputBeatsEmbeddingWarning, match="scaling='global'") as record:
        emb.fit(X, y)
    held = emb.validation_indices_
    given = map_at_r(X[held], y[held])  # the reference: the raw rows, brute force
    assert emb.best_validation_score_ < given
    assert f"({given:.3f})" in str(record[0].message)


def test_no_input_warning_when_the_embedding_wins():
    from sktriplet.training.callbacks import InputBeatsEmbeddingWarning

    # The classes live in two small columns; 30 noisy columns swamp them in
    # the raw input, while per-feature scaling and training find them.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(8), 30)
    X = 20 * rng.normal(size=(len(y), 32))
    X[:, :2] = 3 * rng.normal(size=(8, 2))[y] + 0.3 * rng.normal(size=(len(y), 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputBeatsEmbeddingWarning)
        emb = TripletEmbedder(max_epochs=3, validation_fraction=0.3, **FAST).fit(X, y)
    assert emb.best_validation_score_ > 0


@pytest.mark.parametrize(
    ("min_gain", "epoch_scores", "best_epoch"),
    [
        (0.005, [0.503, 0.506, 0.504], 2),  # leaving the start needs +0.005
        (0.005, [0.49, 0.504], 0),  # no epoch clears the margin: the start stays
        (-0.01, [0.485, 0.495, 0.494, 0.497], 4),  # within 0.01 below: the epochs win
        (-0.01, [0.48, 0.489], 0),  # more than 0.01 below: the start stays
    ],
)
def test_min_gain_is_the_margin_for_leaving_the_start(min_gain, epoch_scores, best_epoch):
    """Start scored 0.5; after leaving it, epochs must beat the best epoch (no margin)."""
    from types import SimpleNamespace

    from sktriplet.training.callbacks import RetrievalValidation

    cb = RetrievalValidation(None, None, min_gain=min_gain).initialize()
    net = SimpleNamespace(module_=torch.nn.Linear(1, 1))
    cb._keep_if_best(net, 0.5, 0)
    for epoch, score in enumerate(epoch_scores, start=1):
        cb._keep_if_best(net, score, epoch)
    assert cb.best_epoch_ == best_epoch
