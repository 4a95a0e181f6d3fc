"""Devices and mixed precision.

The precision tests run on the CPU (torch autocasts to bfloat16 and float16
there too); the tests marked ``cuda`` need a GPU and are skipped without one.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from sklearn.utils._param_validation import InvalidParameterError
from skorch.callbacks import Callback

from sktriplet import TripletEmbedder
from sktriplet.inputs.loading import ArrayDataset
from sktriplet.training.net import TripletNet
from sktriplet.triplets.losses import TripletLoss

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
FAST = dict(max_epochs=4, batch_size=64, lr=3e-3, random_state=0)


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    return X[:600], y[:600], X[600:1000], y[600:1000]


class FirstGradNorm(Callback):
    """Record the gradient norm that callbacks see on the first batch."""

    def initialize(self):
        self.norm_ = None
        return self

    def on_grad_computed(self, net, named_parameters, **kwargs):
        if self.norm_ is None:
            grads = [p.grad.detach().float().norm() for _, p in named_parameters]
            self.norm_ = float(torch.stack(grads).norm())


def _net(precision: str, device: str = "cpu") -> TripletNet:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
    net = TripletNet(
        module=module,
        criterion=TripletLoss,
        precision=precision,
        device=device,
        train_split=None,
        max_epochs=1,
        batch_size=16,
    )
    return net.initialize()


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("32", torch.float32), ("bf16", torch.bfloat16), ("16", torch.float16)],
)
def test_forward_runs_in_the_precision_and_the_loss_in_float32(precision, dtype):
    net = _net(precision)
    net.module_.train()
    emb = net.infer(torch.randn(8, 8))
    assert emb.dtype == dtype
    loss = net.get_loss(emb, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]), training=True)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_mixed_precision_fit_matches_float32_quality(data, precision):
    X, y, X_test, y_test = data
    ref = TripletEmbedder(device="cpu", **FAST).fit(X, y)
    est = TripletEmbedder(device="cpu", precision=precision, **FAST).fit(X, y)
    assert np.isfinite(est.net_.history[:, "train_loss"]).all()
    Z = est.transform(X_test)
    assert Z.dtype == np.float32  # transform runs in float32
    assert est.score(X_test, y_test) == pytest.approx(ref.score(X_test, y_test), abs=0.05)
    assert (getattr(est.net_, "grad_scaler_", None) is not None) == (precision == "16")
    clone = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(clone.transform(X_test[:5]), est.transform(X_test[:5]))


def test_float16_callbacks_see_unscaled_gradients(data):
    # GradScaler multiplies the loss by 2**16; callbacks such as gradient
    # clipping must see the gradients of the loss itself.
    X, y, _, _ = data
    norms = {}
    for precision in ("32", "16"):
        cb = FirstGradNorm()
        TripletEmbedder(
            device="cpu", precision=precision, callbacks=[cb], **{**FAST, "max_epochs": 1}
        ).fit(X, y)
        norms[precision] = cb.norm_
    assert 0.5 < norms["16"] / norms["32"] < 2.0


def test_warm_start_takes_the_new_precision(data):
    X, y, _, _ = data
    est = TripletEmbedder(device="cpu", **{**FAST, "max_epochs": 1}).fit(X, y)
    est.set_params(warm_start=True, precision="bf16").fit(X, y)
    assert est.net_.precision == "bf16" and len(est.net_.history) == 2


def test_precision_is_validated(data):
    X, y, _, _ = data
    with pytest.raises(InvalidParameterError, match="precision"):
        TripletEmbedder(precision="8").fit(X, y)


# ------------------------------------------------------------ CUDA only
@cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "auto"])
def test_fit_on_gpu_and_transform_to_numpy(data, device):
    X, y, X_test, _ = data
    est = TripletEmbedder(device=device, **FAST).fit(X, y)
    assert est.device_.startswith("cuda")
    assert all(p.is_cuda for p in est.net_.module_.parameters())
    stats = est.net_.criterion_.last_stats
    assert all(v.is_cuda for v in stats.values())  # mining ran on the GPU
    # Training batches are assembled on the host, one tensor each, and moved
    # to the GPU once by the net: the module only ever sees CUDA inputs.
    X_batch, y_batch = next(iter(est.net_.get_iterator(ArrayDataset(X, y), training=True)))
    assert X_batch.device.type == "cpu" and y_batch.device.type == "cpu"
    seen = []
    hook = est.net_.module_.register_forward_pre_hook(lambda m, a: seen.append(a[0].device))
    est.transform(X_test[:10])
    hook.remove()
    assert [d.type for d in seen] == ["cuda"]
    Z = est.transform(X_test)
    assert isinstance(Z, np.ndarray) and Z.dtype == np.float32
    cpu_module = est.net_.module_.to("cpu").eval()
    with torch.no_grad():
        Z_cpu = cpu_module(torch.from_numpy(X_test)).numpy()
    np.testing.assert_allclose(Z, Z_cpu, atol=1e-4)


@cuda
@pytest.mark.parametrize("precision", ["bf16", "16"])
def test_mixed_precision_on_gpu(data, precision):
    X, y, X_test, y_test = data
    ref = TripletEmbedder(device="cuda", **FAST).fit(X, y)
    est = TripletEmbedder(device="cuda", precision=precision, **FAST).fit(X, y)
    assert np.isfinite(est.net_.history[:, "train_loss"]).all()
    assert est.score(X_test, y_test) == pytest.approx(ref.score(X_test, y_test), abs=0.05)


@cuda
def test_fitted_on_gpu_unpickles_and_transforms(data):
    X, y, X_test, _ = data
    est = TripletEmbedder(device="cuda", **FAST).fit(X, y)
    clone = pickle.loads(pickle.dumps(est))
    np.testing.assert_allclose(clone.transform(X_test), est.transform(X_test), atol=1e-6)
