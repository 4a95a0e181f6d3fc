import builtins
import re

import numpy as np
import pytest

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from sktriplet import TripletEmbedder  # noqa: E402
from sktriplet.evaluation.plotting import (  # noqa: E402
    SEEN_MARKER,
    UNSEEN_MARKER,
    plot_embedding,
    plot_history,
    plot_neighbors,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _marker_path(marker):
    from matplotlib.markers import MarkerStyle

    style = MarkerStyle(marker)
    return style.get_path().transformed(style.get_transform())


def _same_path(a, b):
    return a.vertices.shape == b.vertices.shape and np.allclose(a.vertices, b.vertices)


# ---------------------------------------------------------------- embedding
def test_plot_embedding_one_collection_per_class_with_counts_and_colors():
    rng = np.random.default_rng(0)
    y = np.array([2] * 5 + [0] * 7 + [1] * 4)
    Z = rng.normal(size=(len(y), 6))
    ax = plot_embedding(Z, y)
    assert len(ax.collections) == 3
    counts = [len(c.get_offsets()) for c in ax.collections]
    assert counts == [7, 4, 5]  # sorted classes 0, 1, 2
    colors = [tuple(c.get_facecolor()[0]) for c in ax.collections]
    assert len(set(colors)) == 3
    assert np.allclose(colors[0], mcolors.to_rgba("tab:blue"))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["0", "1", "2"]
    assert ax.get_title() == "Embedding (PCA)"
    assert ax.get_xlabel() == "PCA 1"


def test_plot_embedding_pca_positions_match_sklearn():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    Z = rng.normal(size=(20, 5))
    y = np.zeros(20, dtype=int)
    y[10:] = 1
    ax = plot_embedding(Z, y)
    expected = PCA(n_components=2, random_state=0).fit_transform(Z)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), expected[:10])
    np.testing.assert_allclose(ax.collections[1].get_offsets(), expected[10:])


def test_plot_embedding_method_none_plots_as_is_and_unseen_marker():
    Z = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 3.0]])
    y = np.array(["a", "a", "b", "b"])
    ax = plot_embedding(Z, y, method=None, unseen=["b"])
    seen, unseen = ax.collections
    np.testing.assert_array_equal(unseen.get_offsets(), Z[2:])
    assert _same_path(seen.get_paths()[0], _marker_path(SEEN_MARKER))
    assert _same_path(unseen.get_paths()[0], _marker_path(UNSEEN_MARKER))
    assert not _same_path(seen.get_paths()[0], unseen.get_paths()[0])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b (unseen)"]


def test_plot_embedding_from_estimator_infers_unseen_classes(small_digits):
    X, y = small_digits
    seen = y < 7
    est = TripletEmbedder(max_epochs=1, n_components=8, batch_size=64, random_state=0)
    est.fit(X[seen], y[seen])
    fig, ax = plt.subplots()
    out = plot_embedding(X, y, estimator=est, ax=ax, title="digits")
    assert out is ax
    assert ax.get_title() == "digits"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == [str(c) for c in range(7)] + [f"{c} (unseen)" for c in (7, 8, 9)]
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(X)


def test_plot_embedding_tsne_and_errors():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(15, 4))
    y = np.repeat([0, 1, 2], 5)
    ax = plot_embedding(Z, y, method="tsne")
    assert ax.get_xlabel() == "t-SNE 1"
    assert sum(len(c.get_offsets()) for c in ax.collections) == 15
    with pytest.raises(ValueError, match="method must be one of"):
        plot_embedding(Z, y, method="lda")
    with pytest.raises(ValueError, match="needs 2 columns"):
        plot_embedding(Z, y, method=None)
    with pytest.raises(ValueError, match="one label per sample"):
        plot_embedding(Z, y[:-1])


def test_plot_embedding_umap_missing_is_clear(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "umap":
            raise ImportError("no umap")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    Z = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ImportError, match="umap-learn"):
        plot_embedding(Z, np.repeat([0, 1], 5), method="umap")


def test_missing_matplotlib_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match=re.escape('pip install "sktriplet[plot]"')):
        plot_history([{"epoch": 1, "train_loss": 1.0}])


# ------------------------------------------------------------------ history
HISTORY = [
    {
        "epoch": e,
        "train_loss": 0.2 / e,
        "train_active": 0.8 / e,
        "train_fallback": 0.1,
        "train_d_ap": 0.5,
        "train_d_an": 1.0 + e,
        "valid_map_at_r": 0.3 + 0.1 * e,
        "valid_precision_at_1": 0.5 + 0.1 * e,
        "dur": 0.1,
        "batches": [],
    }
    for e in (1, 2, 3)
]


def test_plot_history_panels_and_lines_follow_present_keys():
    fig = plot_history(HISTORY)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == [
        "Loss",
        "Mined triplets (fraction)",
        "Distances in the batch",
        "Validation retrieval",
    ]
    labels = [[line.get_label() for line in ax.get_lines()] for ax in fig.axes]
    assert labels == [
        ["train_loss"],
        ["train_active", "train_fallback"],
        ["train_d_ap", "train_d_an"],
        ["valid_map_at_r", "valid_precision_at_1"],
    ]
    loss = fig.axes[0].get_lines()[0]
    np.testing.assert_array_equal(loss.get_xdata(), [1, 2, 3])
    np.testing.assert_allclose(loss.get_ydata(), [0.2, 0.1, 0.2 / 3])


def test_plot_history_keys_and_missing_values():
    history = [dict(r) for r in HISTORY]
    del history[0]["valid_map_at_r"]
    fig = plot_history(history, keys=["valid_map_at_r", "dur"])
    assert [ax.get_title() for ax in fig.axes] == ["Validation retrieval", "Other"]
    y = fig.axes[0].get_lines()[0].get_ydata()
    assert np.isnan(y[0]) and np.allclose(y[1:], [0.5, 0.6])
    with pytest.raises(ValueError, match=re.escape("key(s) ['nope'] are not in the history")):
        plot_history(HISTORY, keys=["nope"])
    with pytest.raises(ValueError, match="empty"):
        plot_history([])


def test_plot_history_of_fitted_estimator(small_digits):
    X, y = small_digits
    est = TripletEmbedder(max_epochs=2, n_components=8, batch_size=64, random_state=0)
    est.fit(X, y)
    fig = plot_history(est)
    loss = fig.axes[0].get_lines()[0]
    np.testing.assert_allclose(loss.get_ydata(), est.net_.history[:, "train_loss"])
    assert len(loss.get_xdata()) == 2


# ---------------------------------------------------------------- neighbors
def _stripes():
    """Gallery of 6 constant images at known grey levels and labels."""
    levels = np.array([0.0, 0.1, 0.2, 0.8, 0.9, 1.0])
    gallery = np.stack([np.full((5, 5), v) for v in levels])
    labels = np.array([0, 0, 1, 1, 1, 1])
    queries = np.stack([np.full((5, 5), 0.05), np.full((5, 5), 0.95)])
    return queries, gallery, np.array([0, 1]), labels


def _is_red(ax):
    return all(np.allclose(s.get_edgecolor(), mcolors.to_rgba("red")) for s in ax.spines.values())


def test_plot_neighbors_grid_order_and_red_frames_for_wrong_matches():
    queries, gallery, q_labels, g_labels = _stripes()
    fig = plot_neighbors(
        queries, gallery, query_labels=q_labels, gallery_labels=g_labels, n_neighbors=3
    )
    assert len(fig.axes) == 2 * 4
    assert all(len(ax.get_images()) == 1 for ax in fig.axes)
    # pixel distance to 0.05: levels 0.0 and 0.1 tie, stable order keeps index order
    np.testing.assert_array_equal(fig.neighbor_indices, [[0, 1, 2], [4, 5, 3]])
    row0, row1 = fig.axes[:4], fig.axes[4:]
    assert [_is_red(ax) for ax in row0] == [False, False, False, True]
    assert [_is_red(ax) for ax in row1] == [False, False, False, False]
    assert row0[0].get_title() == "query: 0"
    assert row0[3].get_title().startswith("1, ")
    shown = row0[1].get_images()[0].get_array()
    np.testing.assert_array_equal(shown, gallery[0])


def test_plot_neighbors_with_embeddings_and_channels_first_images():
    rng = np.random.default_rng(0)
    gallery = rng.random((4, 3, 6, 6))
    queries = gallery[:2]
    Qe = np.array([[0.0, 0.0], [10.0, 10.0]])
    Ge = np.array([[10.0, 10.1], [0.0, 0.2], [0.0, 0.1], [10.0, 10.2]])
    fig = plot_neighbors(
        queries,
        gallery,
        query_embeddings=Qe,
        gallery_embeddings=Ge,
        query_labels=["a", "b"],
        gallery_labels=["b", "a", "b", "b"],
        n_neighbors=2,
        distance="euclidean",
    )
    np.testing.assert_array_equal(fig.neighbor_indices, [[2, 1], [0, 3]])
    red = [_is_red(ax) for ax in fig.axes]
    assert red == [False, True, False, False, False, False]
    assert fig.axes[1].get_images()[0].get_array().shape == (6, 6, 3)


def test_plot_neighbors_without_labels_and_errors():
    queries, gallery, _, _ = _stripes()
    fig = plot_neighbors(queries, gallery, n_neighbors=2)
    assert not any(_is_red(ax) for ax in fig.axes)
    assert fig.axes[0].get_title() == "query"
    with pytest.raises(ValueError, match="n_neighbors must be in"):
        plot_neighbors(queries, gallery, n_neighbors=7)
    with pytest.raises(ValueError, match="must be images"):
        plot_neighbors(queries[:, 0], gallery)
    with pytest.raises(ValueError, match="given together"):
        plot_neighbors(queries, gallery, query_embeddings=np.zeros((2, 2)))


def test_plot_neighbors_uses_estimator_embedding(small_digits):
    X, y = small_digits
    images = X.reshape(-1, 8, 8)
    est = TripletEmbedder(max_epochs=1, n_components=8, batch_size=64, random_state=0)
    est.fit(images[:300], y[:300])
    fig = plot_neighbors(
        images[300:303],
        images[:300],
        query_labels=y[300:303],
        gallery_labels=y[:300],
        estimator=est,
        n_neighbors=4,
    )
    Q, G = est.transform(images[300:303]), est.transform(images[:300])
    d = ((Q[:, None, :] - G[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(fig.neighbor_indices, np.argsort(d, axis=1, kind="stable")[:, :4])
    wrong = y[:300][fig.neighbor_indices] != y[300:303, None]
    red = np.array([_is_red(ax) for ax in fig.axes]).reshape(3, 5)[:, 1:]
    np.testing.assert_array_equal(red, wrong)
