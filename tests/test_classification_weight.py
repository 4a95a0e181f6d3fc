"""TripletEmbedder(classification_weight=...): the auxiliary cross-entropy of a classifier."""

import numpy as np
import pytest
import torch

from sktriplet import TripletEmbedder, load, save
from sktriplet.triplets.classification import WithClassification
from sktriplet.triplets.losses import TripletLoss

FAST = dict(max_epochs=2, random_state=0, device="cpu", n_components=16)


def test_weight_zero_is_the_triplet_loss_alone(small_digits):
    X, y = small_digits
    est = TripletEmbedder(**FAST).fit(X, y)
    assert type(est.net_.criterion_) is TripletLoss


def test_positive_weight_adds_the_classifier_and_changes_training(small_digits):
    X, y = small_digits
    plain = TripletEmbedder(**FAST).fit(X, y)
    aux = TripletEmbedder(**FAST, classification_weight=1.0).fit(X, y)
    criterion = aux.net_.criterion_
    assert isinstance(criterion, WithClassification)
    assert type(criterion.loss) is TripletLoss  # a composition around the chosen loss
    assert criterion.classifier_weight.shape == (10, 16)  # 10 digit classes x width
    # The classifier trains with the network (its weights are in the optimizer).
    params = {id(p) for g in aux.net_.optimizer_.param_groups for p in g["params"]}
    assert id(criterion.classifier_weight) in params
    assert not np.allclose(aux.transform(X), plain.transform(X))


def test_saved_with_its_classifier(small_digits, tmp_path):
    X, y = small_digits
    est = TripletEmbedder(**FAST, classification_weight=0.5).fit(X, y)
    save(est, tmp_path / "m.sktriplet")
    loaded = load(tmp_path / "m.sktriplet")
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    torch.testing.assert_close(
        loaded.net_.criterion_.classifier_weight, est.net_.criterion_.classifier_weight
    )
    # and training continues from there
    loaded.set_params(warm_start=True, max_epochs=1).fit(X, y)
    assert len(loaded.net_.history) == 3


def test_triplet_mode_refuses_a_classification_weight():
    rng = np.random.default_rng(0)
    T = rng.normal(size=(40, 3, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="classification_weight"):
        TripletEmbedder(triplets=True, classification_weight=1.0, **FAST).fit(T)
