"""Plots of embeddings, training histories and nearest neighbours.

matplotlib is an optional dependency (``pip install "sktriplet[plot]"``); it
is imported inside each function, so ``import sktriplet.evaluation.plotting`` works
without it and the error says what to install.

- :func:`plot_embedding`: a 2-D map of embeddings (PCA, t-SNE or UMAP),
  coloured by class, with classes unseen in training drawn with a different
  marker.
- :func:`plot_history`: training curves per epoch (loss, mining statistics,
  validation retrieval scores), whichever the history holds.
- :func:`plot_neighbors`: query images beside their nearest gallery images,
  wrong matches framed in red.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sktriplet.triplets.distances import check_distance, pairwise_distances

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["HISTORY_PANELS", "plot_embedding", "plot_history", "plot_neighbors"]

#: Marker of classes seen in training and of unseen classes in plot_embedding.
SEEN_MARKER = "o"
UNSEEN_MARKER = "^"

#: Colour of the frame around a wrong match in plot_neighbors.
WRONG_COLOR = "red"

#: Panels of plot_history: title and the history keys drawn in it, in order.
HISTORY_PANELS: dict[str, tuple[str, ...]] = {
    "Loss": ("train_loss", "valid_loss"),
    "Mined triplets (fraction)": ("train_active", "train_fallback"),
    "Distances in the batch": ("train_d_ap", "train_d_an", "train_spread"),
    "Validation retrieval": ("valid_map_at_r", "valid_precision_at_1", "valid_r_precision"),
}

_METHODS = ("pca", "tsne", "umap")


def _pyplot():
    """Import matplotlib.pyplot, or say how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            'sktriplet.evaluation.plotting needs matplotlib: pip install "sktriplet[plot]"'
        ) from exc
    return plt


def _class_colors(n: int) -> list:
    """``n`` distinct colours: tab10, tab20, then evenly spaced on a colormap."""
    import matplotlib as mpl

    if n <= 10:
        return [mpl.colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [mpl.colormaps["tab20"](i) for i in range(n)]
    cmap = mpl.colormaps["turbo"]
    return [cmap(i / (n - 1)) for i in range(n)]


def _reduce(Z: np.ndarray, method: str | None, random_state: int | None) -> np.ndarray:
    """Project ``Z`` to two dimensions."""
    if method is None:
        if Z.shape[1] != 2:
            raise ValueError(
                f"method=None plots the embeddings as they are, which needs 2 columns; "
                f"they have {Z.shape[1]}. Use method='pca', 'tsne' or 'umap'."
            )
        return Z
    if method not in _METHODS:
        raise ValueError(f"method must be one of {list(_METHODS)} or None; got {method!r}.")
    if Z.shape[0] < 3:
        raise ValueError(f"plot_embedding needs at least 3 samples; got {Z.shape[0]}.")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=random_state).fit_transform(Z)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (Z.shape[0] - 1) / 3)
        return TSNE(
            n_components=2, perplexity=perplexity, init="pca", random_state=random_state
        ).fit_transform(Z)
    try:
        import umap
    except ImportError as exc:
        raise ImportError(
            "method='umap' needs umap-learn: pip install umap-learn (or use "
            "method='pca' or 'tsne')."
        ) from exc
    return umap.UMAP(n_components=2, random_state=random_state).fit_transform(Z)


def plot_embedding(
    X,
    y,
    *,
    estimator=None,
    method: str | None = "pca",
    unseen: Iterable | None = None,
    ax: Axes | None = None,
    random_state: int | None = 0,
    title: str | None = None,
    **scatter_kwargs: Any,
) -> Axes:
    """Draw a 2-D map of embeddings, coloured by class.

    Each class is one scatter plot in its own colour (with a legend entry).
    Classes seen in training are drawn as circles, unseen classes as
    triangles, so an open-set map shows whether new classes form clusters of
    their own.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_components) or samples
        Embeddings; or, when ``estimator`` is given, samples to embed with it
        (anything its ``transform`` accepts, e.g. images).
    y : array-like of shape (n_samples,)
        Class labels.
    estimator : fitted transformer, default=None
        Embeds ``X`` first. A :class:`~sktriplet.TripletEmbedder` (or any
        estimator with ``classes_``) also tells which classes were seen in
        training when ``unseen`` is ``None``.
    method : {"pca", "tsne", "umap"} or None, default="pca"
        Projection to two dimensions: scikit-learn's PCA or t-SNE, or UMAP
        (needs the optional ``umap-learn``). ``None`` plots 2-D embeddings
        as they are.
    unseen : iterable of labels, default=None
        Classes to draw as unseen. ``None`` takes the labels of ``y`` absent
        from ``estimator.classes_`` when an estimator is given, otherwise
        none.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when ``None``.
    random_state : int or None, default=0
        Seed of the projection (PCA's solver, t-SNE, UMAP).
    title : str, default=None
        Axes title; ``None`` names the method.
    **scatter_kwargs : dict
        Passed on to :meth:`matplotlib.axes.Axes.scatter` (e.g. ``s``,
        ``alpha``).

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on: one ``PathCollection`` per class, in the order of
        the sorted class labels.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sktriplet.evaluation.plotting import plot_embedding
    >>> Z = np.random.default_rng(0).normal(size=(30, 8))
    >>> y = np.repeat([0, 1, 2], 10)
    >>> ax = plot_embedding(Z, y, unseen=[2])
    >>> len(ax.collections), ax.get_title()
    (3, 'Embedding (PCA)')
    """
    plt = _pyplot()
    Z = estimator.transform(X) if estimator is not None else X
    Z = np.asarray(Z, dtype=np.float64)
    if Z.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n_samples, n_components); got {Z.ndim}-D.")
    y = np.asarray(y)
    if y.shape != (Z.shape[0],):
        raise ValueError(f"y must have one label per sample ({Z.shape[0]}); got shape {y.shape}.")
    classes = np.unique(y)
    if unseen is None:
        known = getattr(estimator, "classes_", None)
        unseen_set = set() if known is None else set(classes[~np.isin(classes, known)].tolist())
    else:
        unseen_set = set(np.asarray(list(unseen)).tolist())
    P = _reduce(Z, method, random_state)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5), layout="constrained")
    scatter_kwargs.setdefault("s", 12)
    for label, color in zip(classes, _class_colors(len(classes)), strict=True):
        mask = y == label
        is_unseen = label.item() in unseen_set
        ax.scatter(
            P[mask, 0],
            P[mask, 1],
            color=color,
            marker=UNSEEN_MARKER if is_unseen else SEEN_MARKER,
            label=f"{label} (unseen)" if is_unseen else str(label),
            **scatter_kwargs,
        )
    name = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP", None: "embedding"}[method]
    ax.set_xlabel(f"{name} 1")
    ax.set_ylabel(f"{name} 2")
    ax.set_title(title if title is not None else f"Embedding ({name})")
    ax.legend(
        title="class",
        fontsize="small",
        markerscale=1.5,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
    )
    return ax


def _history_records(history) -> list[dict]:
    """The per-epoch dicts of a skorch History, net, estimator or list of dicts."""
    if hasattr(history, "net_"):
        history = history.net_.history
    elif hasattr(history, "history") and not isinstance(history, list | tuple):
        history = history.history
    records = list(history)
    if not all(isinstance(r, dict) for r in records):
        raise TypeError(
            "history must be a skorch History, a skorch net, a fitted TripletEmbedder "
            "or a list of per-epoch dicts."
        )
    return records


def plot_history(
    history,
    keys: Sequence[str] | None = None,
    *,
    fig: Figure | None = None,
) -> Figure:
    """Draw training curves per epoch, one panel per kind of quantity.

    The panels are those of :data:`HISTORY_PANELS` that have at least one key
    in the history: the loss; the fraction of mined triplets with a non-zero
    loss (``train_active``) and of semi-hard fallbacks (``train_fallback``);
    mean anchor-positive / anchor-negative distances and the batch spread;
    validation retrieval scores (``valid_map_at_r`` ...). Keys outside those
    panels, when asked for, share a last panel.

    Parameters
    ----------
    history : skorch History, skorch net, fitted TripletEmbedder or list of dict
        The training history (``estimator.net_.history``).
    keys : sequence of str, default=None
        History keys to draw. ``None`` draws every key of
        :data:`HISTORY_PANELS` that the history holds.
    fig : matplotlib Figure, default=None
        Figure to draw into (it is cleared); a new one when ``None``.

    Returns
    -------
    matplotlib.figure.Figure
        One Axes per panel, one line per key (labelled with the key), x the
        epoch number.

    Raises
    ------
    ValueError
        If the history is empty, or a key of ``keys`` is in no epoch.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from sktriplet.evaluation.plotting import plot_history
    >>> history = [{"epoch": 1, "train_loss": 0.3, "train_active": 0.6},
    ...            {"epoch": 2, "train_loss": 0.2, "train_active": 0.4}]
    >>> fig = plot_history(history)
    >>> [ax.get_title() for ax in fig.axes]
    ['Loss', 'Mined triplets (fraction)']
    """
    plt = _pyplot()
    records = _history_records(history)
    if not records:
        raise ValueError("the history is empty: fit the estimator first (max_epochs >= 1).")
    present = {k for r in records for k, v in r.items() if isinstance(v, int | float)}
    if keys is None:
        wanted = [k for panel in HISTORY_PANELS.values() for k in panel if k in present]
    else:
        wanted = list(keys)
        missing = [k for k in wanted if k not in present]
        if missing:
            raise ValueError(f"key(s) {missing} are not in the history; it has {sorted(present)}.")
    if not wanted:
        raise ValueError(
            f"the history has none of the keys plot_history knows; it has "
            f"{sorted(present)}. Pass keys=[...] to choose."
        )
    panels: dict[str, list[str]] = {}
    for key in wanted:
        title = next((t for t, ks in HISTORY_PANELS.items() if key in ks), "Other")
        panels.setdefault(title, []).append(key)
    if fig is None:
        fig = plt.figure(figsize=(4.2 * len(panels), 3.4), layout="constrained")
    else:
        fig.clear()
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    epochs = np.array([r.get("epoch", i + 1) for i, r in enumerate(records)])
    for ax, (title, panel_keys) in zip(axes, panels.items(), strict=True):
        for key in panel_keys:
            values = np.array(
                [float(r[key]) if isinstance(r.get(key), int | float) else np.nan for r in records]
            )
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    return fig


def _as_image_stack(images, name: str) -> np.ndarray:
    """Images as (N, H, W) or (N, H, W, 3/4) for imshow."""
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else images
    arr = np.asarray(arr)
    if arr.ndim == 4 and arr.shape[1] in (1, 3, 4) and arr.shape[-1] not in (3, 4):
        arr = np.moveaxis(arr, 1, -1)  # (N, C, H, W) -> (N, H, W, C)
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (3, 4)):
        raise ValueError(
            f"{name} must be images (N, H, W), (N, C, H, W) or (N, H, W, C) with C in "
            f"1, 3, 4; got shape {arr.shape}."
        )
    return arr


def _frame(ax, color, width: float) -> None:
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_edgecolor(color)
        spine.set_linewidth(width)


def plot_neighbors(
    query_images,
    gallery_images,
    *,
    query_labels=None,
    gallery_labels=None,
    estimator=None,
    query_embeddings=None,
    gallery_embeddings=None,
    n_neighbors: int = 5,
    distance: str | None = None,
    fig: Figure | None = None,
) -> Figure:
    """Show each query image beside its nearest gallery images.

    One row per query: the query in the first column, then its
    ``n_neighbors`` nearest gallery images, nearest first, each titled with
    its label and distance. With labels, a neighbour whose label differs from
    the query's gets a thick red frame (a wrong match); correct matches get a
    thin grey one.

    Parameters
    ----------
    query_images : array-like of shape (n_queries, H, W) or (n_queries, C, H, W)
        Query images; ``(n_queries, H, W, C)`` is accepted too.
    gallery_images : array-like of images
        Gallery images, in the same layout.
    query_labels : array-like of shape (n_queries,), default=None
        Labels of the queries.
    gallery_labels : array-like of shape (n_gallery,), default=None
        Labels of the gallery; wrong matches are marked only when both label
        arrays are given.
    estimator : fitted transformer, default=None
        Embeds both image sets (e.g. a :class:`~sktriplet.TripletEmbedder`
        fitted on such images). Its ``distance`` is the default distance.
    query_embeddings, gallery_embeddings : array-like of shape (n, n_components), default=None
        Precomputed embeddings, in place of ``estimator``. With neither, the
        neighbours are found on raw pixels (a baseline).
    n_neighbors : int, default=5
        Gallery images shown per query.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default=None
        Distance used to rank the gallery; ``None`` takes the estimator's, or
        ``"sqeuclidean"``.
    fig : matplotlib Figure, default=None
        Figure to draw into (it is cleared); a new one when ``None``.

    Returns
    -------
    matplotlib.figure.Figure
        ``n_queries x (1 + n_neighbors)`` Axes, row by row, each holding one
        image; ``fig.neighbor_indices`` holds the gallery indices shown, as an
        array of shape ``(n_queries, n_neighbors)``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from sktriplet.evaluation.plotting import plot_neighbors
    >>> gallery = np.stack([np.full((4, 4), v) for v in (0.0, 0.1, 0.9, 1.0)])
    >>> fig = plot_neighbors(gallery[[0]], gallery, query_labels=[0],
    ...                      gallery_labels=[0, 1, 1, 1], n_neighbors=2)
    >>> fig.neighbor_indices.tolist()
    [[0, 1]]
    """
    plt = _pyplot()
    queries = _as_image_stack(query_images, "query_images")
    gallery = _as_image_stack(gallery_images, "gallery_images")
    if not 1 <= n_neighbors <= len(gallery):
        raise ValueError(
            f"n_neighbors must be in [1, {len(gallery)}] (the gallery size); got {n_neighbors}."
        )
    if (query_embeddings is None) != (gallery_embeddings is None):
        raise ValueError("query_embeddings and gallery_embeddings must be given together.")
    if estimator is not None and query_embeddings is not None:
        raise ValueError("pass either estimator or query/gallery embeddings, not both.")
    if estimator is not None:
        Q, G = estimator.transform(query_images), estimator.transform(gallery_images)
        distance = distance or getattr(estimator, "distance", None)
    elif query_embeddings is not None:
        Q, G = query_embeddings, gallery_embeddings
    else:
        Q, G = queries.reshape(len(queries), -1), gallery.reshape(len(gallery), -1)
    distance = check_distance(distance or "sqeuclidean")
    Q = torch.as_tensor(np.asarray(Q, dtype=np.float64))
    G = torch.as_tensor(np.asarray(G, dtype=np.float64))
    if Q.shape[0] != len(queries) or G.shape[0] != len(gallery):
        raise ValueError("there must be one embedding per query image and per gallery image.")
    if distance == "cosine":
        D = pairwise_distances(Q, G, distance=distance).numpy()
    else:
        # Explicit differences, not the matrix-product expansion: exact ties
        # (equal images) stay exact on every CPU, so they rank by index.
        D = torch.cdist(Q, G, compute_mode="donot_use_mm_for_euclid_dist").numpy()
        D = D**2 if distance == "sqeuclidean" else D
    order = np.argsort(D, axis=1, kind="stable")[:, :n_neighbors]
    labelled = query_labels is not None and gallery_labels is not None
    if labelled:
        query_labels = np.asarray(query_labels)
        gallery_labels = np.asarray(gallery_labels)
        if len(query_labels) != len(queries) or len(gallery_labels) != len(gallery):
            raise ValueError("there must be one label per query image and per gallery image.")

    n_rows, n_cols = len(queries), 1 + n_neighbors
    if fig is None:
        fig = plt.figure(figsize=(1.3 * n_cols, 1.45 * n_rows), layout="constrained")
    else:
        fig.clear()
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    cmap = "gray_r" if queries.ndim == 3 else None
    for i in range(n_rows):
        ax = axes[i, 0]
        ax.imshow(queries[i], cmap=cmap)
        ax.set_title(f"query: {query_labels[i]}" if labelled else "query", fontsize="small")
        _frame(ax, "black", 1.5)
        for j, g in enumerate(order[i], start=1):
            ax = axes[i, j]
            ax.imshow(gallery[g], cmap=cmap)
            label = f"{gallery_labels[g]}, " if labelled else ""
            ax.set_title(f"{label}{D[i, g]:.3g}", fontsize="small")
            if labelled and gallery_labels[g] != query_labels[i]:
                _frame(ax, WRONG_COLOR, 3.0)
            else:
                _frame(ax, "0.7", 0.8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.neighbor_indices = order
    return fig
