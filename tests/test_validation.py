"""Bad input gets a clear error naming the problem and the fix, raised before
any training, and a failed ``fit`` leaves the estimator as it was."""

import copy
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback
from torch import nn

from sktriplet import TripletEmbedder

FAST = {
    "max_epochs": 1,
    "batch_size": 8,
    "samples_per_class": 2,
    "n_components": 4,
    "random_state": 0,
    "device": "cpu",
}
RNG = np.random.default_rng(0)
X = RNG.normal(size=(40, 5)).astype(np.float32)
Y = np.repeat(np.arange(4), 10)
IMAGES = RNG.random((40, 6, 6)).astype(np.float32)


class TrainingSpy(Callback):
    """Records whether training started."""

    started = False

    def on_train_begin(self, net, **kwargs):
        TrainingSpy.started = True


class ThreeD(nn.Module):
    def __init__(self, n_features, n_components):
        super().__init__()
        self.lin = nn.Linear(n_features, n_components)

    def forward(self, x):
        return self.lin(x)[:, None, :]


class ReturnsTuple(ThreeD):
    def forward(self, x):
        return self.lin(x), None


def _with(values, **cols):
    df = pd.DataFrame(values, columns=[f"f{i}" for i in range(values.shape[1])])
    for name, col in cols.items():
        df[name] = col
    return df


def _nan(a):
    a = a.copy()
    a[3, 1] = np.nan
    return a


def _inf(a):
    a = a.copy()
    a[3, 1] = np.inf
    return a


# (id, X, y, params, exception, message regex)
BAD_FIT = [
    ("nan", _nan(X), Y, {}, ValueError, "Input X contains NaN"),
    ("inf", _inf(X), Y, {}, ValueError, "Input X contains infinity"),
    ("nan-images", _nan(IMAGES), Y, {}, ValueError, "Input X contains NaN"),
    ("empty", np.empty((0, 5)), np.empty(0), {}, ValueError, r"0 sample\(s\).*minimum of 2"),
    ("no-features", np.empty((40, 0)), Y, {}, ValueError, r"0 feature\(s\).*minimum of 1"),
    ("one-sample", X[:1], Y[:1], {}, ValueError, r"1 sample\(s\).*minimum of 2"),
    ("one-sample-image", IMAGES[:1], Y[:1], {}, ValueError, r"1 sample\(s\).*minimum of 2"),
    ("one-class", X, np.zeros(40), {}, ValueError, "y has 1 class.*needs at least 2 classes"),
    (
        "singletons",
        X,
        np.arange(40),
        {},
        ValueError,
        "every class in y has a single sample; at least one class needs 2 or more",
    ),
    ("y-missing", X, None, {}, ValueError, "requires y to be passed, but the target y is None"),
    (
        "y-missing-images",
        IMAGES,
        None,
        {},
        ValueError,
        "requires y to be passed, but the target y is None",
    ),
    (
        "y-short",
        X,
        Y[:-1],
        {},
        ValueError,
        re.escape("X has 40 samples but y has 39; pass one label per sample."),
    ),
    (
        "y-short-images",
        IMAGES,
        Y[:-1],
        {},
        ValueError,
        re.escape("X has 40 samples but y has 39; pass one label per sample."),
    ),
    ("y-2d", X, np.c_[Y, Y], {}, ValueError, "y should be a 1d array"),
    ("y-nan", X, np.r_[np.nan, Y[1:]], {}, ValueError, "Input y contains NaN"),
    (
        "y-continuous",
        X,
        RNG.normal(size=40),
        {},
        ValueError,
        "y is 'continuous'.*pass one discrete class label per sample",
    ),
    (
        "dataframe-strings",
        _with(X, city=["Oslo", "Rome"] * 20),
        Y,
        {},
        ValueError,
        r"X has 1 non-numeric column\(s\): 'city'.*encode them first \(e.g. OneHotEncoder",
    ),
    (
        "dataframe-category",
        _with(X, kind=pd.Categorical(["a", "b"] * 20), tag=["x"] * 40),
        Y,
        {},
        ValueError,
        r"X has 2 non-numeric column\(s\): 'kind' \(category\), 'tag'",
    ),
    (
        "numpy-strings",
        np.full((40, 3), "a"),
        Y,
        {},
        ValueError,
        "X must be numeric.*encode string or categorical features first",
    ),
    ("sparse", sp.csr_matrix(X), Y, {}, TypeError, r"Sparse data was passed.*\.toarray\(\)"),
    ("1d", X[:, 0], Y, {}, ValueError, "Expected 2D array, got 1D array instead"),
    (
        "ragged",
        [[1.0, 2.0], [3.0]] * 20,
        Y,
        {},
        ValueError,
        "X is ragged: its rows .* do not all have the same length",
    ),
    (
        "beyond-float32",
        X.astype(np.float64) * 1e300,
        Y,
        {},
        ValueError,
        r"beyond the float32 range.*rescale X",
    ),
    ("5d", np.zeros((40, 1, 1, 4, 4)), Y, {}, ValueError, r"X has 5 dimensions; images must be"),
    (
        "margin",
        X,
        Y,
        {"margin": -1.0},
        InvalidParameterError,
        re.escape("'margin' parameter of TripletEmbedder must be a float in the range [0.0, inf)"),
    ),
    (
        "margin-nan",
        X,
        Y,
        {"margin": float("nan")},
        InvalidParameterError,
        "'margin' parameter .* Got nan instead",
    ),
    (
        "mining",
        X,
        Y,
        {"mining": "semi"},
        InvalidParameterError,
        "'mining' parameter of TripletEmbedder must be a str among .*'semihard'.* Got 'semi'",
    ),
    (
        "distance",
        X,
        Y,
        {"distance": "l1"},
        InvalidParameterError,
        "'distance' parameter .* among .*'cosine'.* Got 'l1'",
    ),
    (
        "n_components",
        X,
        Y,
        {"n_components": 0},
        InvalidParameterError,
        re.escape("'n_components' parameter of TripletEmbedder must be an int in the range [1,"),
    ),
    (
        "batch-smaller-than-class",
        X,
        Y,
        {"batch_size": 4, "samples_per_class": 8},
        ValueError,
        "batch_size=4 is smaller than samples_per_class=8.*Raise batch_size or lower",
    ),
    (
        "samples_per_class",
        X,
        Y,
        {"samples_per_class": 1},
        InvalidParameterError,
        re.escape("'samples_per_class' parameter of TripletEmbedder must be an int in the "),
    ),
    (
        "lr",
        X,
        Y,
        {"lr": 0.0},
        InvalidParameterError,
        re.escape("'lr' parameter of TripletEmbedder must be a float in the range (0.0, inf)"),
    ),
    (
        "device-name",
        X,
        Y,
        {"device": "gpu"},
        ValueError,
        "device='gpu' is not a torch device; use 'auto', 'cpu', 'cuda'",
    ),
    (
        "module-3d-output",
        X,
        Y,
        {"module": ThreeD},
        ValueError,
        re.escape("must return a 2-D tensor (batch, n_components); for a batch of 2 it returned "),
    ),
    (
        "module-tuple-output",
        X,
        Y,
        {"module": ReturnsTuple},
        ValueError,
        "must return a 2-D tensor .* returned tuple",
    ),
    (
        "module-width",
        X,
        Y,
        {"module": nn.Linear(5, 3)},
        ValueError,
        "embeddings of width 3 but n_components=4; set n_components=3 or change the module",
    ),
    (
        "module-input-size",
        X,
        Y,
        {"module": nn.Linear(7, 4)},
        ValueError,
        re.escape("the module failed on samples of shape (5,)") + ".*mat1 and mat2.*Build it",
    ),
    (
        "module-bad-argument",
        X,
        Y,
        {"module": nn.Linear, "module__foo": 1},
        TypeError,
        r"could not build module Linear with arguments \[.*'foo'.*\].*module__\* parameters",
    ),
    (
        "module-instance-with-arguments",
        X,
        Y,
        {"module": nn.Linear(5, 4), "module__bias": False},
        ValueError,
        "module__\\* parameters need module to be a class, not an instance",
    ),
    (
        "module-not-a-module",
        X,
        Y,
        {"module": dict},
        TypeError,
        "module must be a torch.nn.Module subclass or instance, or None; got the class dict",
    ),
    (
        "optimizer-not-an-optimizer",
        X,
        Y,
        {"optimizer": dict},
        TypeError,
        "optimizer must be a torch.optim.Optimizer subclass such as torch.optim.Adam; got dict",
    ),
    (
        "callback-not-a-callback",
        X,
        Y,
        {"callbacks": [TrainingSpy(), 1]},
        TypeError,
        r"callbacks\[1\] is 1 \(int\); pass skorch callbacks",
    ),
    (
        "empty-image-dimension",
        np.zeros((40, 0, 4, 4), np.float32),
        Y,
        {},
        ValueError,
        re.escape("X has images of shape (0, 4, 4) (as (C, H, W)) with an empty dimension"),
    ),
    (
        "unknown-keyword",
        X,
        Y,
        {"marginn": 0.1},
        TypeError,
        r"unexpected parameter\(s\) \['marginn'\]; extra parameters must start with",
    ),
]
if not torch.cuda.is_available():
    BAD_FIT.append(
        (
            "cuda-missing",
            X,
            Y,
            {"device": "cuda"},
            ValueError,
            "device='cuda' but CUDA is not available on this machine; use device='cpu'",
        )
    )


def _fitted_attributes(est):
    return {k: v for k, v in vars(est).items() if k.endswith("_") and not k.startswith("_")}


@pytest.fixture(scope="module")
def fitted():
    return TripletEmbedder(callbacks=[TrainingSpy()], **FAST).fit(X, Y)


@pytest.mark.parametrize(
    ("X_bad", "y_bad", "params", "exc", "match"),
    [case[1:] for case in BAD_FIT],
    ids=[case[0] for case in BAD_FIT],
)
def test_bad_fit_input_raises_before_training_and_leaves_estimator_as_it_was(
    fitted, X_bad, y_bad, params, exc, match
):
    # An unfitted estimator stays unfitted.
    TrainingSpy.started = False
    fresh = TripletEmbedder(**{**FAST, "callbacks": [TrainingSpy()], **params})
    with pytest.raises(exc, match=match):
        fresh.fit(X_bad, y_bad)
    assert not TrainingSpy.started
    assert _fitted_attributes(fresh) == {}
    # A fitted one keeps every fitted attribute and its embeddings.
    est = copy.deepcopy(fitted)
    before, Z = _fitted_attributes(est), est.transform(X)
    for key, value in params.items():
        setattr(est, key, value)  # as set_params (which also refuses unknown names)
    with pytest.raises(exc, match=match):
        est.fit(X_bad, y_bad)
    assert not TrainingSpy.started
    after = _fitted_attributes(est)
    assert after.keys() == before.keys()
    assert all(after[k] is before[k] for k in before)
    np.testing.assert_array_equal(est.transform(X), Z)


@pytest.fixture(scope="module")
def fitted_images():
    return TripletEmbedder(**{**FAST, "batch_size": 16}, module__channels=(4,)).fit(IMAGES, Y)


@pytest.mark.parametrize(
    ("X_bad", "exc", "match"),
    [
        (X[:, :3], ValueError, "X has 3 features, but TripletEmbedder is expecting 5 features"),
        (X[0], ValueError, "Expected 2D array, got 1D array instead"),
        (_nan(X), ValueError, "Input X contains NaN"),
        (np.empty((0, 5)), ValueError, r"0 sample\(s\)"),
        (sp.csr_matrix(X), TypeError, r"Sparse data was passed.*\.toarray\(\)"),
        (
            IMAGES[:3],
            ValueError,
            re.escape(
                "X has images of shape (1, 6, 6) (as (C, H, W)) but TripletEmbedder was fitted "
                "on 2-D X with 5 features; pass X of shape (n_samples, 5)."
            ),
        ),
        (
            _with(X, city=["Oslo"] * 40),
            ValueError,
            r"non-numeric column\(s\): 'city'",
        ),
    ],
    ids=["n-features", "1d", "nan", "empty", "sparse", "images", "dataframe-strings"],
)
def test_bad_transform_input(fitted, X_bad, exc, match):
    with pytest.raises(exc, match=match):
        fitted.transform(X_bad)


@pytest.mark.parametrize(
    ("X_bad", "match"),
    [
        (
            IMAGES[:3, :4],
            re.escape(
                "X has images of shape (1, 4, 6) (as (C, H, W)) but TripletEmbedder was fitted "
                "on images of shape (1, 6, 6) (as (C, H, W)); resize them to 6x6 pixels "
                "with 1 channel(s)."
            ),
        ),
        (IMAGES[:3].reshape(3, -1), r"fitted on images of shape \(1, 6, 6\).*pass images"),
    ],
    ids=["image-shape", "rows"],
)
def test_bad_transform_images(fitted_images, X_bad, match):
    with pytest.raises(ValueError, match=match):
        fitted_images.transform(X_bad)


def test_transform_before_fit_is_not_fitted_error():
    with pytest.raises(NotFittedError, match="not fitted yet. Call 'fit'"):
        TripletEmbedder().transform(X)
    with pytest.raises(NotFittedError):
        TripletEmbedder().score(X, Y)


def test_warm_start_with_other_input_shape_is_refused(fitted):
    est = copy.deepcopy(fitted).set_params(warm_start=True)
    net = est.net_
    with pytest.raises(ValueError, match=r"warm_start=True but X has samples of shape \(3,\)"):
        est.fit(X[:, :3], Y)
    assert est.net_ is net and est.n_features_in_ == 5


def test_sparse_input_is_refused_not_densified():
    # Documented choice: densifying silently could exhaust memory.
    with pytest.raises(TypeError, match=r"dense data is required. Use '\.toarray\(\)'"):
        TripletEmbedder(**FAST).fit(sp.csr_matrix(X), Y)
    # The advertised fix works.
    TripletEmbedder(**FAST).fit(sp.csr_matrix(X).toarray(), Y)


def test_accepted_edge_inputs_give_finite_embeddings():
    # Classes with a single sample are fine as long as one class has two.
    y = np.r_[np.zeros(2, dtype=int), np.arange(1, 39)]
    Z = TripletEmbedder(**FAST).fit_transform(X, y)
    assert np.isfinite(Z).all()
    # Constant features, ints, bools and float16 input.
    for data in (np.c_[X, np.ones(40)], (X * 10).astype(int), X > 0, X.astype(np.float16)):
        Z = TripletEmbedder(**FAST).fit_transform(data, Y)
        assert Z.dtype == np.float32 and np.isfinite(Z).all()


def test_fit_keyword_arguments_are_refused_before_training():
    TrainingSpy.started = False
    est = TripletEmbedder(callbacks=[TrainingSpy()], **FAST)
    with pytest.raises(TypeError, match=r"fit got unexpected keyword argument\(s\) \['foo'\]"):
        est.fit(X, Y, foo=1)
    assert not TrainingSpy.started and _fitted_attributes(est) == {}


def test_channels_last_images_train_like_their_channels_first_transpose():
    images = (RNG.random((40, 10, 9, 3)) * 255).astype(np.uint8)
    last = TripletEmbedder(**FAST, module__channels=(4,)).fit(images, Y)
    first_images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    first = TripletEmbedder(**FAST, module__channels=(4,)).fit(first_images, Y)
    assert last.input_shape_ == first.input_shape_ == (3, 10, 9)
    assert last.input_spec_.layout == "channels_last"
    np.testing.assert_array_equal(last.transform(images), first.transform(first_images))
    # Either layout of the fitted shape is accepted by transform.
    np.testing.assert_array_equal(last.transform(first_images), last.transform(images))


def test_ambiguous_image_layout_warns_and_can_be_named():
    images = RNG.random((40, 3, 8, 3)).astype(np.float32)  # (C,H,W) or (H,W,C)?
    with pytest.warns(UserWarning, match="image_layout='channels_last'"):
        est = TripletEmbedder(**FAST, module__channels=(4,)).fit(images, Y)
    assert est.input_shape_ == (3, 8, 3)
    named = TripletEmbedder(**FAST, module__channels=(4,), image_layout="channels_last")
    assert named.fit(images, Y).input_shape_ == (3, 3, 8)


def test_channels_last_rule_on_shapes():
    from sktriplet.inputs.validation import resolve_layout

    assert resolve_layout((5, 28, 28, 1), "auto") == "channels_last"
    assert resolve_layout((5, 64, 64, 4), "auto") == "channels_last"
    assert resolve_layout((5, 1, 28, 28), "auto") == "channels_first"
    assert resolve_layout((5, 8, 8, 8), "auto") == "channels_first"
    assert resolve_layout((5, 3, 3, 3), "auto") == "channels_first"  # same either way
    assert resolve_layout((5, 3, 32, 32), "channels_last") == "channels_last"
