"""Input of triplet mode: samples validated like X, rows merged, score inputs."""

from __future__ import annotations

import numpy as np
import pytest

from sktriplet import TripletEmbedder
from sktriplet.inputs.triplet_validation import (
    take_samples,
    triplet_score_input,
    validate_fit_triplets,
)


def test_index_triplets_keep_every_sample_and_the_samples_spec():
    S = np.arange(24, dtype=np.float64).reshape(6, 2, 2)  # images, (N, H, W)
    idx = np.array([[0, 1, 2], [5, 4, 3]])
    X, out, spec = validate_fit_triplets(TripletEmbedder(), idx, None, S)
    assert X.shape == (6, 1, 2, 2) and X.dtype == np.float32
    assert spec.kind == "images" and spec.sample_shape == (1, 2, 2)
    np.testing.assert_array_equal(out, idx)


def test_samples_are_checked_like_x_and_named_in_the_error():
    S = np.ones((6, 3))
    S[4, 1] = np.nan
    with pytest.raises(ValueError, match=r"samples \(the samples the triplets are made of\).*NaN"):
        validate_fit_triplets(TripletEmbedder(), [[0, 1, 2]], None, S)


def test_triplets_of_file_paths_must_be_index_triplets():
    with pytest.raises(ValueError, match="samples=paths"):
        validate_fit_triplets(TripletEmbedder(), [["a.png", "b.png", "c.png"]], None, None)


def test_take_samples_by_position_from_any_container():
    pd = pytest.importorskip("pandas")
    ids = np.array([2, 0])
    frame = pd.DataFrame({"a": [1, 2, 3]}, index=[10, 11, 12])
    assert take_samples(frame, ids)["a"].tolist() == [3, 1]
    assert take_samples(pd.Series(["x", "y", "z"]), ids).tolist() == ["z", "x"]
    assert take_samples(np.array([5, 6, 7]), ids).tolist() == [7, 5]


def test_score_input_embeds_each_touched_sample_once():
    S = np.arange(20.0).reshape(10, 2)
    idx = np.array([[7, 3, 9], [3, 7, 1]])
    X, local = triplet_score_input(idx, None, S)
    np.testing.assert_array_equal(X, S[[1, 3, 7, 9]])
    np.testing.assert_array_equal(X[local], S[idx])
    rows, local = triplet_score_input(S[idx], None, None)
    np.testing.assert_array_equal(rows[local], S[idx])
