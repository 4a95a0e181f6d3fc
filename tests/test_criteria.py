"""WithClassification (a loss plus a classifier's cross-entropy) against brute-force numbers."""

import math

import numpy as np
import pytest
import torch

from sktriplet.triplets.classification import WithClassification
from sktriplet.triplets.losses import TripletLoss
from tests.reference import reference_loss


def cross_entropy(logits, labels):
    """Mean of -log softmax, one sample at a time."""
    total = 0.0
    for row, label in zip(logits, labels, strict=True):
        top = max(row)
        log_sum = top + math.log(sum(math.exp(v - top) for v in row))
        total += log_sum - row[label]
    return total / len(labels)


def cosine_logits(z, w, scale):
    out = []
    for zi in z:
        out.append([scale * float(zi @ wc) / (np.linalg.norm(zi) * np.linalg.norm(wc)) for wc in w])
    return out


@pytest.mark.parametrize("classifier", ["cosine", "linear"])
@pytest.mark.parametrize("weight", [0.0, 0.3])
def test_loss_is_triplet_plus_weighted_cross_entropy(classifier, weight):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(9, 4))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 1])
    triplet = TripletLoss(margin=0.3, mining="semihard")
    criterion = WithClassification(triplet, 3, 4, weight=weight, classifier=classifier, scale=10.0)
    with torch.no_grad():
        criterion.classifier_weight.copy_(torch.from_numpy(rng.normal(size=(3, 4))))
        if classifier == "linear":
            criterion.classifier_bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    w = criterion.classifier_weight.detach().numpy().astype(np.float64)
    if classifier == "cosine":
        logits = cosine_logits(z, w, 10.0)
    else:
        b = np.array([0.1, -0.2, 0.3])
        logits = [[float(zi @ wc + bc) for wc, bc in zip(w, b, strict=True)] for zi in z]
    expected = reference_loss(z, labels, 0.3, "semihard", "sqeuclidean", False) + weight * (
        cross_entropy(logits, labels)
    )
    got = criterion(torch.tensor(z, dtype=torch.float32), torch.from_numpy(labels))
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert criterion.last_terms["classification"] == pytest.approx(
        cross_entropy(logits, labels), rel=1e-5
    )


def test_classifier_weights_learn_and_are_criterion_parameters():
    criterion = WithClassification(TripletLoss(), 2, 3, weight=1.0)
    names = {n for n, _ in criterion.named_parameters()}
    assert names == {"classifier_weight"}
    z = torch.nn.functional.normalize(torch.randn(4, 3), dim=1).requires_grad_()
    criterion(z, torch.tensor([0, 0, 1, 1])).backward()
    assert criterion.classifier_weight.grad.abs().sum() > 0
    assert z.grad.abs().sum() > 0


def test_bad_arguments_and_labels_are_named():
    with pytest.raises(ValueError, match="classifier must be one of"):
        WithClassification(TripletLoss(), 3, 4, classifier="arcface")
    with pytest.raises(ValueError, match="n_classes >= 2"):
        WithClassification(TripletLoss(), 1, 4)
    with pytest.raises(ValueError, match="weight must be finite"):
        WithClassification(TripletLoss(), 3, 4, weight=-1)
    criterion = WithClassification(TripletLoss(), 2, 4)
    with pytest.raises(ValueError, match=r"class codes in \[0, 1\]"):
        criterion(torch.randn(4, 4), torch.tensor([0, 0, 2, 2]))
