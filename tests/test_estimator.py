import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from torch import nn

from sktriplet import TripletEmbedder
from sktriplet.networks import ConvEmbedder, MLPEmbedder

FAST = {"max_epochs": 3, "batch_size": 64, "samples_per_class": 4, "random_state": 0}


@pytest.fixture(scope="module")
def fitted(small_digits):
    X, y = small_digits
    return TripletEmbedder(n_components=16, **FAST).fit(X, y)


def test_fit_sets_attributes_and_transform_is_float32(fitted, small_digits):
    X, y = small_digits
    Z = fitted.transform(X)
    assert Z.dtype == np.float32 and Z.shape == (len(X), 16)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-5)
    assert fitted.n_features_in_ == 64
    assert fitted.n_components_ == 16
    np.testing.assert_array_equal(fitted.classes_, np.arange(10))
    assert isinstance(fitted.net_.module_[1], MLPEmbedder)
    assert len(fitted.net_.history) == 3


def test_pipeline_with_knn_beats_chance_clearly(digits):
    X, y = digits
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
    pipe = make_pipeline(TripletEmbedder(max_epochs=8, random_state=0), KNeighborsClassifier())
    assert pipe.fit(Xtr, ytr).score(Xte, yte) > 0.95


def test_string_labels(small_digits):
    X, y = small_digits
    names = np.array(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )[y]
    emb = TripletEmbedder(**FAST).fit(X, names)
    assert set(emb.classes_) == set(names)
    assert 0 <= emb.score(X, names) <= 1


def test_score_is_map_at_r_of_transform(fitted, small_digits):
    from sktriplet.evaluation.metrics import map_at_r

    X, y = small_digits
    assert fitted.score(X, y) == pytest.approx(map_at_r(fitted.transform(X), y))


def test_same_seed_gives_bitwise_identical_embeddings(small_digits):
    X, y = small_digits
    a = TripletEmbedder(**FAST).fit_transform(X, y)
    b = TripletEmbedder(**FAST).fit_transform(X, y)
    assert np.array_equal(a, b)
    c = TripletEmbedder(**{**FAST, "random_state": 1}).fit_transform(X, y)
    assert not np.array_equal(a, c)


def test_fit_leaves_global_torch_rng_alone(small_digits):
    X, y = small_digits
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    TripletEmbedder(**FAST).fit(X, y)
    assert torch.equal(torch.rand(3), expected)


def test_pickle_round_trip_gives_identical_transform(fitted, small_digits):
    X, _ = small_digits
    again = pickle.loads(pickle.dumps(fitted))
    assert np.array_equal(again.transform(X), fitted.transform(X))


def test_clone_keeps_routed_parameters():
    emb = TripletEmbedder(margin=0.3, module__hidden_units=(32,), optimizer__weight_decay=1e-4)
    twin = clone(emb)
    assert twin.get_params()["module__hidden_units"] == (32,)
    assert twin.get_params()["optimizer__weight_decay"] == 1e-4
    assert twin.margin == 0.3
    twin.set_params(module__hidden_units=(8, 8))
    assert twin.module__hidden_units == (8, 8)
    assert emb.module__hidden_units == (32,)


def test_routed_parameters_reach_module_and_optimizer(small_digits):
    X, y = small_digits
    emb = TripletEmbedder(
        module__hidden_units=(24,), optimizer__weight_decay=0.5, **{**FAST, "max_epochs": 1}
    ).fit(X, y)
    # The hidden path (the skip path is one more 64-unit linear map).
    linears = [m for m in emb.net_.module_[1].layers if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [24, 64]
    assert emb.net_.optimizer_.param_groups[0]["weight_decay"] == 0.5


def test_unknown_keyword_is_a_type_error_at_fit(small_digits):
    emb = TripletEmbedder(marginn=0.1)
    with pytest.raises(TypeError, match=r"unexpected parameter\(s\) \['marginn'\]"):
        emb.fit(*small_digits)


def test_grid_search_over_margin(small_digits):
    X, y = small_digits
    pipe = make_pipeline(TripletEmbedder(**{**FAST, "max_epochs": 2}), KNeighborsClassifier())
    grid = GridSearchCV(pipe, {"tripletembedder__margin": [0.1, 0.2, 0.5]}, cv=2, n_jobs=2)
    grid.fit(X, y)
    assert grid.best_params_["tripletembedder__margin"] in (0.1, 0.2, 0.5)
    assert grid.best_score_ > 0.7


def test_grid_search_over_module_parameter(small_digits):
    X, y = small_digits
    grid = GridSearchCV(
        TripletEmbedder(**{**FAST, "max_epochs": 1}),
        {"module__hidden_units": [(16,), (32, 32)], "optimizer__weight_decay": [0.0, 1e-4]},
        cv=2,
    )
    grid.fit(X, y)
    assert grid.best_estimator_.net_ is not None
    assert set(grid.cv_results_["param_module__hidden_units"]) == {(16,), (32, 32)}


class TinyNet(nn.Module):
    def __init__(self, n_features, n_components, width=8):
        super().__init__()
        self.lin = nn.Sequential(
            nn.Linear(n_features, width), nn.ReLU(), nn.Linear(width, n_components)
        )

    def forward(self, x):
        return nn.functional.normalize(self.lin(x), dim=1)


def test_custom_module_class_is_sized_from_data(small_digits):
    X, y = small_digits
    emb = TripletEmbedder(module=TinyNet, module__width=5, n_components=7, **FAST).fit(X, y)
    body = emb.net_.module_[1]
    assert (
        isinstance(body, TinyNet)
        and body.lin[0].in_features == 64
        and body.lin[0].out_features == 5
    )
    assert emb.transform(X).shape == (len(X), 7)


def test_custom_module_instance_is_not_modified(small_digits):
    X, y = small_digits
    net = TinyNet(64, 64)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    TripletEmbedder(module=net, **FAST).fit(X, y)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_images_use_the_cnn():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(40, 12, 12), dtype=np.uint8)
    y = np.repeat(np.arange(4), 10)
    emb = TripletEmbedder(n_components=8, **{**FAST, "max_epochs": 1, "batch_size": 16}).fit(X, y)
    assert isinstance(emb.net_.module_[1], ConvEmbedder)
    assert emb.input_shape_ == (1, 12, 12) and emb.n_features_in_ == 144
    assert emb.transform(X).shape == (40, 8)
    X4 = rng.random((40, 3, 10, 10)).astype(np.float32)
    emb4 = TripletEmbedder(n_components=8, **{**FAST, "max_epochs": 1, "batch_size": 16}).fit(X4, y)
    assert emb4.transform(X4[:5]).shape == (5, 8)
    with pytest.raises(ValueError, match=r"fitted on images of shape \(3, 10, 10\)"):
        emb4.transform(X4[:, :1])


def test_dataframe_feature_names_and_pandas_output(small_digits):
    X, y = small_digits
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    emb = TripletEmbedder(n_components=4, **FAST).set_output(transform="pandas").fit(df, y)
    out = emb.transform(df)
    assert list(emb.feature_names_in_) == list(df.columns)
    assert list(out.columns) == [f"tripletembedder{i}" for i in range(4)]


def test_verbose_prints_an_epoch_table(small_digits, capsys):
    X, y = small_digits
    TripletEmbedder(**{**FAST, "max_epochs": 2}).fit(X, y)
    assert capsys.readouterr().out == ""
    TripletEmbedder(verbose=1, **{**FAST, "max_epochs": 2}).fit(X, y)
    out = capsys.readouterr().out
    assert "epoch" in out and "train_loss" in out


def test_warm_start_continues_training(small_digits):
    X, y = small_digits
    emb = TripletEmbedder(warm_start=True, **{**FAST, "max_epochs": 2}).fit(X, y)
    net = emb.net_
    emb.fit(X, y)
    assert emb.net_ is net
    assert len(emb.net_.history) == 4


def test_divergence_raises_and_leaves_nothing_half_fitted(small_digits):
    X, y = small_digits
    # An unnormalised linear map with an absurd learning rate overflows.
    emb = TripletEmbedder(
        module=nn.Linear(64, 64), lr=1e30, optimizer=torch.optim.SGD, margin=1e10, **FAST
    )
    with pytest.raises(FloatingPointError, match=r"epoch \d+.*Lower the learning rate"):
        emb.fit(X, y)
    assert not hasattr(emb, "net_")
    # A good fit stays untouched by a later failed one.
    emb.set_params(lr=1e-3).fit(X, y)
    net = emb.net_
    with pytest.raises(FloatingPointError):
        emb.set_params(lr=1e30).fit(X, y)
    assert emb.net_ is net


def test_warm_start_applies_changed_hyperparameters(small_digits):
    X, y = small_digits
    emb = TripletEmbedder(warm_start=True, **{**FAST, "max_epochs": 1}).fit(X, y)
    emb.set_params(margin=0.7, mining="hard", lr=5e-4, samples_per_class=8).fit(X, y)
    crit = emb.net_.criterion_
    assert (crit.margin, crit.mining) == (0.7, "hard")
    assert emb.net_.optimizer_.param_groups[0]["lr"] == 5e-4
    assert emb.net_.samples_per_class == 8
    # Adam's state carried over: its step count spans both fits (7 batches each).
    state = next(iter(emb.net_.optimizer_.state.values()))
    assert int(state["step"]) == 2 * int(np.ceil(len(X) / 64))


def _input_standardisation(emb):
    first = emb.net_.module_[0]
    return first.mean.numpy().astype(np.float64), first.scale.numpy().astype(np.float64)


def test_scaling_global_uses_one_common_scale(small_digits):
    X, y = small_digits
    X64 = X.astype(np.float64)
    # float32 embeddings, for the 1e-4 comparison below (precision="auto"
    # embeds in bfloat16 on a CPU with native bfloat16).
    emb = TripletEmbedder(scaling="global", precision="32", **{**FAST, "max_epochs": 0})
    emb.fit(X, y)
    mean, scale = _input_standardisation(emb)
    np.testing.assert_allclose(mean, X64.mean(axis=0), rtol=1e-6, atol=1e-6)
    # One scale for every feature: the root mean square of the centred values.
    common = np.sqrt(((X64 - X64.mean(axis=0)) ** 2).mean())
    np.testing.assert_allclose(scale, np.full(X.shape[1], common), rtol=1e-6)
    # So the untrained default MLP ranks by the cosine of the centred rows.
    Z = emb.transform(X).astype(np.float64)
    centred = X64 - X64.mean(axis=0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    np.testing.assert_allclose(Z @ Z.T, centred @ centred.T, atol=1e-4)


def test_scaling_auto_is_the_default_feature_for_tabular_and_none_passes_input(small_digits):
    X, y = small_digits
    # Digits are pixel-like (non-negative whole numbers): "auto" scales them
    # globally, one common scale (see the "global" test above).
    emb = TripletEmbedder(**{**FAST, "max_epochs": 0}).fit(X, y)
    assert emb.scaling == "auto"
    _, scale = _input_standardisation(emb)
    assert np.allclose(scale, scale[0])
    # Tabular rows (negative values, other units) are scaled per feature.
    X = (X - 8.0) * np.linspace(0.1, 10, X.shape[1], dtype=np.float32)
    X64 = X.astype(np.float64)
    emb = TripletEmbedder(**{**FAST, "max_epochs": 0}).fit(X, y)
    mean, scale = _input_standardisation(emb)
    std = X64.std(axis=0)
    np.testing.assert_allclose(mean, X64.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(scale, np.where(std > 1e-12, std, 1.0), rtol=1e-6)
    emb = TripletEmbedder(scaling=None, **{**FAST, "max_epochs": 0}).fit(X, y)
    mean, scale = _input_standardisation(emb)
    assert not mean.any() and (scale == 1).all()


def test_scaling_global_on_images_keeps_one_mean_per_channel():
    rng = np.random.default_rng(0)
    images = rng.random((16, 3, 8, 8)).astype(np.float32) * np.array([1, 10, 100])[:, None, None]
    y = np.repeat(np.arange(4), 4)
    emb = TripletEmbedder(
        scaling="global", augment=False, **{**FAST, "max_epochs": 0, "n_components": 4}
    ).fit(images.astype(np.float32), y)
    mean, scale = _input_standardisation(emb)
    X64 = images.astype(np.float64)
    channel_mean = X64.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(mean.ravel(), channel_mean, rtol=1e-6)
    common = np.sqrt(((X64 - channel_mean[:, None, None]) ** 2).mean())
    np.testing.assert_allclose(scale.ravel(), np.full(3, common), rtol=1e-6)


def test_scaling_is_a_validated_cloneable_parameter(small_digits):
    from sklearn.utils._param_validation import InvalidParameterError

    X, y = small_digits
    emb = TripletEmbedder(scaling="global")
    assert emb.get_params()["scaling"] == "global"
    assert clone(emb).scaling == "global"
    assert clone(emb.set_params(scaling=None)).scaling is None
    # The message names the parameter, the allowed values (a set, in any
    # order) and the bad value.
    with pytest.raises(
        InvalidParameterError,
        match=r"(?=.*'feature')(?=.*'global')'scaling' parameter.* or None\. Got 'pixel'",
    ):
        TripletEmbedder(scaling="pixel", **FAST).fit(X, y)
