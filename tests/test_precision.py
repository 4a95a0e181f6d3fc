"""``precision="auto"`` / ``"32"`` / ``"bf16"``: what each pass runs in (issue 30).

References: a float32 forward pass of the fitted network written here, and
the loss's own input dtype recorded by a spy; the detector is monkeypatched,
so the tests hold on any CPU.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sktriplet import TripletEmbedder, load, save
from sktriplet.runtime import precision as precision_module
from sktriplet.runtime.precision import (
    check_precision,
    fast_bf16_training,
    native_bf16,
    resolve_precision,
)
from sktriplet.training.feature_cache import cache_features
from sktriplet.triplets.losses import TripletLoss

FAST = dict(max_epochs=2, batch_size=64, random_state=0, verbose=0)


@pytest.fixture(scope="module")
def data(small_digits):
    X, y = small_digits
    return X[:200], y[:200], X[200:260]


def _reference(est, X):
    # The estimator scales pixel-like rows before the network: embed through
    # the same scaler by running the net's module on what transform feeds it.
    from sktriplet.inputs.loading import make_dataset
    from sktriplet.inputs.validation import validate_transform

    dataset = make_dataset(validate_transform(est, X, est.input_spec_), est.input_spec_)
    module = est.net_.module_.eval()
    with torch.inference_mode():
        return module(torch.as_tensor(np.asarray(dataset.array))).numpy()


@pytest.fixture
def native(monkeypatch):
    """Make the detector answer ``True`` or ``False`` (call with the answer)."""

    def set_native(answer: bool) -> None:
        monkeypatch.setattr(precision_module, "native_bf16", lambda device="cpu": answer)

    return set_native


def test_32_runs_float32_bitwise(data):
    X, y, X_new = data
    est = TripletEmbedder(precision="32", **FAST).fit(X, y)
    assert (est.precision_, est.inference_precision_) == ("32", "32")
    np.testing.assert_array_equal(est.transform(X_new), _reference(est, X_new))


def test_auto_without_native_bf16_is_float32_bitwise(data, native):
    X, y, X_new = data
    native(False)
    auto = TripletEmbedder(**FAST).fit(X, y)
    ref = TripletEmbedder(precision="32", **FAST).fit(X, y)
    assert auto.precision == "auto"
    assert (auto.precision_, auto.inference_precision_) == ("32", "32")
    np.testing.assert_array_equal(auto.transform(X_new), ref.transform(X_new))


def test_auto_with_native_bf16_trains_float32_and_embeds_bf16(data, native):
    X, y, X_new = data
    native(True)
    auto = TripletEmbedder(**FAST).fit(X, y)
    native(False)
    ref = TripletEmbedder(precision="32", **FAST).fit(X, y)
    assert (auto.precision_, auto.inference_precision_) == ("32", "bf16")
    assert auto.net_.precision == "auto"
    # Training was float32: the same weights as precision="32".
    for a, b in zip(auto.net_.module_.parameters(), ref.net_.module_.parameters(), strict=True):
        assert torch.equal(a, b)
    native(True)
    Z = auto.transform(X_new)
    exact = _reference(auto, X_new)
    assert Z.dtype == np.float32
    assert not np.array_equal(Z, exact)  # bfloat16 did run
    np.testing.assert_allclose(Z, exact, atol=0.05)
    native(False)  # transform resolves for the machine it runs on
    np.testing.assert_array_equal(auto.transform(X_new), exact)


def test_bf16_trains_and_embeds_in_bfloat16_with_float32_weights(data):
    X, y, X_new = data
    est = TripletEmbedder(precision="bf16", **FAST).fit(X, y)
    assert (est.precision_, est.inference_precision_) == ("bf16", "bf16")
    assert all(p.dtype == torch.float32 for p in est.net_.module_.parameters())
    Z = est.transform(X_new)
    exact = _reference(est, X_new)
    assert Z.dtype == np.float32
    assert not np.array_equal(Z, exact)
    np.testing.assert_allclose(Z, exact, atol=0.05)
    np.testing.assert_allclose(np.linalg.norm(Z, axis=1), 1.0, rtol=1e-5)


def test_the_loss_sees_float32_under_bf16(data, monkeypatch):
    X, y, _ = data
    seen = []
    forward = TripletLoss.forward

    def spy(self, embeddings, labels, *args, **kwargs):
        loss = forward(self, embeddings, labels, *args, **kwargs)
        seen.append((embeddings.dtype, loss.dtype))
        return loss

    monkeypatch.setattr(TripletLoss, "forward", spy)
    TripletEmbedder(precision="bf16", **{**FAST, "max_epochs": 1}).fit(X, y)
    # The network's output: float32 (L2Normalize normalises in float32, so the
    # rows are unit-norm), and the loss is float32.
    assert seen and {s for s in seen} == {(torch.float32, torch.float32)}


def test_feature_caching_follows_the_inference_precision():
    torch.manual_seed(0)
    extractor = torch.nn.Linear(16, 8)
    x = torch.randn(40, 16)
    exact = (x @ extractor.weight.T + extractor.bias).detach().numpy()
    data = torch.utils.data.TensorDataset(x)
    f32 = cache_features(extractor, data, batch_size=16, precision="32")
    bf16 = cache_features(extractor, data, batch_size=16, precision="bf16")
    np.testing.assert_allclose(f32, exact, rtol=1e-6, atol=1e-6)
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, f32)
    np.testing.assert_allclose(bf16, exact, atol=0.1)


@pytest.mark.parametrize(
    ("precision", "native_answer", "fast", "pretrained", "expected"),
    [
        ("auto", True, False, False, ("32", "bf16")),
        ("auto", True, False, True, ("32", "bf16")),  # AVX-512 BF16 without AMX
        ("auto", True, True, True, ("bf16", "bf16")),  # AMX / CUDA: pretrained trains bf16
        ("auto", True, True, False, ("32", "bf16")),  # ... from-scratch networks do not
        ("auto", False, False, True, ("32", "32")),
        ("32", True, True, True, ("32", "32")),
        ("bf16", False, False, False, ("bf16", "bf16")),
        ("16", True, True, True, ("16", "32")),
    ],
)
def test_resolution_table(
    native, monkeypatch, precision, native_answer, fast, pretrained, expected
):
    native(native_answer)
    monkeypatch.setattr(precision_module, "fast_bf16_training", lambda device="cpu": fast)
    assert tuple(resolve_precision(precision, "cpu", pretrained=pretrained)) == expected


def test_a_from_scratch_network_trains_float32_even_where_bf16_training_is_fast(
    data, native, monkeypatch
):
    X, y, X_new = data
    native(True)
    monkeypatch.setattr(precision_module, "fast_bf16_training", lambda device="cpu": True)
    auto = TripletEmbedder(**FAST).fit(X, y)
    ref = TripletEmbedder(precision="32", **FAST).fit(X, y)
    assert (auto.precision_, auto.inference_precision_) == ("32", "bf16")
    for a, b in zip(auto.net_.module_.parameters(), ref.net_.module_.parameters(), strict=True):
        assert torch.equal(a, b)


def test_cpu_detection_reads_the_bf16_flags(monkeypatch):
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert native_bf16("cpu") is False and fast_bf16_training("cpu") is False
    for flag in ("avx512_bf16", "amx_bf16"):
        monkeypatch.setattr(precision_module, "_cpu_flags", lambda f=flag: frozenset({"avx2", f}))
        assert native_bf16("cpu") is True
        assert fast_bf16_training("cpu") is (flag == "amx_bf16")  # AMX only
        assert native_bf16("meta") is False and fast_bf16_training("meta") is False


def test_cpu_flags_are_empty_off_linux(monkeypatch):
    monkeypatch.setattr(precision_module.sys, "platform", "darwin")
    assert precision_module._cpu_flags.__wrapped__() == frozenset()


@pytest.mark.parametrize("bad", ["8", "fp32", 32, None])
def test_a_bad_precision_names_the_choices(data, bad):
    with pytest.raises(ValueError, match="'auto', '32', 'bf16', '16'"):
        check_precision(bad)
    X, y, _ = data
    with pytest.raises(ValueError, match="precision"):
        TripletEmbedder(precision=bad, **FAST).fit(X, y)


def test_save_keeps_the_precision_and_an_old_file_without_it_loads(data, tmp_path):
    X, y, X_new = data
    est = TripletEmbedder(precision="bf16", **FAST).fit(X, y)
    path = tmp_path / "m.sktriplet"
    save(est, path)
    loaded = load(path)
    assert loaded.precision == "bf16" and loaded.precision_ == "bf16"
    np.testing.assert_array_equal(loaded.transform(X_new), est.transform(X_new))
    # A file written before the parameter existed: the default applies.
    from tests.test_persistence import _members, _rewrite, _sha

    members = _members(path)
    config = json.loads(members["config.json"])
    del config["params"]["precision"]
    config["fitted"] = {k: v for k, v in config["fitted"].items() if not k.endswith("precision_")}
    config_bytes = json.dumps(config).encode()
    checksums = {"config.json": _sha(config_bytes), "weights.pt": _sha(members["weights.pt"])}
    _rewrite(path, **{"config.json": config_bytes, "sha256.json": json.dumps(checksums).encode()})
    old = load(path)
    assert old.precision == "auto"
    Z = old.transform(X_new)
    assert Z.dtype == np.float32
    np.testing.assert_allclose(Z, _reference(old, X_new), atol=0.05)
