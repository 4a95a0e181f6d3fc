"""Explicit-triplet inputs: validation messages, batch collation, the Dataset."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sktriplet.inputs.triplet_batches import (
    ArraySamples,
    DatasetSamples,
    TripletBatchSampler,
    TripletDataset,
    as_sample_source,
    check_triplet_indices,
    check_triplet_rows,
    collate_triplets,
    dedupe_triplet_rows,
    flatten_triplet_rows,
    unique_triplet_batch,
)


def _indices(seed=0, n_samples=20, n=15):
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(n_samples, 3, replace=False) for _ in range(n)])


# ----------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("triplets", "match"),
    [
        (np.zeros((4, 2), int), r"index triplets must have shape \(n_triplets, 3\).*\(4, 2\)"),
        (np.zeros((4, 3, 5)), r"got shape \(4, 3, 5\)\. It looks like triplet rows"),
        (np.array([[0.0, 1.0, 2.0]]), "must hold integers.*float64"),
        (np.array([[True, False, True]]), "must hold integers"),
        (np.zeros((0, 3), int), "got 0 triplets; at least 1 needed"),
        (
            np.array([[0, 1, 2], [3, 10, 4], [11, 1, 2]]),
            re.escape(
                "triplet index 10 in row 1 (positive) is out of range for 10 samples: "
                "indices must lie in [0, 9] (2 indices out of range)"
            ),
        ),
        (np.array([[0, 1, -1]]), r"index -1 in row 0 \(negative\) is out of range"),
        (
            np.array([[0, 1, 2], [3, 3, 4], [5, 5, 6]]),
            re.escape("2 triplets have anchor == positive (first: row 1, [3, 3, 4])"),
        ),
        (
            np.array([[0, 1, 2], [3, 4, 4]]),
            re.escape("1 triplets have a negative equal to their anchor or positive (first: row 1"),
        ),
    ],
)
def test_bad_index_triplets_get_clear_errors(triplets, match):
    with pytest.raises(ValueError, match=match):
        check_triplet_indices(triplets, 10)


def test_good_index_triplets_pass_unchanged():
    idx = _indices().astype(np.int32)
    before = idx.copy()
    out = check_triplet_indices(torch.from_numpy(idx), 20)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, before)
    np.testing.assert_array_equal(idx, before)
    with pytest.raises(ValueError, match="got 15 triplets; at least 16 needed"):
        check_triplet_indices(idx, 20, min_triplets=16)


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (np.zeros((5, 2, 4)), r"shape \(n_triplets, 3, \*sample_shape\).*\(5, 2, 4\)"),
        (np.zeros((5, 12)), r"got shape \(5, 12\)\.$"),
        (np.zeros((5, 3), int), "It looks like index triplets; pass the samples"),
        (np.array([[["a"], ["b"], ["c"]]]), "must be numeric"),
        (np.zeros((0, 3, 2)), "got 0 triplets"),
    ],
)
def test_bad_triplet_rows_get_clear_errors(rows, match):
    with pytest.raises(ValueError, match=match):
        check_triplet_rows(rows)


def test_triplet_rows_with_repeated_members_or_nan_are_refused():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(6, 3, 2, 2))
    rows[4, 1] = rows[4, 0]
    with pytest.raises(
        ValueError,
        match=re.escape("1 triplets have anchor == positive (first: triplet 4, identical rows)"),
    ):
        check_triplet_rows(rows)
    rows[4, 1] += 1.0
    rows[2, 2] = rows[2, 1]
    with pytest.raises(ValueError, match="negative equal to their anchor or positive"):
        check_triplet_rows(rows)
    rows[2, 2] += 1.0
    rows[3, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity \(first in triplet 3\)"):
        check_triplet_rows(rows)


# ----------------------------------------------------------------- collation
@pytest.mark.parametrize("as_tensor", [False, True])
def test_unique_batch_embeds_each_sample_once(as_tensor):
    idx = _indices(1, n_samples=12, n=20)
    arg = torch.from_numpy(idx) if as_tensor else idx
    ids, local = unique_triplet_batch(arg)
    ids, local = np.asarray(ids), np.asarray(local)
    assert sorted(set(idx.ravel().tolist())) == ids.tolist()
    for row, loc in zip(idx, local, strict=True):
        assert [ids[j] for j in loc] == row.tolist()


def test_flatten_triplet_rows_keeps_the_members_in_order():
    rows = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    X, idx = flatten_triplet_rows(rows)
    for t in range(2):
        for role in range(3):
            np.testing.assert_array_equal(X[idx[t, role]], rows[t, role])


def test_dedupe_merges_identical_rows_in_order_of_first_appearance():
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(6, 2, 2))
    picks = np.array([[3, 1, 0], [1, 3, 5], [5, 0, 1], [2, 4, 3]])
    distinct, idx = dedupe_triplet_rows(*flatten_triplet_rows(pool[picks]))
    # Brute force: walk the rows, numbering each new one.
    seen: list[np.ndarray] = []
    want = []
    for row in pool[picks].reshape(-1, 2, 2):
        hit = [k for k, s in enumerate(seen) if np.array_equal(s, row)]
        if not hit:
            seen.append(row)
        want.append(hit[0] if hit else len(seen) - 1)
    np.testing.assert_array_equal(distinct, np.stack(seen))
    np.testing.assert_array_equal(idx, np.array(want).reshape(4, 3))
    np.testing.assert_array_equal(distinct[idx], pool[picks])


def test_dataset_samples_take_a_batch_and_pass_the_epoch_on():
    class _Data:
        epoch = 0

        def __len__(self):
            return 5

        def __getitem__(self, ids):
            return torch.as_tensor(ids) * 10, torch.zeros(len(ids))

        def set_epoch(self, epoch):
            self.epoch = epoch

    inner = _Data()
    data = TripletDataset([[0, 1, 4], [4, 3, 2]], DatasetSamples(inner))
    Xb, local = data[[1, 0]]
    assert Xb.tolist() == [0, 10, 20, 30, 40] and local.tolist() == [[4, 3, 2], [0, 1, 4]]
    data.set_epoch(3)
    assert inner.epoch == 3 and data.fetches_batches


# ------------------------------------------------------------------- dataset
def test_dataset_batch_is_the_distinct_samples_and_remapped_triplets():
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    idx = _indices(2)
    data = TripletDataset(idx, X)
    assert len(data) == 15
    chosen = [3, 7, 7, 11]
    Xb, local = data[chosen]
    assert isinstance(Xb, torch.Tensor) and local.shape == (4, 3)
    assert len(Xb) == len(set(idx[chosen].ravel().tolist()))
    for t, loc in zip(chosen, local, strict=True):
        for role in range(3):
            np.testing.assert_array_equal(Xb[loc[role]].numpy(), X[idx[t, role]])
    X1, l1 = data[5]
    assert l1.shape == (1, 3)
    np.testing.assert_array_equal(X1[l1[0]].numpy(), X[idx[5]])


def test_dataset_from_rows_serves_each_triplets_rows():
    rows = np.random.default_rng(1).normal(size=(8, 3, 2, 3))
    data = TripletDataset.from_rows(rows)
    Xb, local = data[[6, 1]]
    assert Xb.shape == (6, 2, 3)
    for t, loc in zip([6, 1], local, strict=True):
        np.testing.assert_array_equal(Xb[loc].numpy(), rows[t])


def test_dataset_refuses_out_of_range_triplets():
    with pytest.raises(ValueError, match="out of range for 5 samples"):
        TripletDataset([[0, 1, 5]], np.zeros((5, 2)))


class _Files:
    """A SampleSource that is not an array (like image files on disk)."""

    def __init__(self, n):
        self.n, self.taken = n, []

    def __len__(self):
        return self.n

    def take(self, ids):
        self.taken.append(list(ids))
        return np.stack([np.full(2, i, dtype=np.float32) for i in ids])


def test_any_sample_source_is_read_with_one_take_per_batch():
    files = _Files(10)
    data = TripletDataset([[0, 1, 2], [2, 1, 9], [4, 5, 6]], files)
    loader = DataLoader(data, sampler=TripletBatchSampler(3, 2, shuffle=False), batch_size=None)
    batches = list(loader)
    assert files.taken == [[0, 1, 2, 9], [4, 5, 6]]
    Xb, local = batches[0]
    assert Xb[local][:, :, 0].tolist() == [[0, 1, 2], [2, 1, 9]]


def test_default_collation_uses_getitems_and_collate_triplets():
    X = np.arange(30.0).reshape(10, 3)
    data = TripletDataset(_indices(3, n_samples=10, n=6), X)
    loader = DataLoader(data, batch_size=4, collate_fn=collate_triplets)
    Xb, local = next(iter(loader))
    want_X, want_local = data[[0, 1, 2, 3]]
    assert torch.equal(Xb, want_X) and torch.equal(local, want_local)
    # Items fetched one at a time are concatenated with offset indices.
    Xc, lc = collate_triplets([data[0], data[1]])
    assert torch.equal(Xc[lc], torch.stack([Xc[lc[0]], Xc[lc[1]]]))
    np.testing.assert_array_equal(Xc[lc[1]].numpy(), X[data.triplets[1]])


def test_sample_sources():
    assert isinstance(as_sample_source(np.zeros((3, 2))), ArraySamples)
    assert isinstance(as_sample_source([[1, 2], [3, 4]]), ArraySamples)
    files = _Files(3)
    assert as_sample_source(files) is files
    with pytest.raises(TypeError, match="__len__ and take"):
        as_sample_source(object())


# ------------------------------------------------------------------- sampler
def test_batch_sampler_covers_every_triplet_once_per_epoch_reproducibly():
    sampler = TripletBatchSampler(23, batch_size=5, random_state=4)
    first, second = list(sampler), list(sampler)
    assert len(sampler) == 5 == len(first)
    for epoch in (first, second):
        assert sorted(i for b in epoch for i in b) == list(range(23))
    assert first != second
    assert list(TripletBatchSampler(23, batch_size=5, random_state=4)) == first
    assert list(TripletBatchSampler(23, 5, random_state=4, epoch=1)) == second
    assert list(TripletBatchSampler(4, 3, shuffle=False)) == [[0, 1, 2], [3]]
    with pytest.raises(ValueError, match="batch_size=0 must be at least 1"):
        TripletBatchSampler(4, 0)


def test_triplet_core_and_inputs_import_neither_sklearn_nor_skorch():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "sktriplet"
    files = [*sorted((root / "triplets").glob("*.py")), root / "inputs" / "triplet_batches.py"]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in {"sklearn", "skorch"}, (path, name)
