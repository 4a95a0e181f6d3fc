"""Torch threads while fitting: joblib's limits, threadpoolctl's, small networks."""

import os

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_limits
from torch import nn

from sktriplet.runtime.threads import (
    SMALL_NETWORK_WORK,
    choose_threads,
    fit_threads,
    inherited_thread_limit,
)


@pytest.fixture
def two_threads(monkeypatch):
    """An unlimited process on a 2-core machine: torch and OpenMP at 2 threads."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    with threadpool_limits(2, user_api="openmp"):  # also torch's own OpenMP runtime
        torch.set_num_threads(2)
        yield
    torch.set_num_threads(before)


def _big():
    # 1024 * 1024 weights: far more work per batch than SMALL_NETWORK_WORK
    return nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 64))


def test_small_networks_train_on_one_thread(two_threads):
    small = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 64))
    n_params = sum(p.numel() for p in small.parameters())
    assert n_params * 128 < SMALL_NETWORK_WORK
    assert choose_threads(module=small, batch_size=128) == 1
    with fit_threads(module=small, batch_size=128) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2  # restored


def test_large_and_convolutional_networks_keep_the_threads(two_threads):
    assert choose_threads(module=_big(), batch_size=128) == 2
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.LazyLinear(8))
    assert choose_threads(module=conv, batch_size=2) == 2  # few parameters, much work
    assert choose_threads() == 2  # size unknown


def test_the_environment_limit_is_followed(two_threads, monkeypatch):
    # what loky does in a GridSearchCV(n_jobs=k) worker: OMP_NUM_THREADS = cores // k
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert inherited_thread_limit() == 1
    with fit_threads(module=_big(), batch_size=128) as n:
        assert n == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert choose_threads(module=_big(), batch_size=128) == 2


def test_threadpoolctl_limits_are_followed(two_threads):
    with threadpool_limits(1, user_api="openmp"):
        assert inherited_thread_limit() == 1
        assert choose_threads(module=_big(), batch_size=128) == 1


def test_explicit_counts_win_and_are_checked(two_threads):
    with fit_threads(3, module=nn.Linear(2, 2), batch_size=4) as n:
        assert n == 3 and torch.get_num_threads() == 3
    assert torch.get_num_threads() == 2
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n_threads must be a positive integer or None"):
            choose_threads(bad)


def test_restored_even_when_training_fails(two_threads):
    with pytest.raises(RuntimeError, match="boom"):
        with fit_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2


class _RecordThreads(BaseEstimator):
    """Fits nothing; records the torch threads a fit would train with."""

    def __init__(self, alpha=0):
        self.alpha = alpha

    def fit(self, X, y=None):
        with fit_threads(module=_big(), batch_size=128) as n:
            self.threads_ = (n, torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS"))
        return self

    def score(self, X, y=None):
        n, torch_threads, env = self.threads_
        # encode the three numbers in one score: n, torch's count, loky's limit
        return n * 10_000 + torch_threads * 100 + (int(env) if env else 0)


def test_grid_search_workers_do_not_oversubscribe():
    n_jobs = 2
    X = np.zeros((8, 2))
    grid = GridSearchCV(_RecordThreads(), {"alpha": [0, 1]}, cv=2, n_jobs=n_jobs).fit(X)
    scores = np.concatenate([grid.cv_results_[f"split{i}_test_score"] for i in range(2)])
    share = max(1, os.cpu_count() // n_jobs)  # loky's default per-worker limit
    for score in scores.astype(int):
        n, torch_threads, env = score // 10_000, score // 100 % 100, score % 100
        assert env == share  # the workers did get a limit ...
        assert n == torch_threads <= share  # ... and training follows it


def test_a_small_fit_trains_on_one_thread_and_restores_the_count(two_threads):
    from skorch.callbacks import Callback

    from sktriplet import TripletEmbedder

    class Record(Callback):
        def initialize(self):
            self.seen_ = []
            return self

        def on_epoch_begin(self, net, **kwargs):
            self.seen_.append(torch.get_num_threads())

    record = Record()
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 8)).astype(np.float32), np.repeat(np.arange(4), 16)
    TripletEmbedder(max_epochs=2, n_components=4, callbacks=[record], random_state=0).fit(X, y)
    assert record.seen_ == [1, 1]  # the default MLP on 8 features is a small network
    assert torch.get_num_threads() == 2
