"""Persistence: pickle, joblib and the safe ``save``/``load`` format."""

import contextlib
import io
import json
import os
import pickle
import warnings
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.exceptions import NotFittedError
from skorch.exceptions import DeviceWarning
from torch import nn

import sktriplet
from sktriplet import TripletEmbedder, load, save
from sktriplet.io.persistence import ModelFileError

FAST = {
    "max_epochs": 2,
    "batch_size": 32,
    "samples_per_class": 4,
    "n_components": 8,
    "random_state": 0,
    "device": "cpu",
    "module__hidden_units": (32,),
}
CUSTOM = {k: v for k, v in FAST.items() if not k.startswith("module__")}


class TinyNet(nn.Module):
    """An importable custom module (``tests.test_persistence:TinyNet``)."""

    def __init__(self, n_features, n_components, width=8, activation=nn.ReLU):
        super().__init__()
        self.lin = nn.Sequential(
            nn.Linear(n_features, width), activation(), nn.Linear(width, n_components)
        )

    def forward(self, x):
        return nn.functional.normalize(self.lin(x), dim=1)


class MyEmbedder(TripletEmbedder):
    """An importable subclass (``tests.test_persistence:MyEmbedder``)."""

    def transform(self, X):
        return 2 * super().transform(X)


@pytest.fixture(scope="module")
def data(small_digits):
    X, y = small_digits
    return X[:160], y[:160]


@pytest.fixture(scope="module")
def fitted(data):
    return TripletEmbedder(**FAST).fit(*data)


@pytest.fixture
def saved(fitted, tmp_path):
    path = tmp_path / "model.sktriplet"
    save(fitted, path)
    return path


def _rewrite(path, **members):
    """Rewrite the zip at ``path`` with some members replaced."""
    with zipfile.ZipFile(path) as zf:
        raw = {n: zf.read(n) for n in zf.namelist()}
    raw.update(members)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in raw.items():
            zf.writestr(name, data)


def _members(path):
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def _sha(data):
    import hashlib

    return hashlib.sha256(data).hexdigest()


class _Evil:
    """Unpickling this runs code: it creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ------------------------------------------------------------ pickle/joblib
def test_pickle_and_joblib_round_trips_give_identical_transform(fitted, data, tmp_path):
    X, _ = data
    want = fitted.transform(X)
    again = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(again.transform(X), want)
    joblib.dump(fitted, tmp_path / "m.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "m.joblib").transform(X), want)


@contextlib.contextmanager
def fake_cuda_tags(net):
    """Tag the storages of ``net``'s module and optimizer as living on ``cuda:0``.

    Files written meanwhile look like those of a GPU machine, where these
    tensors are on the GPU (the random state stays on the CPU): ``torch.load``
    without ``map_location`` fails on them on a CPU-only machine.
    """
    tensors = list(net.module_.state_dict().values()) + [
        v for state in net.optimizer_.state.values() for v in state.values()
    ]
    on_gpu = {t.untyped_storage().data_ptr() for t in tensors if isinstance(t, torch.Tensor)}

    def tagger(storage):
        return "cuda:0" if storage.data_ptr() in on_gpu else None

    entry = (0, tagger, lambda storage, location: None)
    torch.serialization._package_registry.insert(0, entry)
    try:
        yield
    finally:
        torch.serialization._package_registry.remove(entry)


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a CPU-only machine")
def test_gpu_pickle_loads_on_cpu_only_machine(fitted, data):
    X, _ = data
    want = fitted.transform(X)
    gpu_like = pickle.loads(pickle.dumps(fitted))
    gpu_like.net_.device = "cuda"
    with fake_cuda_tags(gpu_like.net_):
        blob = pickle.dumps(gpu_like)
    with pytest.warns(DeviceWarning):  # skorch maps the CUDA tensors to the CPU
        again = pickle.loads(blob)
    assert str(again.net_.device) == "cpu"
    np.testing.assert_array_equal(again.transform(X), want)


@pytest.mark.skipif(torch.cuda.is_available(), reason="simulates a CPU-only machine")
def test_gpu_saved_file_loads_on_cpu_only_machine(fitted, data, tmp_path):
    X, _ = data
    path = tmp_path / "gpu.sktriplet"
    with fake_cuda_tags(fitted.net_):
        save(fitted, path)
    weights = _members(path)["weights.pt"]
    with pytest.raises(RuntimeError, match="CUDA"):  # the simulation is faithful
        torch.load(io.BytesIO(weights), weights_only=True)
    again = load(path)
    assert again.device_ == "cpu"
    np.testing.assert_array_equal(again.transform(X), fitted.transform(X))


# ----------------------------------------------------------- safe round trip
def test_save_load_round_trip(fitted, saved, data):
    X, _ = data
    again = load(saved)
    assert type(again) is TripletEmbedder
    np.testing.assert_array_equal(again.transform(X), fitted.transform(X))
    assert again.get_params() == fitted.get_params()
    assert again.module__hidden_units == (32,)  # a tuple stays a tuple
    np.testing.assert_array_equal(again.classes_, fitted.classes_)
    assert again.classes_.dtype == fitted.classes_.dtype
    assert again.input_shape_ == fitted.input_shape_
    assert again.n_features_in_ == 64 and again.n_components_ == 8
    assert list(again.net_.history[:, "train_loss"]) == list(fitted.net_.history[:, "train_loss"])
    for key, value in fitted.net_.module_.state_dict().items():
        assert torch.equal(again.net_.module_.state_dict()[key], value), key
    assert again.score(*data) == pytest.approx(fitted.score(*data))


def test_save_load_keeps_strings_feature_names_and_images(data, tmp_path):
    X, y = data
    names = np.array(["ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay"])[y]
    df = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    emb = TripletEmbedder(**FAST).fit(df, names)
    save(emb, tmp_path / "df.sktriplet")
    again = load(tmp_path / "df.sktriplet")
    assert list(again.feature_names_in_) == list(df.columns)
    np.testing.assert_array_equal(again.classes_, emb.classes_)
    np.testing.assert_array_equal(again.transform(df), emb.transform(df))
    with pytest.raises(ValueError, match="feature names"):
        again.transform(df.rename(columns={"px0": "other"}))

    images = (X.reshape(-1, 8, 8) * 16).astype(np.uint8)
    cnn = TripletEmbedder(**{**FAST, "max_epochs": 1}, module__channels=(4,))
    cnn.set_params(module__hidden_units=None)
    del cnn.module__hidden_units
    cnn.fit(images, y)
    save(cnn, tmp_path / "cnn.sktriplet")
    again = load(tmp_path / "cnn.sktriplet")
    assert again.input_shape_ == (1, 8, 8)
    np.testing.assert_array_equal(again.transform(images), cnn.transform(images))


def test_custom_importable_module_round_trips(data, tmp_path):
    X, y = data
    emb = TripletEmbedder(
        module=TinyNet, module__width=6, module__activation=nn.Tanh, **CUSTOM
    ).fit(X, y)
    save(emb, tmp_path / "tiny.sktriplet")
    config = json.loads(_members(tmp_path / "tiny.sktriplet")["config.json"])
    assert config["params"]["module"] == {"__class__": "tests.test_persistence:TinyNet"}
    again = load(tmp_path / "tiny.sktriplet")
    assert again.module is TinyNet and again.module__activation is nn.Tanh
    assert isinstance(again.net_.module_[1].lin[1], nn.Tanh)
    np.testing.assert_array_equal(again.transform(X), emb.transform(X))


def test_estimator_subclasses_round_trip(data, tmp_path):
    X, y = data
    emb = MyEmbedder(**FAST).fit(X, y)
    save(emb, tmp_path / "sub.sktriplet")
    again = load(tmp_path / "sub.sktriplet")
    assert type(again) is MyEmbedder
    np.testing.assert_array_equal(again.transform(X), emb.transform(X))

    class LocalEmbedder(TripletEmbedder):
        pass

    with pytest.raises(ValueError, match="cannot save a .*LocalEmbedder.*inside a function"):
        save(LocalEmbedder(**FAST).fit(X, y), tmp_path / "local.sktriplet")


def test_non_importable_modules_are_refused_at_save(data, tmp_path):
    X, y = data

    class LocalNet(TinyNet):
        pass

    emb = TripletEmbedder(module=LocalNet, **CUSTOM).fit(X, y)
    with pytest.raises(ValueError, match="LocalNet is defined inside a function.*importable"):
        save(emb, tmp_path / "local.sktriplet")
    assert not (tmp_path / "local.sktriplet").exists()
    emb = TripletEmbedder(module=TinyNet(64, 8), **CUSTOM).fit(X, y)
    with pytest.raises(ValueError, match=r"module is an instance of TinyNet.*module=TinyNet"):
        save(emb, tmp_path / "instance.sktriplet")


def test_save_refuses_unfitted_and_foreign_objects(tmp_path):
    with pytest.raises(NotFittedError):
        save(TripletEmbedder(), tmp_path / "x.sktriplet")
    with pytest.raises(TypeError, match="expects a fitted TripletEmbedder"):
        save(object(), tmp_path / "x.sktriplet")


def test_unsaveable_parameters_are_dropped_with_a_warning(data, tmp_path):
    from skorch.callbacks import EpochTimer

    X, y = data
    emb = TripletEmbedder(callbacks=[("timer2", EpochTimer())], **FAST).fit(X, y)
    with pytest.warns(UserWarning, match=r"\['callbacks'\] are not JSON-able"):
        save(emb, tmp_path / "cb.sktriplet")
    again = load(tmp_path / "cb.sktriplet")
    assert again.callbacks is None
    np.testing.assert_array_equal(again.transform(X), emb.transform(X))


def test_loaded_model_resumes_training_exactly(data, tmp_path):
    X, y = data
    params = {**FAST, "module__dropout": 0.2}
    full = TripletEmbedder(**{**params, "max_epochs": 4}).fit(X, y)
    save(TripletEmbedder(**params).fit(X, y), tmp_path / "half.sktriplet")
    resumed = load(tmp_path / "half.sktriplet").set_params(warm_start=True)
    resumed.fit(X, y)
    assert len(resumed.net_.history) == 4
    np.testing.assert_array_equal(resumed.transform(X), full.transform(X))


# ---------------------------------------------------------- refused files
def test_tampered_weights_are_refused(saved):
    weights = bytearray(_members(saved)["weights.pt"])
    weights[len(weights) // 2] ^= 0xFF
    _rewrite(saved, **{"weights.pt": bytes(weights)})
    with pytest.raises(ModelFileError, match="checksum of weights.pt does not match"):
        load(saved)


def test_tampered_config_is_refused(saved):
    config = json.loads(_members(saved)["config.json"])
    config["params"]["margin"] = 0.9
    _rewrite(saved, **{"config.json": json.dumps(config).encode()})
    with pytest.raises(ModelFileError, match="checksum of config.json does not match"):
        load(saved)


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_truncated_file_is_refused(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        load(saved)


def test_foreign_files_are_refused(tmp_path):
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ModelFileError, match="not an sktriplet model file"):
        load(other)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.sktriplet")


def test_plain_malicious_pickle_is_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.sktriplet"
    path.write_bytes(pickle.dumps(_Evil(marker)))
    with pytest.raises(ModelFileError, match="not a valid sktriplet model file"):
        load(path)
    assert not marker.exists()
    # The control: unpickling the same bytes does run the code.
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("where", ["module", "top"])
def test_malicious_weights_with_valid_checksums_are_not_run(saved, tmp_path, where):
    # An attacker can recompute the checksums: only weights_only stops this.
    marker = tmp_path / "pwned"
    evil = _Evil(marker)
    buffer = io.BytesIO()
    torch.save({"module": {"w": evil}} if where == "module" else evil, buffer)
    members = _members(saved)
    checksums = json.loads(members["sha256.json"])
    checksums["weights.pt"] = _sha(buffer.getvalue())
    _rewrite(
        saved,
        **{"weights.pt": buffer.getvalue(), "sha256.json": json.dumps(checksums).encode()},
    )
    with pytest.raises(ModelFileError, match=r"weights_only=True\) refused"):
        load(saved)
    assert not marker.exists()


def test_config_naming_a_non_module_callable_is_refused(saved, tmp_path):
    marker = tmp_path / "pwned"
    members = _members(saved)
    config = json.loads(members["config.json"])
    config["params"]["module"] = {"__class__": "os:system"}
    config["params"]["module__command"] = f"touch {marker}"
    raw = json.dumps(config).encode()
    checksums = {"config.json": _sha(raw), "weights.pt": _sha(members["weights.pt"])}
    _rewrite(saved, **{"config.json": raw, "sha256.json": json.dumps(checksums).encode()})
    with pytest.raises(ModelFileError, match="os:system, which is not a torch.nn.Module"):
        load(saved)
    assert not marker.exists()


def _resign(path, config):
    """Rewrite ``config.json`` with valid checksums (as an attacker could)."""
    members = _members(path)
    raw = json.dumps(config).encode()
    checksums = {"config.json": _sha(raw), "weights.pt": _sha(members["weights.pt"])}
    _rewrite(path, **{"config.json": raw, "sha256.json": json.dumps(checksums).encode()})


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.update(params=[]),
        lambda c: c.pop("net"),
        lambda c: c["fitted"].update(classes_={"__ndarray__": [1], "dtype": "V8"}),
        lambda c: c["fitted"].update(classes_={"__ndarray__": [1], "dtype": "no-such-dtype"}),
        lambda c: c["fitted"].update(input_shape_="abc"),
        lambda c: c["input_spec"].update(sample_shape="abc"),
        lambda c: c["input_spec"].update(kind="sound"),
        lambda c: c["fitted"].update(input_shape_={"__tuple__": [3]}),
        lambda c: c["params"].update(margin={"__unknown__": 1}),
        lambda c: c["params"].update(module={"__class__": "not a path"}),
        lambda c: c["params"].update(module={"__class__": "no_such_package_xyz:Net"}),
        lambda c: c["params"].update(frobnicate=1),
        lambda c: c.update(estimator="collections:OrderedDict"),
    ],
    ids=[
        "params-list",
        "no-net",
        "void-dtype",
        "bad-dtype",
        "input-shape",
        "spec-shape",
        "spec-kind",
        "shape-mismatch",
        "unknown-tag",
        "bad-path",
        "missing-package",
        "unknown-param",
        "not-an-estimator",
    ],
)
def test_malformed_config_with_valid_checksums_is_refused(saved, mutate):
    config = json.loads(_members(saved)["config.json"])
    mutate(config)
    _resign(saved, config)
    with pytest.raises(ModelFileError):
        load(saved)


def test_newer_format_version_is_refused(saved):
    members = _members(saved)
    config = json.loads(members["config.json"])
    config["format_version"] = 99
    raw = json.dumps(config).encode()
    checksums = {"config.json": _sha(raw), "weights.pt": _sha(members["weights.pt"])}
    _rewrite(saved, **{"config.json": raw, "sha256.json": json.dumps(checksums).encode()})
    with pytest.raises(ModelFileError, match="format version 99.*upgrade sktriplet"):
        load(saved)


def test_save_is_atomic_and_overwrites(fitted, tmp_path):
    path = tmp_path / "m.sktriplet"
    path.write_bytes(b"old")
    save(fitted, path)
    assert zipfile.is_zipfile(path)
    assert sorted(os.listdir(tmp_path)) == ["m.sktriplet"]  # no temporary left
    assert sktriplet.load(path).n_components_ == 8


def _image_embedder():
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 255, (16, 8, 8), dtype=np.uint8), np.repeat([0, 1], 8)
    params = {k: v for k, v in CUSTOM.items() if k != "max_epochs"}
    return X, TripletEmbedder(max_epochs=1, **params).fit(X, y)


def test_files_of_the_average_pooling_default_cnn_still_load(tmp_path, monkeypatch):
    # A file saved while the default CNN averaged its last map (no
    # module__pooling in its parameters) loads with pooling="avg" and embeds
    # exactly as before.
    import functools

    import sktriplet.training.build
    from sktriplet.networks import ConvEmbedder

    with monkeypatch.context() as m:
        old_default = functools.partial(ConvEmbedder, pooling="avg")
        m.setattr(sktriplet.training.build, "ConvEmbedder", old_default)
        X, old = _image_embedder()
        save(old, tmp_path / "old")
    assert "module__pooling" not in old.get_params()
    loaded = load(tmp_path / "old")
    assert loaded.get_params()["module__pooling"] == "avg"
    assert loaded.net_.module_[1].pooling == "avg"
    np.testing.assert_array_equal(loaded.transform(X), old.transform(X))
    # Today's files keep today's default.
    X, new = _image_embedder()
    save(new, tmp_path / "new")
    assert load(tmp_path / "new").net_.module_[1].pooling == "avgmax"


def test_weights_of_a_changed_default_network_give_a_clear_error(tmp_path, monkeypatch):
    # A file whose weights no longer fit the rebuilt default network: load
    # names the versions, not a bare torch size-mismatch traceback.
    import functools

    import sktriplet.training.build
    from sktriplet.networks import ConvEmbedder

    _, emb = _image_embedder()
    save(emb, tmp_path / "m")
    changed = functools.partial(ConvEmbedder, channels=(32, 64, 96))
    monkeypatch.setattr(sktriplet.training.build, "ConvEmbedder", changed)
    with pytest.raises(ModelFileError, match=r"(?s)do not fit .* \(saved by sktriplet .*loaded by"):
        load(tmp_path / "m")


# ------------------------------------------------------------- zip bombs
_BOMB_SCRIPT = """
import sys, time
from sktriplet import load
from sktriplet.io.persistence import ModelFileError

def hwm_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))

before = hwm_kib()
start = time.perf_counter()
try:
    load(sys.argv[1])
except ModelFileError as exc:
    outcome = "ModelFileError: " + str(exc)
else:
    outcome = "loaded"
print(time.perf_counter() - start, hwm_kib() - before, outcome, sep="\\n")
"""


def _write_bomb(path, *, member="config.json", size=512 * 2**20, members=None):
    """A model-file-shaped zip whose ``member`` inflates to ``size`` bytes.

    The payload is written in 1 MiB chunks of one repeated byte, so making it
    costs little memory; deflate squeezes it about a thousandfold (0.5 MiB on disk).
    """
    members = dict(members or {"config.json": b"{}", "weights.pt": b"", "sha256.json": b"{}"})
    chunk = b"a" * 2**20
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, data in members.items():
            if name != member:
                zf.writestr(name, data)
                continue
            with zf.open(name, "w") as f:
                for _ in range(size // len(chunk)):
                    f.write(chunk)
    return path


def _set_declared_size(path, name, size):
    """Make the zip's headers (local and central) declare ``size`` bytes for ``name``."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        local = zf.getinfo(name).header_offset
    data[local + 22 : local + 26] = size.to_bytes(4, "little")
    eocd = data.rfind(b"PK\x05\x06")
    central = int.from_bytes(data[eocd + 16 : eocd + 20], "little")  # central directory
    while data[central : central + 4] == b"PK\x01\x02":
        name_len = int.from_bytes(data[central + 28 : central + 30], "little")
        if data[central + 46 : central + 46 + name_len] == name.encode():
            data[central + 24 : central + 28] = size.to_bytes(4, "little")
        extra_len = int.from_bytes(data[central + 30 : central + 32], "little")
        comment_len = int.from_bytes(data[central + 32 : central + 34], "little")
        central += 46 + name_len + extra_len + comment_len
    path.write_bytes(bytes(data))


def test_config_zip_bomb_is_refused_fast_without_inflating(tmp_path):
    import subprocess
    import sys

    bomb = _write_bomb(tmp_path / "bomb.sktriplet")
    assert bomb.stat().st_size < 8 * 2**20  # a few MiB on disk
    with zipfile.ZipFile(bomb) as zf:
        assert zf.getinfo("config.json").file_size == 512 * 2**20
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, "-c", _BOMB_SCRIPT, str(bomb)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    seconds, grown_kib, outcome = run.stdout.strip().split("\n", 2)
    assert outcome.startswith("ModelFileError"), outcome
    assert "config.json declares 536,870,912 bytes" in outcome
    assert float(seconds) < 10
    assert int(grown_kib) < 128 * 1024


def test_a_header_that_understates_the_size_is_caught(tmp_path):
    bomb = _write_bomb(tmp_path / "liar.sktriplet", size=64 * 2**20)
    _set_declared_size(bomb, "config.json", 1000)
    with zipfile.ZipFile(bomb) as zf:
        assert zf.getinfo("config.json").file_size == 1000
    with pytest.raises(ModelFileError, match="not a valid sktriplet model file"):
        load(bomb)


def test_a_header_that_overstates_the_size_is_caught(saved):
    with zipfile.ZipFile(saved) as zf:
        true_size = zf.getinfo("config.json").file_size
    _set_declared_size(saved, "config.json", true_size + 10)
    with pytest.raises(ModelFileError, match="holds .* bytes where its header declares"):
        load(saved)


def test_weights_beyond_the_declared_size_are_refused_unread(saved):
    members = _members(saved)
    declared = json.loads(members["config.json"])["weights_bytes"]
    assert declared == len(members["weights.pt"])
    bomb = _write_bomb(saved, member="weights.pt", size=declared + 2**20, members=members)
    with pytest.raises(ModelFileError, match=f"weights.pt declares .* more than the {declared:,}"):
        load(bomb)


def test_weights_bomb_of_an_old_file_is_bounded_by_the_compression_ratio(saved):
    members = _members(saved)
    config = json.loads(members["config.json"])
    del config["weights_bytes"]  # as written by sktriplet 0.1.0
    members["config.json"] = json.dumps(config).encode()
    members["sha256.json"] = json.dumps({"config.json": _sha(members["config.json"])}).encode()
    bomb = _write_bomb(saved, member="weights.pt", size=256 * 2**20, members=members)
    with pytest.raises(ModelFileError, match="weights.pt declares 268,435,456 bytes"):
        load(bomb)


def test_files_without_a_declared_weights_size_still_load(saved, fitted, data):
    members = _members(saved)
    config = json.loads(members["config.json"])
    del config["weights_bytes"]  # as written by sktriplet 0.1.0
    config_bytes = json.dumps(config).encode()
    checksums = {"config.json": _sha(config_bytes), "weights.pt": _sha(members["weights.pt"])}
    _rewrite(saved, **{"config.json": config_bytes, "sha256.json": json.dumps(checksums).encode()})
    np.testing.assert_array_equal(load(saved).transform(data[0]), fitted.transform(data[0]))


@pytest.mark.parametrize("declared", ["big", -1, 1.5, True])
def test_a_malformed_declared_weights_size_is_refused(saved, declared):
    members = _members(saved)
    config = json.loads(members["config.json"])
    config["weights_bytes"] = declared
    config_bytes = json.dumps(config).encode()
    checksums = {"config.json": _sha(config_bytes), "weights.pt": _sha(members["weights.pt"])}
    _rewrite(saved, **{"config.json": config_bytes, "sha256.json": json.dumps(checksums).encode()})
    with pytest.raises(ModelFileError, match="weights_bytes="):
        load(saved)


def test_extra_or_repeated_members_are_refused(saved):
    members = _members(saved)
    with zipfile.ZipFile(saved, "a") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        zf.writestr("config.json", members["config.json"])
    with pytest.raises(ModelFileError, match="holds 4 members"):
        load(saved)
