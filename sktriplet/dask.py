"""Embedding collections of image files on a Dask cluster.

:func:`dask_transform` embeds a Dask Series or Bag of image file paths with a
fitted :class:`~sktriplet.TripletEmbedder`: the model goes into the task graph
once (a single ``dask.delayed`` key that each worker fetches once and keeps),
every partition of paths is embedded on the worker that holds it, reading the
files there, and only the embeddings come back. The client never reads an
image. The files must be readable from the workers under the same paths
(a shared or network file system, or object storage mounted on every node).

Dask is optional (``pip install "sktriplet[distributed]"``); this module is a
leaf that nothing else in sktriplet imports.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["dask_transform"]


def _embed_partition(paths, estimator, columns: Sequence[str]) -> pd.DataFrame:
    """Embeddings of one partition of paths (runs on a worker)."""
    values = np.asarray(paths, dtype=object)
    if len(values):
        Z = estimator.transform(values)
    else:
        Z = np.empty((0, len(columns)), dtype=np.float32)
    index = paths.index if isinstance(paths, pd.Series) else None
    return pd.DataFrame(Z, index=index, columns=list(columns))


def _embed_with_paths(paths, estimator, columns: Sequence[str]) -> pd.DataFrame:
    """A Bag partition: a ``path`` column, then the embeddings."""
    paths = list(paths)
    frame = _embed_partition(paths, estimator, columns)
    frame.insert(0, "path", pd.Series(paths, dtype=object))
    return frame


def _worker_copy(estimator, num_workers: int):
    """The estimator with its DataLoader workers set for use inside a Dask worker."""
    shipped = copy.copy(estimator)
    shipped.set_params(iterator_valid__num_workers=num_workers)  # transform reads them
    return shipped


def dask_transform(estimator, paths, *, num_workers: int = 0):
    """Embed a Dask collection of image file paths on the cluster's workers.

    Parameters
    ----------
    estimator : TripletEmbedder
        Fitted on image files (``input_spec_.kind == "paths"``); any fitted
        estimator with ``transform`` and ``get_feature_names_out`` works.
    paths : dask.dataframe.Series or dask.bag.Bag
        One image file path per element, readable from the workers.
    num_workers : int, default=0
        DataLoader worker processes per Dask task. Dask's worker processes are
        daemons, which may not start processes of their own, so keep 0 there
        and scale with the cluster's workers and threads instead (more
        threads per worker decode files in parallel: Pillow releases the GIL).

    Returns
    -------
    dask.dataframe.DataFrame
        Lazy embeddings, one row per path, columns
        ``estimator.get_feature_names_out()``. For a Series the index is the
        Series's (join it back with ``series.to_frame().join(result)``); for a
        Bag a first column ``path`` holds the paths. Call ``.compute()``,
        ``.to_parquet(...)`` or ``.persist()`` on it.

    Raises
    ------
    TypeError
        When ``paths`` is not a Dask Series or Bag.

    Notes
    -----
    A worker that dies during the run (killed, out of memory, a pre-empted
    machine) loses nothing: the model is a task of the graph, not data
    scattered to the workers, so the scheduler computes it again, with every
    partition the dead worker held or was embedding, on the workers left
    (``tests/test_dask.py`` kills one with SIGKILL mid-run and checks every
    row, in order). A partition whose workers die
    ``distributed.scheduler.allowed-failures`` times (3 by default) fails
    with ``KilledWorker``, since it is probably what kills them. On a
    ``LocalCluster``, a restarted worker that takes longer than
    ``distributed.deploy.lost-worker-timeout`` (15 s) to come back is dropped
    for good; a run whose every worker is dropped waits forever, so raise that
    timeout on slow or busy machines.

    Examples
    --------
    >>> import os, tempfile
    >>> import dask.dataframe as dd
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sktriplet.dask import dask_transform
    >>> class LengthModel:  # stands in for a fitted TripletEmbedder
    ...     def transform(self, paths):
    ...         return np.array([[len(p)] for p in paths], dtype=np.float32)
    ...     def get_feature_names_out(self):
    ...         return np.array(["length"], dtype=object)
    ...     def set_params(self, **params):
    ...         return self
    >>> paths = dd.from_pandas(pd.Series(["a.jpg", "bb.jpg", "ccc.jpg"]), npartitions=2)
    >>> dask_transform(LengthModel(), paths).compute(scheduler="sync")["length"].tolist()
    [5.0, 6.0, 7.0]
    """
    import dask
    import dask.bag as db
    import dask.dataframe as dd

    columns = [str(c) for c in estimator.get_feature_names_out()]
    model = dask.delayed(
        _worker_copy(estimator, num_workers), name=f"sktriplet-model-{uuid.uuid4().hex}"
    )
    meta = pd.DataFrame({c: pd.Series(dtype=np.float32) for c in columns})
    if isinstance(paths, dd.Series):
        meta.index = paths._meta.index
        return paths.map_partitions(_embed_partition, model, columns, meta=meta)
    if isinstance(paths, db.Bag):
        meta.insert(0, "path", pd.Series(dtype=object))
        parts = [
            dask.delayed(_embed_with_paths)(part, model, columns) for part in paths.to_delayed()
        ]
        return dd.from_delayed(parts, meta=meta, verify_meta=False)
    raise TypeError(
        f"paths must be a dask.dataframe.Series or dask.bag.Bag of file paths; got "
        f"{type(paths).__name__}. For a list or pandas Series, call estimator.transform(paths); "
        "for a Dask DataFrame, pass its column of paths, e.g. ddf['path']."
    )
