"""freeze="auto": top blocks trained on cached views, the choice, and what a fitted model keeps."""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import sktriplet.training.top_blocks as top_blocks
from sktriplet import TripletEmbedder, load, save
from sktriplet.inputs.cached_views import CachedViews
from sktriplet.inputs.loading import ArrayDataset
from sktriplet.inputs.spec import InputSpec
from sktriplet.inputs.training_data import TrainingData
from sktriplet.networks import BackboneEmbedder, Standardize
from sktriplet.networks.split import split_at_block
from sktriplet.training.feature_cache import cache_views
from sktriplet.training.routine import fresh_net
from sktriplet.training.sampling import PKSampler
from sktriplet.training.top_blocks import stage_params, train_blocks
from sktriplet.vision.views import draw_views

# The random tiny backbones map images close together; that is not what is tested.
pytestmark = pytest.mark.filterwarnings("ignore::sktriplet.training.callbacks.CollapseWarning")


class Tiny(nn.Module):
    """A backbone that declares its blocks: stem, four stages (BatchNorm, dropout), an end."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
            for _ in range(3)
        )
        self.stages.append(nn.Sequential(nn.Conv2d(6, 6, 3, padding=1), nn.Dropout(0.3)))
        self.last = nn.Conv2d(6, 10, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.running_mean.copy_(torch.randn(6, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(6, generator=g) + 0.5)

    def blocks(self):
        return list(self.stages)

    def forward_stem(self, x):
        return torch.relu(self.stem(x))

    def forward_block(self, index, x):
        return x + self.stages[index](x)

    def forward_end(self, x):
        return self.last(x)

    def forward(self, x):
        x = self.forward_stem(x)
        for stage in self.stages:
            x = x + stage(x)
        return self.last(x)


RNG = np.random.default_rng(0)
Y = np.repeat(np.arange(8), 6)
# A class is a brightness and a left-right gradient direction: mirroring matters.
_ramp = np.linspace(-40, 40, 12)[None, :] * np.where(Y % 2, 1, -1)[:, None]
X = np.clip(
    RNG.normal(60 + 15 * Y[:, None, None, None], 25, size=(48, 3, 12, 12))
    + _ramp[:, None, None, :],
    0,
    255,
).astype(np.uint8)
PARAMS = dict(
    module=BackboneEmbedder,
    module__backbone=Tiny,
    module__input_mean=(0.5, 0.5, 0.5),
    module__input_std=(0.25, 0.25, 0.25),
    max_epochs=3,
    batch_size=24,
    samples_per_class=4,
    device="cpu",
    random_state=0,
)


def network(freeze="auto"):
    embedder = BackboneEmbedder(
        Tiny(), freeze=freeze, image_size=12, input_mean=(0.5,) * 3, input_std=(0.25,) * 3
    )
    return nn.Sequential(Standardize(127.5, 63.75), embedder)


class ImageViews(Dataset):
    """The reference: images read whole, each epoch the drawn view (view 1 mirrored)."""

    fetches_batches = True

    def __init__(self, X, y, seed, fixed=None):
        self.X, self.labels, self.seed, self.fixed = X, y, seed, fixed
        self.set_epoch(0)

    def set_epoch(self, epoch):
        self.views = draw_views(len(self.X), 2, self.seed, epoch)
        if self.fixed is not None:
            self.views[:] = self.fixed

    def __len__(self):
        return len(self.X)

    def __getitem__(self, index):
        x = torch.from_numpy(self.X[index])
        flip = torch.from_numpy(self.views[index] == 1)[:, None, None, None]
        return torch.where(flip, x.flip(-1), x), torch.from_numpy(self.labels[index])


def _reference(module, params, data, fixed=None, epochs=4):
    """Train the whole network (bottom frozen) with the block stage's net and schedule."""
    # the schedule spans the PK batches the net draws: 48 samples in batches of 24
    batches = len(PKSampler(Y, batch_size=24, samples_per_class=4))
    stage = stage_params(params, 2e-3, epochs, epochs * batches)
    net = fresh_net(module, stage, data, "cpu", 10)
    torch.manual_seed(5)
    return net.fit(ImageViews(X, Y, data.seed, fixed))


def _params():
    est = TripletEmbedder(**PARAMS)
    return est.get_params(deep=False)


def test_blocks_trained_on_cached_views_equal_training_through_the_frozen_layers():
    params = _params()
    data = TrainingData(InputSpec("images", (3, 12, 12), dtype="uint8"), X, Y, seed=7)
    cached, through, plain = network(), network(), network()
    through.load_state_dict(cached.state_dict())
    plain.load_state_dict(cached.state_dict())
    for module in (cached, through, plain):
        module[1].set_freeze(2)
    bottom, top = split_at_block(cached, 2)
    views = cache_views(bottom, ArrayDataset(X, Y), batch_size=10)
    assert views.shape == (48, 2, 6 * 12 * 12)
    torch.manual_seed(5)
    train_blocks(top, params, data, data.with_samples(views), "cpu", 10, 2e-3, 4, 4)
    _reference(through, params, data)
    _reference(plain, params, data, fixed=0)  # the same, always on view 0

    bn = cached[1].backbone.stages[2][1]  # a trained block's BatchNorm: statistics frozen
    torch.testing.assert_close(bn.running_mean, network()[1].backbone.stages[2][1].running_mean)
    trained = [n for n, p in cached.named_parameters() if p.requires_grad]
    assert any("stages.3" in n for n in trained) and not any("stages.1" in n for n in trained)
    start = dict(network().named_parameters())
    moved = {n: p for n, p in cached.named_parameters() if not torch.equal(p, start[n])}
    assert set(moved) == set(trained)  # the top blocks and the head trained, nothing else
    for (name, a), b in zip(cached.named_parameters(), through.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4, msg=name)
    pairs = zip(cached.parameters(), plain.parameters(), strict=True)
    diff = [(a - b).abs().max().item() for a, b in pairs]
    assert max(diff) > 1e-3  # the mirrored views changed training: the test can tell
    with torch.no_grad():
        x = torch.from_numpy(X)
        torch.testing.assert_close(cached.eval()(x), through.eval()(x), atol=2e-5, rtol=1e-4)


def test_cached_views_serve_one_drawn_view_per_sample_and_epoch():
    cache = np.stack([np.zeros((6, 3)), np.ones((6, 3))], axis=1).astype(np.float32)
    data = CachedViews(cache, rows=np.array([5, 1, 3]), labels=np.array([0, 1, 1]), view=None)
    for epoch in range(3):
        data.set_epoch(epoch)
        expected = draw_views(6, 2, 0, epoch)[[5, 1, 3]]
        np.testing.assert_array_equal(data[[0, 1, 2]][0][:, 0].numpy(), expected)
    fixed = CachedViews(cache, rows=np.array([2]), view=1)
    assert fixed[[0]][0].tolist() == [[1.0, 1.0, 1.0]] and fixed.labels.tolist() == [0]
    with pytest.raises(ValueError, match="n_samples, n_views"):
        CachedViews(cache[:, 0])


def test_a_spilled_cache_trains_as_the_in_memory_one(tmp_path):
    module = network()
    module[1].set_freeze(2)
    bottom, _ = split_at_block(module, 2)
    in_memory = cache_views(bottom, ArrayDataset(X, Y))
    mapped = cache_views(bottom, ArrayDataset(X, Y), max_bytes=1000, directory=tmp_path)
    assert isinstance(mapped, np.memmap) and not isinstance(in_memory, np.memmap)
    np.testing.assert_array_equal(np.asarray(mapped), in_memory)
    data = TrainingData(InputSpec("images", (3, 12, 12)), X, Y, seed=3).with_samples(mapped)
    batch = data.train_dataset()[[0, 5, 7]][0]
    views = draw_views(48, 2, 3, 0)[[0, 5, 7]]
    np.testing.assert_array_equal(batch.numpy(), in_memory[[0, 5, 7], views])


# ------------------------------------------------------------------ the estimator
@pytest.fixture(scope="module")
def chose_blocks():
    """freeze="auto" forced to keep the blocks (any held-out change counts)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(top_blocks, "AUTO_MIN_GAIN", -1.0)
        return TripletEmbedder(**PARAMS).fit(X, Y)


def test_auto_trains_the_top_blocks_and_records_its_choice(chose_blocks):
    est = chose_blocks
    report = est.freeze_report_
    assert est.freeze_ == report["trained_blocks"] == report["depth"] == 1  # 1 of 4 blocks
    # 8 classes: a quarter would be 2, but at least 5 and at most half are held out
    assert report["held_out_classes"] == 4 and report["views"] == 2
    assert len(report["block_scores"]) == report["max_epochs"] == top_blocks.AUTO_EPOCHS
    best = int(np.argmax(report["block_scores"])) + 1
    assert report["epochs"] == best and report["refit"] is True
    assert report["cache_bytes_per_sample"] == 2 * 6 * 12 * 12 * 4
    body = est.net_.module_[1]
    fresh = network()[1]
    moved = [
        n
        for n, v in body.backbone.state_dict().items()
        if v.is_floating_point() and not torch.equal(v, fresh.backbone.state_dict()[n])
    ]
    assert moved and all(n.startswith(("stages.3", "last")) for n in moved)
    assert not any(p.requires_grad for p in body.backbone.parameters())  # frozen again
    assert body.flip_average  # "auto" with freeze="auto"


def test_auto_keeps_the_head_alone_unless_the_blocks_gain(monkeypatch):
    monkeypatch.setattr(top_blocks, "AUTO_MIN_GAIN", 1.0)  # no gain is enough
    auto = TripletEmbedder(**PARAMS).fit(X, Y)
    assert auto.freeze_ is True and auto.freeze_report_["trained_blocks"] == 0
    assert len(auto.freeze_report_["block_scores"]) == top_blocks.AUTO_EPOCHS
    body = auto.net_.module_[1]
    for name, value in body.backbone.state_dict().items():
        torch.testing.assert_close(value, network()[1].backbone.state_dict()[name])
    # ... and the head alone was then trained on all classes as freeze=True trains it
    head = TripletEmbedder(**PARAMS, module__freeze=True, module__flip_average=True).fit(X, Y)
    assert head.freeze_ is True and not hasattr(head, "freeze_report_")
    np.testing.assert_allclose(auto.transform(X), head.transform(X), atol=1e-4)


def test_without_blocks_or_with_augmentation_auto_trains_the_head_with_a_note(capsys):
    class Opaque(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 6, 1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    params = {**PARAMS, "module__backbone": Opaque(), "verbose": 1}
    est = TripletEmbedder(**params).fit(X, Y)
    assert est.freeze_ is True and "no known blocks" in est.freeze_report_["note"]
    assert "freeze='auto': head only: the backbone Opaque has no known blocks" in (
        capsys.readouterr().out
    )
    est = TripletEmbedder(**PARAMS, augment=True).fit(X, Y)
    assert est.freeze_ is True and "augment" in est.freeze_report_["note"]
    few = TripletEmbedder(**PARAMS).fit(X[Y < 3], Y[Y < 3])
    assert few.freeze_ is True and "too few classes" in few.freeze_report_["note"]


def test_other_modules_get_no_freeze_attributes():
    est = TripletEmbedder(max_epochs=1, n_components=4, random_state=0)
    est.fit(X.reshape(48, -1)[:, :20].astype(np.float32), Y)
    assert not hasattr(est, "freeze_") and not hasattr(est, "freeze_report_")


def test_a_trained_blocks_model_saves_loads_offline_and_exports_identically(chose_blocks, tmp_path):
    from sktriplet import export_onnx, export_program, export_torchscript

    est = chose_blocks
    path = tmp_path / "m.sktriplet"
    save(est, path)
    loaded = load(path)
    Z = est.transform(X)
    np.testing.assert_array_equal(loaded.transform(X), Z)
    assert loaded.freeze_ == est.freeze_ and loaded.freeze_report_ == est.freeze_report_
    body = loaded.net_.module_[1]
    assert body.flip_average and not any(p.requires_grad for p in body.backbone.parameters())
    # The exported graphs run in float32: compare them with float32 embeddings.
    Z = loaded.set_params(precision="32").transform(X)
    x = torch.from_numpy(X)
    ts = torch.jit.load(str(export_torchscript(loaded, tmp_path / "m.pt", dtype="uint8")))
    np.testing.assert_allclose(ts(x).numpy(), Z, atol=1e-5)
    program = torch.export.load(str(export_program(loaded, tmp_path / "m.pt2", dtype="uint8")))
    np.testing.assert_allclose(program.module()(x).numpy(), Z, atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(export_onnx(loaded, tmp_path / "m.onnx", dtype="uint8")))
    out = session.run(None, {session.get_inputs()[0].name: X})[0]
    np.testing.assert_allclose(out, Z, atol=1e-4)


def test_warm_start_continues_the_head_and_keeps_the_trained_blocks(chose_blocks, tmp_path):
    est = copy.deepcopy(chose_blocks)
    save(est, tmp_path / "m.sktriplet")
    blocks = copy.deepcopy(est.net_.module_[1].backbone.state_dict())
    head = est.net_.module_[1].head[0].weight.detach().clone()
    est.set_params(warm_start=True, max_epochs=2).fit(X, Y)
    body = est.net_.module_[1]
    for name, value in body.backbone.state_dict().items():
        torch.testing.assert_close(value, blocks[name], msg=name)  # the blocks stay
    assert not torch.equal(body.head[0].weight, head)  # the head trained on
    assert est.freeze_ == chose_blocks.freeze_  # what the first fit chose
    loaded = load(tmp_path / "m.sktriplet").set_params(warm_start=True, max_epochs=2).fit(X, Y)
    np.testing.assert_allclose(loaded.transform(X), est.transform(X), atol=1e-5)


def test_grid_search_tunes_freeze():
    from sklearn.model_selection import GridSearchCV, GroupKFold

    search = GridSearchCV(
        TripletEmbedder(**{**PARAMS, "max_epochs": 1}),
        {"module__freeze": [True, "auto"]},
        cv=GroupKFold(n_splits=2),
    )
    search.fit(X, Y, groups=Y)
    assert set(search.cv_results_["param_module__freeze"]) == {True, "auto"}
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_estimator_.freeze_ in (True, 1)


@pytest.mark.parametrize("seed", [0, 1])
def test_auto_is_never_below_the_head_alone_on_its_own_held_out_classes(seed):
    report = TripletEmbedder(**{**PARAMS, "random_state": seed}).fit(X, Y).freeze_report_
    floor, scores = report["head_only_score"], report["block_scores"]
    assert len(scores) == report["max_epochs"] >= 1 and floor is not None
    if report["trained_blocks"]:
        kept = scores[report["epochs"] - 1]
        assert kept > floor + report["min_gain"] - 1e-4  # (scores are rounded to 4 places)
        assert kept == max(scores)
    else:
        assert report["epochs"] == 0 and max(scores) <= floor + report["min_gain"] + 1e-4


@pytest.mark.parametrize("fast", [True, False])
def test_auto_trains_the_blocks_in_bf16_only_where_bf16_training_is_fast(monkeypatch, fast):
    """precision="auto": pretrained blocks train under bf16 autocast on AMX / CUDA only."""
    from sktriplet.runtime import precision as precision_module

    monkeypatch.setattr(precision_module, "fast_bf16_training", lambda device="cpu": fast)
    monkeypatch.setattr(top_blocks, "AUTO_MIN_GAIN", -1.0)
    seen = set()
    forward_block = Tiny.forward_block

    def spy(self, index, x):
        if torch.is_grad_enabled():  # a training pass, not caching or scoring
            seen.add(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu"))
        return forward_block(self, index, x)

    monkeypatch.setattr(Tiny, "forward_block", spy)
    est = TripletEmbedder(**PARAMS).fit(X, Y)
    assert est.freeze_report_["trained_blocks"] == 1
    assert seen == ({torch.bfloat16} if fast else {False})
    assert est.precision_ == ("bf16" if fast else "32")
    assert all(p.dtype == torch.float32 for p in est.net_.module_.parameters())
    assert est.transform(X).dtype == np.float32
