"""Choosing the loss by class-disjoint cross-validation, and the rule that keeps the default."""

import math

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, GroupKFold

from sktriplet import TripletEmbedder
from sktriplet.evaluation.scoring import make_retrieval_scorer
from sktriplet.evaluation.selection import PreferDefault

from .test_metrics import reference_scores


def results(scores, params):
    """A search's cv_results_ from a (candidates, folds) table of scores."""
    scores = np.asarray(scores, dtype=float)
    out = {"params": params, "mean_test_score": scores.mean(axis=1)}
    for k in range(scores.shape[1]):
        out[f"split{k}_test_score"] = scores[:, k]
    return out


def paired(a, b):
    """Mean gain of b over a, and its standard error, by hand."""
    g = [y - x for x, y in zip(a, b, strict=True)]
    mean = sum(g) / len(g)
    sd = math.sqrt(sum((v - mean) ** 2 for v in g) / (len(g) - 1))
    return mean, sd / math.sqrt(len(g))


CANDIDATES = [{"criterion": c} for c in ("arcface", "triplet", "contrastive")]


def test_the_default_stays_unless_another_wins_by_more_than_a_standard_error():
    default = [0.50, 0.60, 0.55, 0.40]
    noisy = [0.58, 0.55, 0.60, 0.41]  # best mean, but inconsistent across folds
    steady = [0.52, 0.62, 0.57, 0.42]  # +0.02 on every fold
    gain, se = paired(default, noisy)
    assert gain > 0 and gain <= se
    rule = PreferDefault(criterion="triplet")
    assert rule(results([noisy, default, [0.1] * 4], CANDIDATES)) == 1
    assert rule(results([noisy, default, steady], CANDIDATES)) == 2  # se = 0 < gain
    row = rule.last_[0]
    assert row["gain"] == pytest.approx(gain) and row["se"] == pytest.approx(se)
    assert [r["chosen"] for r in rule.last_] == [False, False, True]


def test_among_qualifying_candidates_the_best_mean_wins():
    default = [0.5, 0.5, 0.5]
    a = [0.60, 0.61, 0.62]
    b = [0.70, 0.71, 0.69]
    assert PreferDefault(criterion="triplet")(results([a, default, b], CANDIDATES)) == 2


def test_non_finite_scores_never_qualify_and_one_fold_keeps_the_default():
    rule = PreferDefault(criterion="triplet")
    assert rule(results([[0.9, math.nan], [0.5, 0.5], [0.1, 0.1]], CANDIDATES)) == 1
    assert rule(results([[0.9], [0.5], [0.1]], CANDIDATES)) == 1


def test_several_default_matches_and_several_scorers():
    params = [
        {"criterion": "triplet", "memory_size": None},
        {"criterion": "triplet", "memory_size": 64},
        {"criterion": "arcface", "memory_size": None},
    ]
    scores = {
        "params": params,
        "split0_test_map": [0.4, 0.6, 0.61],
        "split1_test_map": [0.4, 0.6, 0.62],
        "split0_test_p1": [0.9, 0.1, 0.1],
        "split1_test_p1": [0.9, 0.1, 0.1],
    }
    rule = PreferDefault(scoring="map", criterion="triplet")
    # The better triplet row is the reference; arcface gains 0.015 +- 0.005.
    assert rule(scores) == 2
    assert rule.last_[2]["gain"] == pytest.approx(0.015)
    assert PreferDefault(scoring="p1", criterion="triplet")(scores) == 0
    assert repr(rule) == "PreferDefault(scoring='map', criterion='triplet')"


def test_missing_defaults_and_scores_are_explained():
    with pytest.raises(ValueError, match="needs the default candidate"):
        PreferDefault()
    with pytest.raises(ValueError, match="no candidate of the search has the defaults"):
        PreferDefault(criterion="nca")(results([[0.1, 0.2]] * 3, CANDIDATES))
    with pytest.raises(ValueError, match="scoring=<the scorer's name>"):
        PreferDefault(scoring="map", criterion="triplet")(results([[0.1, 0.2]] * 3, CANDIDATES))


def test_grid_search_over_losses_with_class_disjoint_folds(small_digits):
    # Every fold's score is MAP@R of that fold's unseen classes, embedded by a
    # model trained on the other classes (no classifier involved).
    X, y = small_digits
    est = TripletEmbedder(max_epochs=1, n_components=8, batch_size=64, random_state=0)
    grid = {"criterion": ["triplet", "multi_similarity", "arcface"]}
    cv = GroupKFold(n_splits=2)
    rule = PreferDefault(criterion="triplet")
    search = GridSearchCV(est, grid, cv=cv, scoring=make_retrieval_scorer(), refit=rule)
    search.fit(X, y, groups=y)
    assert search.best_index_ == rule(search.cv_results_)
    assert search.best_estimator_.criterion == grid["criterion"][search.best_index_]
    for k, (train, test) in enumerate(cv.split(X, y, groups=y)):
        assert not set(y[train]) & set(y[test])
        fold = clone(est).set_params(criterion="arcface").fit(X[train], y[train])
        want = reference_scores(fold.transform(X[test]), y[test], None, None, "sqeuclidean")
        got = search.cv_results_[f"split{k}_test_score"][2]
        assert got == pytest.approx(want["map_at_r"], rel=1e-6)


def test_losses_with_and_without_memory_in_a_pipeline_search(small_digits):
    # The recipe of docs/losses.md as a user writes it: a pipeline, a grid of
    # dicts crossing the pair losses with memory and leaving it off for the
    # classifier losses, and the rule keyed by the pipeline's parameter name.
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    X, y = small_digits
    pipe = make_pipeline(
        MinMaxScaler(),
        TripletEmbedder(max_epochs=1, n_components=8, batch_size=64, random_state=0),
    )
    grid = [
        {
            "tripletembedder__criterion": ["triplet", "contrastive"],
            "tripletembedder__memory_size": [None, 128],
        },
        {"tripletembedder__criterion": ["normalized_softmax"]},
    ]
    rule = PreferDefault(tripletembedder__criterion="triplet")
    search = GridSearchCV(
        pipe, grid, cv=GroupKFold(n_splits=3), scoring=make_retrieval_scorer(), refit=rule
    )
    search.fit(X, y, groups=y)
    scores = np.array([search.cv_results_[f"split{k}_test_score"] for k in range(3)])
    assert scores.shape == (3, 5) and np.isfinite(scores).all()  # no candidate failed
    # The default is the better of the two triplet rows (with and without memory).
    triplet_rows = [
        i
        for i, p in enumerate(search.cv_results_["params"])
        if p["tripletembedder__criterion"] == "triplet"
    ]
    default = max(triplet_rows, key=lambda i: scores[:, i].mean())
    gains = scores - scores[:, [default]]
    se = gains.std(axis=0, ddof=1) / np.sqrt(3)
    qualifying = [i for i in range(5) if gains[:, i].mean() > max(se[i], 0)]
    want = max(qualifying, key=lambda i: scores[:, i].mean()) if qualifying else default
    assert search.best_index_ == want
    chosen = search.best_estimator_[-1]
    assert chosen.get_params()["criterion"] == search.best_params_["tripletembedder__criterion"]
