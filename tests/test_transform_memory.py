"""transform's numpy memory: the output and nothing of the input's size."""

from __future__ import annotations

import tracemalloc

import numpy as np

from sktriplet import TripletEmbedder


def test_transform_allocates_only_its_output():
    # tracemalloc sees numpy's allocations (not torch's): a temporary of the
    # input's size (a copy, or a boolean mask for the NaN check) would show.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 64)).astype(np.float32)
    y = np.repeat(np.arange(20), 20)
    est = TripletEmbedder(max_epochs=1, n_components=8, random_state=0).fit(X, y)
    big = rng.normal(size=(200_000, 64)).astype(np.float32)  # 48.8 MiB in, 6.1 out
    tracemalloc.start()
    try:
        out = est.transform(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.shape == (200_000, 8)
    extra = peak - out.nbytes
    assert extra < 1.5 * 2**20, f"{extra / 2**20:.1f} MiB besides the output"
