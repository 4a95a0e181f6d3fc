"""Fits that survive being killed: ``checkpoint_dir`` (issue 29).

A fit in a child process is killed with SIGKILL in the middle of an epoch
and in the middle of writing a checkpoint (``tests/checkpoint_child.py``);
a new fit pointed at the same directory resumes from the last completed
epoch, trains only the epochs left and gives bitwise the embeddings of an
uninterrupted fit in another process (one torch thread, CPU). In-process
tests cover the refusal of another fit's directory, a finished fit, the
atomic writer and the CLI flag.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from sktriplet import TripletEmbedder, load, save
from sktriplet.cli import main
from sktriplet.runtime.durable import write_atomically
from sktriplet.training.checkpoints import CheckpointMismatchError

CHILD = Path(__file__).with_name("checkpoint_child.py")
ROOT = Path(__file__).resolve().parents[1]
#: How long a child may take to reach the point where it is killed (a loaded machine).
PATIENCE_S = 600

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


def _env():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _child(route, mode, directory, out, marker):
    argv = [sys.executable, str(CHILD), route, mode, str(directory), str(out), str(marker)]
    return subprocess.Popen(argv, env=_env(), stderr=subprocess.PIPE, text=True)


def _fit(route, directory, out):
    proc = _child(route, "plain", directory, out, out.with_suffix(".never"))
    _, err = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 0, err
    return np.load(out), json.loads(Path(f"{out}.json").read_text())


def _fit_and_kill(route, mode, directory, tmp):
    marker = tmp / f"{mode}.stopped"
    proc = _child(route, mode, directory, tmp / "never.npy", marker)
    deadline = time.monotonic() + PATIENCE_S
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"the child ended before its stop: {proc.stderr.read()}")
        assert time.monotonic() < deadline, "the child never reached its stop"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _saved_epochs(directory):
    state = torch.load(directory / "stage-0.pt", map_location="cpu", weights_only=True)
    return state["epochs"], state["finished"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Embeddings of uninterrupted fits (no directory), per route."""
    tmp = tmp_path_factory.mktemp("reference")
    return {route: _fit(route, "none", tmp / f"{route}.npy")[0] for route in ("rows", "cached")}


@pytest.mark.parametrize("route", ["rows", "cached"])
def test_killed_in_an_epoch_resumes_to_the_uninterrupted_result(route, reference, tmp_path):
    directory = tmp_path / "checkpoints"
    _fit_and_kill(route, "kill-epoch", directory, tmp_path)
    assert _saved_epochs(directory) == (2, False)  # epoch 3 lost, nothing more

    Z, info = _fit(route, directory, tmp_path / "resumed.npy")
    assert info == {"trained": [3, 4], "history": 4}
    np.testing.assert_array_equal(Z, reference[route])


def test_killed_while_writing_a_checkpoint_resumes_from_the_one_before(reference, tmp_path):
    directory = tmp_path / "checkpoints"
    _fit_and_kill("rows", "kill-write", directory, tmp_path)
    # Epoch 2's state was half written to a temporary file: epoch 1's is intact.
    assert [p.name for p in directory.glob(".stage-0.pt.*.tmp")]
    assert _saved_epochs(directory) == (1, False)

    Z, info = _fit("rows", directory, tmp_path / "resumed.npy")
    assert info == {"trained": [2, 3, 4], "history": 4}
    np.testing.assert_array_equal(Z, reference["rows"])
    assert not list(directory.glob(".*.tmp"))
    assert _saved_epochs(directory) == (4, True)


# ------------------------------------------------------------- in process
FAST = dict(
    max_epochs=2,
    batch_size=32,
    samples_per_class=4,
    n_components=8,
    random_state=0,
    device="cpu",
    module__hidden_units=(16,),
)


@pytest.fixture(scope="module")
def rows(small_digits):
    X, y = small_digits
    return X[:120], y[:120]


def test_a_finished_fit_trains_nothing_and_returns_the_same_model(rows, tmp_path):
    X, y = rows
    first = TripletEmbedder(**FAST, checkpoint_dir=tmp_path).fit(X, y)
    again = TripletEmbedder(**FAST, checkpoint_dir=tmp_path)
    again.fit(X, y)
    plain = TripletEmbedder(**FAST).fit(X, y)
    np.testing.assert_array_equal(again.transform(X), first.transform(X))
    np.testing.assert_array_equal(again.transform(X), plain.transform(X))
    assert len(again.net_.history) == FAST["max_epochs"]


@pytest.mark.parametrize(
    "change, words",
    [
        ({"max_epochs": 3}, "max_epochs was 2 there and is 3 here"),
        ({"margin": 0.5}, "margin was"),
        ({"data": "labels"}, "the data differ"),
        ({"data": "rows"}, "the data differ (120 samples"),
    ],
)
def test_a_directory_of_another_fit_is_refused_naming_the_difference(rows, tmp_path, change, words):
    X, y = rows
    TripletEmbedder(**FAST, checkpoint_dir=tmp_path).fit(X, y)
    before = sorted(os.listdir(tmp_path))
    params = {**FAST, **{k: v for k, v in change.items() if k != "data"}}
    if change.get("data") == "labels":
        y = np.roll(y, 1)
    elif change.get("data") == "rows":
        X, y = X[:100], y[:100]
    est = TripletEmbedder(**params, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointMismatchError, match="another fit") as info:
        est.fit(X, y)
    assert words in str(info.value)
    assert "another directory, or delete" in str(info.value)  # the fix
    assert not hasattr(est, "net_")  # nothing half-fitted
    assert sorted(os.listdir(tmp_path)) == before


def test_verbose_and_device_do_not_change_the_fit(rows, tmp_path):
    X, y = rows
    TripletEmbedder(**FAST, checkpoint_dir=tmp_path).fit(X, y)
    TripletEmbedder(**{**FAST, "verbose": 0}, checkpoint_dir=str(tmp_path)).fit(X, y)


def test_an_unreadable_fit_file_is_an_error_with_the_fix(rows, tmp_path):
    X, y = rows
    (tmp_path / "fit.json").write_text("{ not json")
    with pytest.raises(ValueError, match="not a readable sktriplet checkpoint.*delete"):
        TripletEmbedder(**FAST, checkpoint_dir=tmp_path).fit(X, y)


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    path = tmp_path / "state.bin"
    write_atomically(path, b"old")

    def broken(f):
        f.write(b"new, half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, broken)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["state.bin"]


def test_cli_checkpoint_dir_resumes_the_same_command(tmp_path, capsys, small_digits):
    X, y = small_digits
    data = tmp_path / "digits.npz"
    np.savez(data, X=X[:120], y=y[:120])
    directory = tmp_path / "checkpoints"
    argv = ["fit", data, "--max-epochs", "2", "--n-components", "4", "--verbose", "0",
            "--checkpoint-dir", directory, "-o"]  # fmt: skip
    assert main([str(a) for a in [*argv, tmp_path / "a.sktriplet"]]) == 0
    assert (directory / "fit.json").exists() and _saved_epochs(directory) == (2, True)
    assert main([str(a) for a in [*argv, tmp_path / "b.sktriplet"]]) == 0
    a, b = load(tmp_path / "a.sktriplet"), load(tmp_path / "b.sktriplet")
    np.testing.assert_array_equal(a.transform(X[:50]), b.transform(X[:50]))

    code = main([str(a) for a in [*argv[:3], "3", *argv[4:], tmp_path / "c.sktriplet"]])
    err = capsys.readouterr().err
    assert code != 0 and "max_epochs was 2 there and is 3 here" in err


def test_a_warm_started_fit_checkpoints_its_continuation(rows, tmp_path):
    X, y = rows
    plain = TripletEmbedder(**FAST).fit(X, y)
    plain.set_params(warm_start=True, max_epochs=1).fit(X, y)
    first = TripletEmbedder(**FAST).fit(X, y)
    first.set_params(warm_start=True, max_epochs=1, checkpoint_dir=tmp_path / "more")
    first.fit(X, y)
    np.testing.assert_array_equal(first.transform(X), plain.transform(X))
    assert _saved_epochs(tmp_path / "more") == (1, True)
    saved = tmp_path / "m.sktriplet"
    save(first, saved)  # a path-like checkpoint_dir is kept as its string
    assert load(saved).checkpoint_dir == str(tmp_path / "more")


def test_skorch_early_stopping_finishes_the_fit(rows, tmp_path):
    from skorch.callbacks import EarlyStopping

    X, y = rows
    # train_loss never improves by 100 on the first epoch's: a stop after epoch 2.
    stop = EarlyStopping(monitor="train_loss", patience=1, threshold=100)
    params = {**FAST, "max_epochs": 5, "callbacks": [stop]}
    plain = TripletEmbedder(**params).fit(X, y)
    assert len(plain.net_.history) == 2
    TripletEmbedder(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert _saved_epochs(tmp_path) == (2, True)
    again = TripletEmbedder(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert len(again.net_.history) == 2
    np.testing.assert_array_equal(again.transform(X), plain.transform(X))


@pytest.mark.filterwarnings("ignore::sktriplet.training.callbacks.InputBeatsEmbeddingWarning")
def test_ctrl_c_then_resume_keeps_validation_and_schedule_state(rows, tmp_path, monkeypatch):
    from sktriplet.training.checkpoints import EpochCheckpoint

    X, y = rows
    params = {**FAST, "max_epochs": 4, "validation_fraction": 0.3, "module__dropout": 0.2}
    plain = TripletEmbedder(**params).fit(X, y)

    def interrupt(self, net, training=False, **kwargs):
        if training and len(net.history) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochCheckpoint, "on_batch_end", interrupt, raising=False)
    with pytest.warns(UserWarning, match="interrupted in epoch 3"):
        TripletEmbedder(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert _saved_epochs(tmp_path) == (2, False)
    monkeypatch.undo()
    resumed = TripletEmbedder(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert _saved_epochs(tmp_path) == (4, True)
    assert list(resumed.net_.history[:, "valid_map_at_r"]) == list(
        plain.net_.history[:, "valid_map_at_r"]
    )
    np.testing.assert_array_equal(resumed.transform(X), plain.transform(X))


def test_a_directory_in_use_by_a_running_fit_is_refused(rows, tmp_path):
    from sktriplet.training.checkpoints import CheckpointDirectory, CheckpointError

    X, y = rows
    with CheckpointDirectory(tmp_path, {"another": "fit"}):  # holds the lock
        with pytest.raises(CheckpointError, match="in use by another fit"):
            TripletEmbedder(**FAST, checkpoint_dir=tmp_path).fit(X, y)
    TripletEmbedder(**FAST, checkpoint_dir=tmp_path).fit(X, y)  # free again


@pytest.mark.filterwarnings("ignore::sktriplet.training.callbacks.InputBeatsEmbeddingWarning")
def test_ctrl_c_in_the_first_epoch_resumes_from_the_start(rows, tmp_path, monkeypatch):
    from sktriplet.training.checkpoints import EpochCheckpoint

    X, y = rows
    params = {**FAST, "validation_fraction": 0.3}
    plain = TripletEmbedder(**params).fit(X, y)

    def interrupt(self, net, training=False, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(EpochCheckpoint, "on_batch_end", interrupt, raising=False)
    with pytest.warns(UserWarning, match="interrupted in epoch 1"):
        TripletEmbedder(**params, checkpoint_dir=tmp_path).fit(X, y)
    assert not (tmp_path / "stage-0.pt").exists()  # no epoch completed: nothing to keep
    monkeypatch.undo()
    resumed = TripletEmbedder(**params, checkpoint_dir=tmp_path).fit(X, y)
    np.testing.assert_array_equal(resumed.transform(X), plain.transform(X))
