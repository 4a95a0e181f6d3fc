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


# ------------------------------------------- verbose="auto": progress where someone watches
# Issue 31, item 4: long fits were silent by default. "auto" shows progress in a
# terminal or a notebook and stays quiet inside model selection, in workers and
# when the output is not a terminal.
def _terminal(monkeypatch):
    """Standard output and standard error are terminals (as far as isatty says).

    Called in the test itself: capsys gives the test other streams than its fixtures.
    """
    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)


def _auto(data):
    X, y = data
    return TripletEmbedder(max_epochs=2, n_components=4, batch_size=32, random_state=0)


def test_auto_is_the_default_and_shows_progress_in_a_terminal(capsys, data, monkeypatch):
    _terminal(monkeypatch)
    est = _auto(data)
    assert est.verbose == "auto"
    est.fit(*data)
    out, _ = capsys.readouterr()
    assert est.verbose_ == 1
    assert "train_loss" in out and len(out.strip().splitlines()) == 4  # header, rule, 2 epochs


def test_auto_is_quiet_when_the_output_is_not_a_terminal(capsys, data):
    est = _auto(data).fit(*data)
    assert est.verbose_ == 0
    assert capsys.readouterr() == ("", "")


def test_auto_shows_progress_in_a_notebook(capsys, data, monkeypatch):
    import sys
    import types

    class ZMQInteractiveShell:  # what a Jupyter kernel runs
        pass

    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: ZMQInteractiveShell()
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    est = _auto(data).fit(*data)
    assert est.verbose_ == 1 and "train_loss" in capsys.readouterr().out


@pytest.mark.parametrize("search", ["grid", "cross_validate"])
def test_auto_is_quiet_inside_model_selection_even_in_a_terminal(
    capsys, data, monkeypatch, search
):
    _terminal(monkeypatch)
    from sklearn.model_selection import GridSearchCV, cross_validate

    X, y = data
    if search == "grid":  # n_jobs=1: no worker process, the folds and the refit run here
        grid = GridSearchCV(_auto(data), {"margin": [0.2, 0.5]}, cv=2, n_jobs=1).fit(X, y)
        fitted = [grid.best_estimator_]
    else:
        fitted = cross_validate(_auto(data), X, y, cv=2, return_estimator=True)["estimator"]
    assert [e.verbose_ for e in fitted] == [0] * len(fitted)
    assert capsys.readouterr() == ("", "")


def test_auto_is_quiet_in_a_worker_process(capsys, data, monkeypatch):
    _terminal(monkeypatch)
    import multiprocessing

    monkeypatch.setattr(multiprocessing, "parent_process", lambda: object())  # as in loky
    est = _auto(data).fit(*data)
    assert est.verbose_ == 0 and capsys.readouterr() == ("", "")


def test_auto_is_quiet_when_only_stdout_is_a_terminal(capsys, data, monkeypatch):
    import sys

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)  # 2> log.txt
    est = _auto(data).fit(*data)
    assert est.verbose_ == 0 and capsys.readouterr() == ("", "")


def test_auto_is_quiet_in_another_thread(capsys, data, monkeypatch):
    # joblib's threading backend, a thread pool: tables of parallel fits would interleave
    import threading

    _terminal(monkeypatch)
    fitted = []
    thread = threading.Thread(target=lambda: fitted.append(_auto(data).fit(*data)))
    thread.start()
    thread.join()
    assert fitted[0].verbose_ == 0 and capsys.readouterr() == ("", "")


def test_loky_workers_are_worker_processes():
    # What the worker test above patches: joblib's default backend sets it.
    from joblib import Parallel, delayed

    seen = Parallel(n_jobs=2)(
        delayed(lambda: __import__("multiprocessing").parent_process() is not None)()
        for _ in range(2)
    )
    assert seen == [True, True]


def test_explicit_verbose_is_kept_and_warm_start_resolves_again(capsys, data, monkeypatch):
    _terminal(monkeypatch)
    est = _auto(data).set_params(verbose=0).fit(*data)
    assert est.verbose_ == 0 and capsys.readouterr() == ("", "")
    est.set_params(verbose="auto", warm_start=True).fit(*data)
    assert est.verbose_ == 1 and "train_loss" in capsys.readouterr().out


def _backbone_fit(verbose):
    import torch
    from torch import nn

    from sktriplet.networks import BackboneEmbedder

    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(24, 3, 8, 8), dtype=np.uint8)
    torch.manual_seed(0)
    return TripletEmbedder(
        module=BackboneEmbedder,
        module__backbone=nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()),
        module__freeze=True,
        max_epochs=1,
        batch_size=8,
        samples_per_class=2,
        random_state=0,
        verbose=verbose,
    ).fit(X, np.repeat(np.arange(6), 4))


@pytest.mark.filterwarnings("ignore::UserWarning")  # random pixels: nothing to learn
def test_caching_a_frozen_backbones_features_shows_a_bar(capsys, monkeypatch):
    _terminal(monkeypatch)
    pytest.importorskip("tqdm")
    _backbone_fit("auto")
    _, err = capsys.readouterr()
    assert "caching features" in err and "0/3" in err  # 24 samples in batches of 8
    _backbone_fit(1)
    assert "caching features" in capsys.readouterr().err
    _backbone_fit(0)
    assert capsys.readouterr() == ("", "")
