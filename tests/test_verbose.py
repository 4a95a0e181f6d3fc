"""Progress output: silent at verbose=0, a table at 1, batch bars at 2."""

import importlib.util

import numpy as np
import pytest

from sktriplet import TripletEmbedder


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(96, 6)).astype(np.float32), np.repeat(np.arange(6), 16)


def _fit(verbose, data):
    X, y = data
    return TripletEmbedder(
        max_epochs=2, n_components=4, batch_size=32, random_state=0, verbose=verbose
    ).fit(X, y)


def test_verbose_0_is_silent(capsys, data):
    _fit(0, data)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_verbose_1_prints_one_row_per_epoch(capsys, data):
    est = _fit(1, data)
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    header = lines[0].split()
    assert header[0] == "epoch" and "train_loss" in header and "dur" in header
    assert "train_active" in header
    rows = [line.split() for line in lines[2:]]
    assert [r[0] for r in rows] == ["1", "2"]
    assert "it/s" not in err  # no progress bar
    loss_col = header.index("train_loss")
    first_loss = est.net_.history[0, "train_loss"]
    assert f"{first_loss:.4f}" in rows[0][loss_col]


def test_verbose_2_adds_a_progress_bar_over_batches(capsys, data):
    pytest.importorskip("tqdm")
    est = _fit(2, data)
    out, err = capsys.readouterr()
    assert "train_loss" in out
    # one bar per epoch, over 96 samples / batch_size 32 = 3 batches (above
    # the floor of MIN_BATCHES_PER_EPOCH = 2); the first epoch counts them (a
    # bar with no total), the second shows it
    assert "0it [" in err and err.count("| 0/3 [") == 1
    assert len(est.net_.history[-1, "batches"]) == 3


def test_verbose_2_without_tqdm_warns_and_falls_back(capsys, data, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tqdm" else real(name, *a)
    )
    with pytest.warns(UserWarning, match="needs tqdm"):
        _fit(2, data)
    out, err = capsys.readouterr()
    assert "train_loss" in out
    assert "0/3" not in err


def test_epoch_table_has_no_colour_codes_when_stdout_is_not_a_terminal(capsys, data):
    _fit(1, data)
    out, _ = capsys.readouterr()
    assert "train_loss" in out
    assert "\x1b[" not in out  # skorch's PrintLog would colour every column's best value


def test_epoch_table_is_coloured_on_a_terminal(capsys, monkeypatch):
    import sys

    from sktriplet.training.callbacks import TerminalPrintLog

    row = {"epoch": 1, "train_loss": 0.25, "train_loss_best": True, "dur": 0.5}
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    coloured = TerminalPrintLog().initialize().table(row)
    assert "\x1b[" in coloured
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    plain = TerminalPrintLog().initialize().table(row)
    assert "\x1b[" not in plain and "0.2500" in plain
    assert "\x1b[" in TerminalPrintLog(color=True).initialize().table(row)
    assert "\x1b[" not in TerminalPrintLog(sink=lambda s: None).initialize().table(row)
