"""Nearest-neighbour indexes over a gallery of embeddings.

Every index has the same small interface, used by
:class:`~sktriplet.evaluation.neighbors.OpenSetKNeighborsClassifier`:

``add(X)``
    Append the rows of ``X`` to the gallery (row ``i`` of the ``j``-th call
    gets the next free id, so ids are positions in the concatenated gallery).
``search(Q, k)``
    Return ``(distances, ids)``, both ``(n_queries, k)``, nearest first.
``len(index)``
    Number of gallery rows.

``search`` may be called from several threads at once (``add`` may not run
beside it): the exact index builds its search structure before publishing
it, and the approximate ones set their search breadth and search under a
lock of their own, so a query never runs with the breadth of another
thread's call.

Distances are in the units of the ``distance`` name used everywhere in
sktriplet (:mod:`sktriplet.triplets.distances`): ``"sqeuclidean"``, ``"euclidean"`` or
``"cosine"`` (``1 - cos``).

:class:`ExactIndex` (the default) searches exhaustively with scikit-learn's
:class:`~sklearn.neighbors.NearestNeighbors`. :class:`FaissIndex` and
:class:`HNSWIndex` are *approximate* indexes for galleries of millions of
rows, backed by the optional packages ``faiss-cpu`` and ``hnswlib``
(``pip install 'sktriplet[ann]'``), imported only when such an index is made.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from sktriplet.triplets.distances import check_distance

__all__ = [
    "ALGORITHMS",
    "ExactIndex",
    "FaissIndex",
    "HNSWIndex",
    "auto_ef_search",
    "auto_nprobe",
    "make_index",
]

#: Names accepted by :func:`make_index` (and by ``algorithm=`` parameters).
ALGORITHMS: tuple[str, ...] = ("brute", "faiss", "hnsw")


@contextlib.contextmanager
def _omp_threads(faiss: Any, n_threads: int | None) -> Iterator[None]:
    """Set faiss's OpenMP threads to ``n_threads`` for a block, then put them back.

    ``faiss.omp_set_num_threads`` sets the calling thread's OpenMP default,
    which torch shares where both load the same OpenMP runtime (as the pip
    wheels do on Linux): left set, a ``FaissIndex(n_threads=1)`` would train
    every later torch fit of the process on one thread.
    """
    if n_threads is None:
        yield
        return
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(n_threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _as_rows(X, d: int | None = None, *, keep_float64: bool = False) -> np.ndarray:
    X = np.asarray(X)
    dtype = np.float64 if keep_float64 and X.dtype == np.float64 else np.float32
    X = np.ascontiguousarray(X, dtype=dtype)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array of embeddings; got {X.ndim}-D.")
    if d is not None and X.shape[1] != d:
        raise ValueError(f"the index holds {d}-d embeddings but X has {X.shape[1]} columns.")
    return X


def _unit_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.maximum(norms, 1e-12)


def _from_squared(sq: np.ndarray, distance: str) -> np.ndarray:
    """Convert squared L2 distances (between unit rows for cosine) to ``distance``."""
    sq = np.maximum(sq, 0.0)
    if distance == "euclidean":
        return np.sqrt(sq)
    if distance == "cosine":
        return sq / 2.0  # ||a - b||^2 = 2 - 2 cos(a, b) on unit vectors
    return sq


def auto_ef_search(n_gallery: int, k: int) -> int:
    """The HNSW search breadth used by ``ef_search="auto"``.

    ``max(64, 2 * sqrt(n_gallery) + 4 * k)``, at most ``n_gallery`` (and at
    least ``k``). A graph's search must grow with the gallery on data without
    cluster structure: on i.i.d. normal 64-d points a fixed breadth of 64
    finds only about 80 % of the 10 nearest neighbours of 20,000 (see
    ``benchmarks/bench_ann.py --data iid``). This rule keeps recall@k at or
    above 0.95 there for galleries of 2,000 to 100,000 rows and k from 1 to
    50. It costs speed: 5 to 14 times fewer queries per second than a
    breadth of 64 in ``docs/benchmarks.md``. On clustered data (trained
    embeddings) a breadth of 64 already finds nearly all of them, so pass
    ``ef_search=64`` once you have checked recall@k against exact search on
    your own data.

    Parameters
    ----------
    n_gallery : int
        Rows in the index.
    k : int
        Neighbours per query.

    Returns
    -------
    int
        The search breadth.

    Examples
    --------
    >>> from sktriplet.evaluation.neighbors import auto_ef_search
    >>> auto_ef_search(20_000, 10)
    323
    >>> auto_ef_search(100, 1)
    64
    """
    ef = max(64, math.ceil(2.0 * math.sqrt(n_gallery)) + 4 * k)
    return max(k, min(ef, n_gallery))


def auto_nprobe(n_lists: int) -> int:
    """The inverted lists an IVF index visits per query with ``nprobe="auto"``.

    ``n_lists / 2 + 2 * sqrt(n_lists)``, at most ``n_lists``. On data without
    cluster structure an inverted-file index must visit about half its lists
    to find 95 % of the nearest neighbours, which costs nearly as much as
    exact search; on clustered data far fewer lists suffice, so set
    ``nprobe`` yourself (e.g. 16 to 64) after checking recall on your data.

    Parameters
    ----------
    n_lists : int
        Inverted lists of the index (the ``1024`` of ``"IVF1024,Flat"``).

    Returns
    -------
    int
        Lists visited per query.

    Examples
    --------
    >>> from sktriplet.evaluation.neighbors import auto_nprobe
    >>> auto_nprobe(1024)
    576
    """
    return max(1, min(n_lists, math.ceil(n_lists / 2 + 2.0 * math.sqrt(n_lists))))


def _check_breadth(name: str, value: Any) -> int | str:
    if value == "auto" and isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer or 'auto'; got {value!r}.")
    return int(value)


def _resolve_ef(ef_search: Any, n_gallery: int, k: int) -> int:
    ef = _check_breadth("ef_search", ef_search)
    return auto_ef_search(n_gallery, k) if ef == "auto" else max(int(ef), k)


class _BaseIndex:
    distance: str
    dim_: int | None

    def __len__(self) -> int:
        return self.ntotal

    @property
    def ntotal(self) -> int:
        """Number of gallery rows."""
        raise NotImplementedError

    def _check_k(self, k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}.")
        if k > self.ntotal:
            raise ValueError(f"k={k} exceeds the {self.ntotal} rows in the index.")
        return int(k)


class ExactIndex(_BaseIndex):
    """Exhaustive search through scikit-learn's :class:`~sklearn.neighbors.NearestNeighbors`.

    Embeddings are kept as float32, or float64 when given as float64.

    Parameters
    ----------
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings. ``"sqeuclidean"`` ranks like
        ``"euclidean"``; the returned distances are squared.
    n_jobs : int, default=None
        Parallel jobs for the search (as in scikit-learn).

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.evaluation.neighbors import ExactIndex
    >>> index = ExactIndex(distance="euclidean")
    >>> index.add(np.array([[0.0, 0.0], [3.0, 4.0]]))
    >>> index.search(np.array([[3.0, 3.0]]), k=2)
    (array([[1.        , 4.24264069]]), array([[1, 0]]))
    """

    def __init__(self, distance: str = "sqeuclidean", *, n_jobs: int | None = None) -> None:
        self.distance = check_distance(distance)
        self.n_jobs = n_jobs
        self.dim_ = None
        self._chunks: list[np.ndarray] = []
        self._data: np.ndarray | None = None
        self._nn: NearestNeighbors | None = None

    @property
    def ntotal(self) -> int:
        """Number of gallery rows."""
        return sum(len(c) for c in self._chunks)

    def add(self, X) -> None:
        """Append embeddings to the gallery.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings to add.
        """
        X = _as_rows(X, self.dim_, keep_float64=True)
        self.dim_ = X.shape[1]
        if self._chunks and self._chunks[0].dtype != X.dtype:
            X = X.astype(np.float64)
            self._chunks = [c.astype(np.float64) for c in self._chunks]
        self._chunks.append(X)
        self._nn = None

    def search(self, Q, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Find the ``k`` nearest gallery rows of every query.

        Parameters
        ----------
        Q : array-like of shape (n_queries, n_features)
            Query embeddings.
        k : int
            Neighbours per query.

        Returns
        -------
        distances : ndarray of shape (n_queries, k)
            Distances, ascending along each row, in the gallery's dtype.
        ids : ndarray of shape (n_queries, k), dtype int64
            Gallery positions of the neighbours.
        """
        k = self._check_k(k)
        Q = _as_rows(Q, self.dim_).astype(self._chunks[0].dtype)
        nn = self._nn
        if nn is None:
            data = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
            self._chunks = [data]
            metric = "cosine" if self.distance == "cosine" else "euclidean"
            # Fitted before it is published: a thread searching at the same
            # time never sees an unfitted NearestNeighbors.
            nn = NearestNeighbors(algorithm="brute", metric=metric, n_jobs=self.n_jobs)
            self._nn = nn.fit(data)
        dist, ids = nn.kneighbors(Q, n_neighbors=k)
        if self.distance == "sqeuclidean":
            dist = dist**2
        return dist.astype(self._chunks[0].dtype), ids.astype(np.int64)


class FaissIndex(_BaseIndex):
    """Approximate (or exact) search with a faiss index.

    Needs the optional ``faiss-cpu`` package. Cosine distance is served by
    L2 search on unit-normalised rows.

    Parameters
    ----------
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings.
    factory : str, default="HNSW32"
        A `faiss index factory
        <https://github.com/facebookresearch/faiss/wiki/The-index-factory>`_
        string: ``"HNSW32"`` (graph, no training), ``"IVF1024,Flat"``
        (inverted lists, trained on the first rows added), ``"Flat"`` (exact).
    ef_search : int or "auto", default="auto"
        Breadth of the HNSW search (more is slower and more accurate).
        ``"auto"``: :func:`auto_ef_search` of the gallery size and ``k``,
        which keeps recall@k at or above 0.95 even on unstructured data.
    nprobe : int or "auto", default="auto"
        Inverted lists visited per query by IVF indexes. ``"auto"``:
        :func:`auto_nprobe` of the number of lists.
    n_threads : int, default=None
        OpenMP threads faiss uses while it adds or searches (the process's
        setting, which torch shares, is put back after); ``None`` leaves
        faiss's default.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.evaluation.neighbors import FaissIndex
    >>> index = FaissIndex(factory="Flat")  # doctest: +SKIP
    """

    def __init__(
        self,
        distance: str = "sqeuclidean",
        *,
        factory: str = "HNSW32",
        ef_search: int | str = "auto",
        nprobe: int | str = "auto",
        n_threads: int | None = None,
    ) -> None:
        self.distance = check_distance(distance)
        self.factory = factory
        self.ef_search = _check_breadth("ef_search", ef_search)
        self.nprobe = _check_breadth("nprobe", nprobe)
        self.n_threads = n_threads
        self.dim_ = None
        self._faiss = _import_optional("faiss", "faiss-cpu")
        self._index: Any = None
        self._search_lock = threading.Lock()

    @property
    def ntotal(self) -> int:
        """Number of gallery rows."""
        return 0 if self._index is None else int(self._index.ntotal)

    def _prepare(self, X) -> np.ndarray:
        X = _as_rows(X, self.dim_)
        return _unit_rows(X).astype(np.float32) if self.distance == "cosine" else X

    def add(self, X) -> None:
        """Append embeddings (training the index on the first call if it needs it).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings to add.
        """
        X = self._prepare(X)
        faiss = self._faiss
        with _omp_threads(faiss, self.n_threads):
            if self._index is None:
                self.dim_ = X.shape[1]
                self._index = faiss.index_factory(self.dim_, self.factory, faiss.METRIC_L2)
            if not self._index.is_trained:
                self._index.train(X)
            self._index.add(X)

    def search(self, Q, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Find (approximately) the ``k`` nearest gallery rows of every query.

        Parameters
        ----------
        Q : array-like of shape (n_queries, n_features)
            Query embeddings.
        k : int
            Neighbours per query.

        Returns
        -------
        distances : ndarray of shape (n_queries, k), dtype float32
            Distances, ascending along each row.
        ids : ndarray of shape (n_queries, k), dtype int64
            Gallery positions of the neighbours (``-1`` where the index found
            fewer than ``k``).
        """
        k = self._check_k(k)
        Q = self._prepare(Q)
        faiss = self._faiss
        params = faiss.ParameterSpace()
        ef = _resolve_ef(self.ef_search, self.ntotal, k)
        with self._search_lock, _omp_threads(faiss, self.n_threads):
            # (the parameters are the index's, shared by all callers)
            for name, value in (("efSearch", ef), ("nprobe", self._nprobe())):
                if value is None:
                    continue
                try:
                    params.set_index_parameter(self._index, name, int(value))
                except RuntimeError:
                    pass  # the index has no such parameter
            sq, ids = self._index.search(Q, k)
        return _from_squared(sq, self.distance).astype(np.float32), ids.astype(np.int64)

    def _nprobe(self) -> int | None:
        nprobe = _check_breadth("nprobe", self.nprobe)
        if nprobe != "auto":
            return int(nprobe)
        try:
            ivf = self._faiss.extract_index_ivf(self._index)
        except RuntimeError:
            return None  # not an inverted-file index
        return auto_nprobe(int(ivf.nlist))

    def memory_bytes(self) -> int:
        """Size of the serialised index in bytes (its memory, within a few percent)."""
        return int(self._faiss.serialize_index(self._index).nbytes)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_faiss"] = None  # a module does not pickle; faiss indexes do through bytes
        state["_search_lock"] = None  # nor does a lock
        if self._index is not None:
            state["_index"] = self._faiss.serialize_index(self._index)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._faiss = _import_optional("faiss", "faiss-cpu")
        self._search_lock = threading.Lock()
        if self._index is not None:
            self._index = self._faiss.deserialize_index(self._index)


class HNSWIndex(_BaseIndex):
    """Approximate search with an hnswlib graph.

    Needs the optional ``hnswlib`` package. The graph grows as rows are added.

    Parameters
    ----------
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings.
    M : int, default=16
        Links per node (memory and accuracy grow with it).
    ef_construction : int, default=200
        Breadth of the search while inserting.
    ef_search : int or "auto", default="auto"
        Breadth of the search for queries (raised to ``k`` when smaller).
        ``"auto"``: :func:`auto_ef_search` of the gallery size and ``k``,
        which keeps recall@k at or above 0.95 even on unstructured data.
    n_threads : int, default=-1
        Threads for adding and searching (``-1``: all cores).
    random_state : int, default=0
        Seed of the graph's level assignment.

    Examples
    --------
    >>> from sktriplet.evaluation.neighbors import HNSWIndex
    >>> index = HNSWIndex(distance="cosine")  # doctest: +SKIP
    """

    def __init__(
        self,
        distance: str = "sqeuclidean",
        *,
        M: int = 16,
        ef_construction: int = 200,
        ef_search: int | str = "auto",
        n_threads: int = -1,
        random_state: int = 0,
    ) -> None:
        self.distance = check_distance(distance)
        self.M = M
        self.ef_construction = ef_construction
        self.ef_search = _check_breadth("ef_search", ef_search)
        self.n_threads = n_threads
        self.random_state = random_state
        self.dim_ = None
        self._hnswlib = _import_optional("hnswlib", "hnswlib")
        self._index: Any = None
        self._search_lock = threading.Lock()

    @property
    def ntotal(self) -> int:
        """Number of gallery rows."""
        return 0 if self._index is None else int(self._index.get_current_count())

    def add(self, X) -> None:
        """Append embeddings to the graph.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Embeddings to add.
        """
        X = _as_rows(X, self.dim_)
        if self._index is None:
            self.dim_ = X.shape[1]
            space = "cosine" if self.distance == "cosine" else "l2"
            self._index = self._hnswlib.Index(space=space, dim=self.dim_)
            self._index.init_index(
                max_elements=len(X),
                ef_construction=self.ef_construction,
                M=self.M,
                random_seed=self.random_state,
            )
        start = self.ntotal
        if start + len(X) > self._index.get_max_elements():
            self._index.resize_index(max(start + len(X), 2 * self._index.get_max_elements()))
        self._index.add_items(X, np.arange(start, start + len(X)), num_threads=self.n_threads)

    def search(self, Q, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Find (approximately) the ``k`` nearest gallery rows of every query.

        Parameters
        ----------
        Q : array-like of shape (n_queries, n_features)
            Query embeddings.
        k : int
            Neighbours per query.

        Returns
        -------
        distances : ndarray of shape (n_queries, k), dtype float32
            Distances, ascending along each row.
        ids : ndarray of shape (n_queries, k), dtype int64
            Gallery positions of the neighbours.
        """
        k = self._check_k(k)
        Q = _as_rows(Q, self.dim_)
        with self._search_lock:  # ef is the graph's, shared by all callers
            self._index.set_ef(_resolve_ef(self.ef_search, self.ntotal, k))
            ids, dist = self._index.knn_query(Q, k=k, num_threads=self.n_threads)
        if self.distance == "euclidean":
            dist = np.sqrt(np.maximum(dist, 0.0))
        return np.maximum(dist, 0.0).astype(np.float32), ids.astype(np.int64)

    def memory_bytes(self) -> int:
        """Approximate memory of the graph and vectors, in bytes (hnswlib's layout)."""
        n, M, d = self.ntotal, self.M, self.dim_ or 0
        # Level-0 links (2M ids + count) + vector + label per element; upper
        # levels hold ~1/M of the elements with M links each.
        level0 = n * (4 * (2 * M + 1) + 4 * d + 8)
        upper = int(n / M) * (4 * (M + 1))
        return level0 + upper

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_hnswlib"] = None  # a module does not pickle; the hnswlib index does
        state["_search_lock"] = None  # nor does a lock
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._hnswlib = _import_optional("hnswlib", "hnswlib")
        self._search_lock = threading.Lock()


def _import_optional(module: str, package: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(
            f"this index needs the optional package {package!r}: "
            f"pip install {package}  (or pip install 'sktriplet[ann]')"
        ) from exc


def make_index(algorithm: str = "brute", distance: str = "sqeuclidean", **params: Any):
    """Make an empty index by name.

    Parameters
    ----------
    algorithm : {"brute", "faiss", "hnsw"}, default="brute"
        ``"brute"``: :class:`ExactIndex`; ``"faiss"``: :class:`FaissIndex`;
        ``"hnsw"``: :class:`HNSWIndex`.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance between embeddings.
    **params : dict
        Keyword arguments of the index class.

    Returns
    -------
    ExactIndex, FaissIndex or HNSWIndex
        The empty index.

    Raises
    ------
    ValueError
        If ``algorithm`` is unknown.
    ImportError
        If the index needs an optional package that is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.evaluation.neighbors import make_index
    >>> index = make_index("brute", distance="cosine")
    >>> index.add(np.eye(3))
    >>> index.search(np.array([[1.0, 0.1, 0.0]]), k=1)[1]
    array([[0]])
    """
    if algorithm == "brute":
        return ExactIndex(distance, **params)
    if algorithm == "faiss":
        return FaissIndex(distance, **params)
    if algorithm == "hnsw":
        return HNSWIndex(distance, **params)
    raise ValueError(f"algorithm={algorithm!r} is not supported; use one of {list(ALGORITHMS)}.")
