"""Hyperparameter search on a cluster: pickling, no global state, Dask.

The Dask test starts a ``dask.distributed.LocalCluster`` of two worker
processes with one thread each and runs ``GridSearchCV(n_jobs=-1)`` under
``joblib.parallel_backend("dask")``.
"""

from __future__ import annotations

import pickle

import cloudpickle
import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from sktriplet import TripletEmbedder

FAST = dict(max_epochs=3, batch_size=64, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:400].astype(np.float32), y[:400]


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "cloudpickle"])
def test_pickles_unfitted_and_fitted(data, dumps):
    X, y = data
    est = TripletEmbedder(margin=0.3, module__hidden_units=(32,), **FAST)
    unfitted = pickle.loads(dumps(est))
    assert unfitted.get_params() == est.get_params()
    est.fit(X, y)
    fitted = pickle.loads(dumps(est))
    np.testing.assert_array_equal(fitted.transform(X[:50]), est.transform(X[:50]))
    # The unpickled unfitted estimator trains to the same (seeded) network.
    np.testing.assert_array_equal(unfitted.fit(X, y).transform(X[:50]), est.transform(X[:50]))


def test_fit_leaves_no_process_global_state(data):
    X, y = data
    torch_rng, np_rng = torch.get_rng_state(), np.random.get_state()
    threads = torch.get_num_threads()
    TripletEmbedder(**FAST).fit(X, y)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_rng, strict=True))
    # random_state=None draws its seed from numpy's global RNG (the sklearn
    # convention), but torch's global RNG is left as it was in both cases.
    TripletEmbedder(**{**FAST, "random_state": None}).fit(X, y)
    assert torch.equal(torch.get_rng_state(), torch_rng)
    assert torch.get_num_threads() == threads
    assert not torch.distributed.is_initialized()


def test_grid_search_on_a_dask_cluster(data):
    distributed = pytest.importorskip("dask.distributed")
    X, y = data
    grid = {"margin": [0.1, 0.4]}
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # Dask's nanny sets OMP_NUM_THREADS=1 before a worker starts, so torch
        # in each worker uses one thread: no oversubscription.
        assert set(client.run(torch.get_num_threads).values()) == {1}
        search = GridSearchCV(TripletEmbedder(**FAST), grid, cv=2, n_jobs=-1)
        with distributed.get_task_stream(client) as tasks, joblib.parallel_backend("dask"):
            search.fit(X, y)
        workers = {t["worker"] for t in tasks.data}
    assert len(workers) == 2  # both workers ran fits
    assert len(search.cv_results_["params"]) == 2
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # The same search in this process gives the same scores (seeded fits).
    # CPU results are bitwise reproducible for a fixed thread count only, so
    # match the workers' single thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = GridSearchCV(clone(search.estimator), grid, cv=2, n_jobs=1).fit(X, y)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], atol=1e-6
    )
    assert search.best_params_ == local.best_params_
    assert search.best_estimator_.transform(X[:5]).shape == (5, 64)
