"""Serving from several threads: concurrent calls give exactly the serial results."""

from __future__ import annotations

import copy
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from sklearn.frozen import FrozenEstimator

from sktriplet import OpenSetKNeighborsClassifier, TripletEmbedder

TRIES = 4
THREADS = 4


@pytest.fixture(scope="module")
def fitted(digits):
    """An embedder as ``fit`` leaves it: the default MLP (with BatchNorm), training mode."""
    X, y = digits
    est = TripletEmbedder(max_epochs=2, random_state=0, verbose=0).fit(X[:600], y[:600])
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in est.net_.module_.modules())
    return est


def _state(est):
    return {k: v.clone() for k, v in est.net_.module_.state_dict().items()}


def _run_concurrently(call, n_calls=THREADS):
    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(lambda _: call(), range(n_calls)))


def test_a_call_never_runs_in_training_mode_restored_by_another(fitted, digits):
    # Deterministic replay of the race: B's forward pass runs after A has
    # finished. When each call restored the mode it found, A put the network
    # back in training mode under B (BatchNorm then used batch statistics and
    # overwrote its running ones).
    X = digits[0][:300]
    reference = copy.deepcopy(fitted).transform(X)
    est = copy.deepcopy(fitted)
    before = _state(est)
    a_in, b_in, a_done = threading.Event(), threading.Event(), threading.Event()

    def pause(module, args):
        name = threading.current_thread().name
        if name == "A" and not a_in.is_set():
            a_in.set()
            assert b_in.wait(10)
        elif name == "B" and not b_in.is_set():
            b_in.set()
            assert a_done.wait(10)

    results = {}

    def call(name):
        results[name] = est.transform(X)

    handle = est.net_.module_.register_forward_pre_hook(pause)
    try:
        a = threading.Thread(target=call, args=("A",), name="A")
        a.start()
        assert a_in.wait(10)
        b = threading.Thread(target=call, args=("B",), name="B")
        b.start()
        a.join(10)
        a_done.set()
        b.join(10)
    finally:
        handle.remove()
    np.testing.assert_array_equal(results["A"], reference)
    np.testing.assert_array_equal(results["B"], reference)
    after = _state(est)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_concurrent_transform_equals_serial(fitted, digits):
    X = digits[0]
    reference = copy.deepcopy(fitted).transform(X)
    for _ in range(TRIES):
        est = copy.deepcopy(fitted)  # in training mode, as fit leaves it
        for out in _run_concurrently(lambda est=est: est.transform(X)):
            np.testing.assert_array_equal(out, reference)
        np.testing.assert_array_equal(est.transform(X), reference)


def test_concurrent_predict_and_kneighbors_equal_serial(fitted, digits):
    X, y = digits
    gallery, queries = slice(600, 700), slice(700, None)
    serial = OpenSetKNeighborsClassifier(
        embedder=FrozenEstimator(copy.deepcopy(fitted)), n_neighbors=3
    ).fit(X[gallery], y[gallery])
    serial.threshold_ = float(np.median(serial.match(X[queries])[1]))
    expected_pred = serial.predict(X[queries])
    expected_dist, expected_ids = serial.kneighbors(X[queries])
    assert (expected_pred == serial.unknown_label_).any()  # the threshold matters
    for _ in range(TRIES):
        clf = copy.deepcopy(serial)
        clf.embedder_.estimator.net_.module_.train()  # as fit leaves the embedder
        clf.index_._nn = None  # the index is built by the first search
        preds = _run_concurrently(lambda clf=clf: clf.predict(X[queries]))
        neighbours = _run_concurrently(lambda clf=clf: clf.kneighbors(X[queries]))
        for pred in preds:
            np.testing.assert_array_equal(pred, expected_pred)
        for dist, ids in neighbours:
            np.testing.assert_array_equal(dist, expected_dist)
            np.testing.assert_array_equal(ids, expected_ids)


def test_transform_leaves_the_network_in_evaluation_mode(fitted, digits):
    est = copy.deepcopy(fitted)
    est.net_.module_.train()
    est.transform(digits[0][:10])
    assert not any(m.training for m in est.net_.module_.modules())
