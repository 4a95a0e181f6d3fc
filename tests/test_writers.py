"""Embedding writers: chunked .npy / .parquet / .csv equal one write of the whole array."""

import builtins

import numpy as np
import pandas as pd
import pytest

from sktriplet.io.writers import open_embedding_writer, paths_sidecar

COLUMNS = ["e0", "e1", "e2"]


def _data(n=10, seed=0):
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, 3)).astype(np.float32)
    paths = [f"folder/class{i % 3}/img{i:02d}.jpg" for i in range(n)]
    labels = np.array([f"class{i % 3}" for i in range(n)])
    return Z, paths, labels


def _write(out, Z, paths, labels, chunk, **flags):
    with open_embedding_writer(out, len(Z), COLUMNS, **flags) as writer:
        for start in range(0, len(Z), chunk):
            stop = start + chunk
            writer.write(
                Z[start:stop],
                paths[start:stop] if flags.get("with_paths") else None,
                labels[start:stop] if flags.get("with_labels") else None,
            )


@pytest.mark.parametrize("chunk", [1, 3, 10])
def test_npy_chunks_equal_the_whole_array_and_sidecar_lists_paths(tmp_path, chunk):
    Z, paths, labels = _data()
    out = tmp_path / "Z.npy"
    _write(out, Z, paths, labels, chunk, with_paths=True)
    np.testing.assert_array_equal(np.load(out), Z)
    assert np.load(out).dtype == np.float32
    assert paths_sidecar(out).read_text(encoding="utf-8").splitlines() == paths
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Z.npy", "Z.paths.txt"]


def test_npy_without_paths_writes_no_sidecar(tmp_path):
    Z, paths, labels = _data(4)
    out = tmp_path / "Z.npy"
    _write(out, Z, paths, labels, 3)
    np.testing.assert_array_equal(np.load(out), Z)
    assert not paths_sidecar(out).exists()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("chunk", [1, 4, 10])
def test_tables_have_path_embedding_and_label_columns(tmp_path, suffix, chunk):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    Z, paths, labels = _data()
    out = tmp_path / f"Z{suffix}"
    _write(out, Z, paths, labels, chunk, with_paths=True, with_labels=True)
    df = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert list(df.columns) == ["path", *COLUMNS, "label"]
    assert df["path"].tolist() == paths
    assert df["label"].tolist() == labels.tolist()
    if suffix == ".parquet":
        np.testing.assert_array_equal(df[COLUMNS].to_numpy(), Z)
        assert (df[COLUMNS].dtypes == np.float32).all()
    else:
        np.testing.assert_allclose(df[COLUMNS].to_numpy(), Z, rtol=1e-6)


def test_parquet_has_one_row_group_per_chunk(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    Z, paths, labels = _data(10)
    out = tmp_path / "Z.parquet"
    _write(out, Z, paths, labels, 4, with_paths=True)
    meta = pq.ParquetFile(out).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [4, 4, 2]


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_no_rows(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    out = tmp_path / f"Z{suffix}"
    with open_embedding_writer(out, 0, COLUMNS, with_paths=True):
        pass
    if suffix == ".npy":
        assert np.load(out).shape == (0, 3)
    else:
        df = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert list(df.columns) == ["path", *COLUMNS] and len(df) == 0


@pytest.mark.parametrize("suffix", [".npy", ".csv", ".parquet"])
def test_an_error_leaves_no_file(tmp_path, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    Z, paths, _ = _data(6)
    out = tmp_path / f"Z{suffix}"
    with pytest.raises(RuntimeError, match="transform failed"):
        with open_embedding_writer(out, 6, COLUMNS, with_paths=True) as writer:
            writer.write(Z[:3], paths[:3])
            raise RuntimeError("transform failed")
    assert list(tmp_path.iterdir()) == []


def test_too_few_or_too_many_rows_and_bad_chunks(tmp_path):
    Z, paths, _ = _data(4)
    out = tmp_path / "Z.npy"
    with pytest.raises(ValueError, match="only 3 of 4 rows"):
        with open_embedding_writer(out, 4, COLUMNS) as writer:
            writer.write(Z[:3])
    assert list(tmp_path.iterdir()) == []
    with open_embedding_writer(out, 2, COLUMNS) as writer:
        with pytest.raises(ValueError, match="5 rows written but 2 announced"):
            writer.write(np.zeros((5, 3)))
        with pytest.raises(ValueError, match=r"shape \(n, 3\); got \(2, 4\)"):
            writer.write(np.zeros((2, 4)))
        writer.write(Z[:2])
    with open_embedding_writer(tmp_path / "P.npy", 2, COLUMNS, with_paths=True) as writer:
        with pytest.raises(ValueError, match="needs paths, one per row"):
            writer.write(Z[:2], paths[:1])
        with pytest.raises(ValueError, match="line break"):
            writer.write(Z[:2], ["a.jpg", "b\nc.jpg"])
        writer.write(Z[:2], paths[:2])


def test_unknown_suffix_and_missing_pyarrow(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"unknown embeddings format '\.h5'; use \.npy"):
        open_embedding_writer(tmp_path / "Z.h5", 1, COLUMNS)
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="writing parquet needs pyarrow: pip install pyarrow"):
        open_embedding_writer(tmp_path / "Z.parquet", 1, COLUMNS)
    assert list(tmp_path.iterdir()) == []
