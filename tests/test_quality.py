"""Fast quality guard: the defaults must keep learning a good embedding.

On sklearn's digits with a fixed seed (about 15 s on one CPU thread), these
tests fail if the miner, the loss, the PK batches or a default regress: the
closed-set thresholds sit well above what an untrained network or a network
trained on shuffled labels reaches (see ``docs/defaults.md``).
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

from sktriplet import TripletEmbedder
from sktriplet.datasets import open_set_split
from sktriplet.evaluation.metrics import map_at_r, precision_at_k


@pytest.fixture(scope="module")
def digits_split():
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    return train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)


@pytest.fixture(scope="module")
def closed_set_embedder(digits_split):
    X_train, _, y_train, _ = digits_split
    return TripletEmbedder(max_epochs=20, random_state=0, device="cpu").fit(X_train, y_train)


def test_closed_set_knn_accuracy(closed_set_embedder, digits_split):
    # The core issue's acceptance criterion: 5-NN on the embedding >= 0.97.
    X_train, X_test, y_train, y_test = digits_split
    emb = closed_set_embedder
    knn = KNeighborsClassifier().fit(emb.transform(X_train), y_train)
    assert knn.score(emb.transform(X_test), y_test) >= 0.97


def test_closed_set_retrieval_far_above_raw_pixels(closed_set_embedder, digits_split):
    # Held-out samples of the training classes: the defaults rank far better
    # than raw pixels; a broken miner (shuffled labels) does not.
    _, X_test, _, y_test = digits_split
    raw = map_at_r(X_test, y_test)
    learned = closed_set_embedder.score(X_test, y_test)
    assert learned >= 0.85
    assert learned >= raw + 0.25


def test_image_path_closed_set_retrieval_guard():
    # The default CNN path (8x8 digit images, lr="auto" and the cosine
    # schedule of images): 5 epochs with a fixed seed reached MAP@R 0.967 on
    # the held-out 30 %, raw pixels 0.528 and the same fit on shuffled
    # labels 0.186 (about 8 s on one loaded CPU thread).
    from sktriplet.datasets import load_digit_images

    X, y = load_digit_images()
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.3, stratify=y, random_state=0
    )
    emb = TripletEmbedder(max_epochs=5, random_state=0, device="cpu").fit(X_train, y_train)
    raw = map_at_r(X_test.reshape(len(X_test), -1).astype(np.float64), y_test)
    learned = emb.score(X_test, y_test)
    assert learned >= 0.9
    assert learned >= raw + 0.3


def test_open_set_unseen_digits_regression_guard():
    # The known hard case: six training classes (0-5), evaluated on 6-9. The
    # defaults stay below raw pixels' MAP@R here (see docs/defaults.md); this
    # guards against regressions of the P@1 and MAP@R they do reach (the
    # network without its skip path reached about 0.41 and 0.94).
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    seen, unseen = open_set_split(y, seen_classes=range(6))
    emb = TripletEmbedder(max_epochs=20, random_state=0, device="cpu").fit(X[seen], y[seen])
    Z = emb.transform(X[unseen])
    assert map_at_r(Z, y[unseen]) >= 0.47
    assert precision_at_k(Z, y[unseen], k=1) >= 0.96


def test_few_class_setting_beats_raw_pixels_on_unseen_digits():
    # The documented setting for few training classes and pixel-like rows
    # (docs/defaults.md): one common input scale and a brief, gentle
    # training. Trained on 0-5, it ranks 6-9 above raw pixels (0.676) and
    # PCA (0.678); 3 seeds gave 0.686 +- 0.002.
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    seen, unseen = open_set_split(y, seen_classes=range(6))
    emb = TripletEmbedder(
        scaling="global", max_epochs=5, lr=1e-4, random_state=0, device="cpu"
    ).fit(X[seen], y[seen])
    learned = emb.score(X[unseen], y[unseen])
    assert learned > map_at_r(X[unseen], y[unseen]) + 0.005
    assert learned >= 0.68


def test_untrained_default_mlp_ranks_like_standardised_input():
    # The default MLP starts from the input's own geometry: before training,
    # its embedding ranks neighbours by the cosine of the standardised rows
    # (reference: sklearn's StandardScaler, then L2 normalisation).
    from sklearn.preprocessing import StandardScaler, normalize

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    # float32 embeddings for the 1e-4 comparison ("auto" embeds in bfloat16
    # on a CPU with native bfloat16).
    emb = TripletEmbedder(
        max_epochs=0, random_state=0, device="cpu", scaling="feature", precision="32"
    )
    Z = emb.fit(X, y).transform(X)
    ref = normalize(StandardScaler().fit_transform(X.astype(np.float64)))
    np.testing.assert_allclose(Z.astype(np.float64) @ Z.T, ref @ ref.T, atol=1e-4)
    assert map_at_r(Z, y) == pytest.approx(map_at_r(ref, y), abs=1e-3)


def test_augment_auto_moves_only_images_of_16_pixels_or_more():
    from sktriplet.vision.augment import RandomAffine

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 4)
    big = TripletEmbedder(max_epochs=0, device="cpu").fit(
        rng.integers(0, 255, (8, 16, 16), dtype=np.uint8), y
    )
    small = TripletEmbedder(max_epochs=0, device="cpu").fit(
        rng.integers(0, 255, (8, 8, 8), dtype=np.uint8), y
    )
    table = TripletEmbedder(max_epochs=0, device="cpu").fit(rng.random((8, 5)), y)
    assert isinstance(big.net_.augment, RandomAffine)
    assert small.net_.augment is None and table.net_.augment is None
    with pytest.raises(ValueError, match="augment=True needs images"):
        TripletEmbedder(max_epochs=0, augment=True, device="cpu").fit(rng.random((8, 5)), y)


def test_random_affine_without_motion_is_identity():
    import torch

    from sktriplet.vision.augment import RandomAffine

    images = torch.rand(3, 2, 12, 10)
    still = RandomAffine(max_shift=0, max_rotation=0, max_scale=0)(images)
    torch.testing.assert_close(still, images, atol=1e-5, rtol=0)


def test_triplet_trained_embedding_nears_the_label_trained_one(closed_set_embedder, digits_split):
    # Issue 17: no labels, only 6,000 random label-consistent triplets of the
    # training part. With the recommended settings and 6 epochs (about 8 s
    # on one loaded CPU thread), seeds 0, 1 and 2 (of the draw and the fit)
    # reached 0.936, 0.925 and 0.939 of the label-trained test MAP@R (0.936;
    # raw pixels 0.528); the 90 % claim over three splits at 20 epochs is
    # benchmarks/bench_triplets.py's.
    X_train, X_test, y_train, y_test = digits_split
    rng = np.random.default_rng(0)
    a, p, n = rng.integers(len(y_train), size=(3, 100_000))
    valid = (y_train[a] == y_train[p]) & (a != p) & (y_train[n] != y_train[a])
    triplets = np.stack([a, p, n], axis=1)[valid][:6000]
    assert len(triplets) == 6000
    emb = TripletEmbedder(
        triplets=True,
        samples=X_train,
        mining="none",
        margin=0.5,
        max_epochs=6,
        random_state=0,
        device="cpu",
    ).fit(triplets)
    learned = map_at_r(emb.transform(X_test), y_test)
    labelled = closed_set_embedder.score(X_test, y_test)
    assert learned >= 0.85 * labelled
    assert learned >= map_at_r(X_test, y_test) + 0.25
