import builtins
import importlib.metadata
import json
import os
import runpy
import sys

import numpy as np
import pandas as pd
import pytest

import sktriplet
from sktriplet.cli import main
from sktriplet.evaluation.metrics import retrieval_scores

try:
    from PIL import Image
except ImportError:  # image files need Pillow; .npy, .npz and tables do not
    Image = None

needs_pillow = pytest.mark.skipif(Image is None, reason="Pillow is not installed")

FAST = ["--max-epochs", "2", "--n-components", "8", "--batch-size", "32", "--verbose", "0"]


@pytest.fixture(scope="module")
def digit_images():
    from sktriplet.datasets import load_digit_images

    X, y = load_digit_images()
    keep = np.flatnonzero(y < 4)[:80]
    return X[keep], y[keep]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory, digit_images):
    """digits 0-3 as 8x8 PNGs, one sub-folder per class."""
    root = tmp_path_factory.mktemp("images")
    X, y = digit_images
    for i, (img, label) in enumerate(zip(X, y, strict=True)):
        folder = root / f"digit{label}"
        folder.mkdir(exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def digits_csv(tmp_path_factory, digits):
    X, y = digits
    df = pd.DataFrame(X[:200], columns=[f"px{i}" for i in range(64)])
    df.insert(10, "digit", y[:200])
    path = tmp_path_factory.mktemp("csv") / "digits.csv"
    df.to_csv(path, index=False)
    return path, df


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_user_error(code, err, *fragments):
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sktriplet ")
    for fragment in fragments:
        assert fragment in lines[0]


@needs_pillow
def test_image_folder_fit_embed_and_reload(tmp_path, capsys, image_folder, digit_images):
    model = tmp_path / "digits.sktriplet"
    lazy = ["--image-size", "8", "--workers", "0"]
    code, _, err = _run(capsys, "fit", image_folder, "-o", model, *FAST, *lazy)
    assert code == 0, err
    est = sktriplet.load(model)
    assert list(est.classes_) == ["digit0", "digit1", "digit2", "digit3"]
    assert est.input_spec_.kind == "paths"
    assert est.input_shape_ == (1, 8, 8)  # grey files read grey, at --image-size

    out = tmp_path / "Z.npy"
    code, _, err = _run(capsys, "embed", model, image_folder, "-o", out, "--workers", "0")
    assert code == 0, err
    Z = np.load(out)
    # files are read class folder by class folder, in name order
    X, y = digit_images
    order = np.lexsort((np.arange(len(y)), y))
    paths = [str(image_folder / f"digit{y[i]}" / f"{i:03d}.png") for i in order]
    assert (tmp_path / "Z.paths.txt").read_text().splitlines() == paths
    np.testing.assert_array_equal(Z, est.transform(paths))
    assert Z.shape == (len(X), 8)

    table = tmp_path / "Z.csv"
    assert main(["embed", str(model), str(image_folder), "-o", str(table)]) == 0
    df = pd.read_csv(table)
    assert list(df.columns) == ["path"] + [f"tripletembedder{i}" for i in range(8)] + ["label"]
    assert df["path"].tolist() == paths
    assert df["label"].tolist() == [f"digit{y[i]}" for i in order]
    np.testing.assert_allclose(df.iloc[:, 1:9].to_numpy(), Z, rtol=1e-6, atol=1e-7)


def test_csv_fit_evaluate_matches_python(tmp_path, capsys, digits_csv):
    path, df = digits_csv
    model = tmp_path / "m.sktriplet"
    code, _, err = _run(capsys, "fit", path, "--label", "digit", "-o", model, *FAST)
    assert code == 0, err
    est = sktriplet.load(model)
    assert list(est.feature_names_in_) == [c for c in df.columns if c != "digit"]

    scores_path = tmp_path / "scores.json"
    code, out, err = _run(
        capsys,
        "evaluate",
        model,
        path,
        "--label",
        "digit",
        "--k",
        "1",
        "5",
        "--output",
        scores_path,
    )
    assert code == 0, err
    features = df.drop(columns=["digit"])
    expected = retrieval_scores(est.transform(features), df["digit"].to_numpy(), k=[1, 5])
    written = json.loads(scores_path.read_text())
    assert written == pytest.approx(expected)
    assert out.splitlines()[0].split() == ["metric", "value"]
    assert f"map_at_r {expected['map_at_r']:.4f}" in " ".join(out.split())

    # csv metrics and a separate gallery
    csv_scores = tmp_path / "scores.csv"
    code, _, err = _run(
        capsys,
        "evaluate",
        model,
        path,
        "--label",
        "digit",
        "--gallery",
        path,
        "--k",
        "3",
        "--output",
        csv_scores,
    )
    assert code == 0, err
    table = pd.read_csv(csv_scores).set_index("metric")["value"]
    Z = est.transform(features)
    y = df["digit"].to_numpy()
    ref = retrieval_scores(Z, y, k=3, gallery=Z, gallery_labels=y)
    assert table["precision_at_3"] == pytest.approx(ref["precision_at_3"])
    assert table["n_queries"] == 200


def test_npz_with_renamed_keys_and_verbose_table(tmp_path, capsys, digits):
    X, y = digits
    data = tmp_path / "d.npz"
    np.savez(data, features=X[:160], target=y[:160])
    model = tmp_path / "m.sktriplet"
    args = ["fit", data, "--x-key", "features", "--y-key", "target", "-o", model]
    code, out, err = _run(capsys, *args, *FAST[:-2], "--verbose", "1")
    assert code == 0, err
    assert "train_loss" in out and "epoch" in out
    assert f"saved the model to {model}" in err
    est = sktriplet.load(model)
    out_path = tmp_path / "Z.npy"
    assert main(["embed", str(model), str(data), "--x-key", "features", "-o", str(out_path)]) == 0
    np.testing.assert_array_equal(np.load(out_path), est.transform(X[:160]))


def _fit_saved(tmp_path, capsys, digits, *flags):
    """``sktriplet fit`` on 160 digits with extra flags; the saved estimator."""
    X, y = digits
    data = tmp_path / "d.npz"
    np.savez(data, X=X[:160], y=y[:160])
    model = tmp_path / "m.sktriplet"
    code, _, err = _run(capsys, "fit", data, "-o", model, *flags, *FAST)
    assert code == 0, err
    return sktriplet.load(model)


@pytest.mark.parametrize(("flag", "expected"), [("global", "global"), ("none", None)])
def test_scaling_option_reaches_the_estimator(tmp_path, capsys, digits, flag, expected):
    X, y = digits
    est = _fit_saved(tmp_path, capsys, digits, "--scaling", flag)
    assert est.scaling == expected
    want = sktriplet.TripletEmbedder(**{**est.get_params(), "scaling": expected}).fit(
        X[:160], y[:160]
    )
    np.testing.assert_array_equal(est.transform(X[:160]), want.transform(X[:160]))


def test_criterion_and_memory_options_reach_the_estimator(tmp_path, capsys, digits):
    X, y = digits
    est = _fit_saved(tmp_path, capsys, digits, "--criterion", "contrastive", "--memory-size", "64")
    assert est.criterion == "contrastive" and est.memory_size == 64
    assert int(est.net_.criterion_.memory_filled) == 64
    want = sktriplet.TripletEmbedder(**est.get_params()).fit(X[:160], y[:160])
    np.testing.assert_array_equal(est.transform(X[:160]), want.transform(X[:160]))


def test_parquet_round_trip(tmp_path, capsys, digits_csv):
    pytest.importorskip("pyarrow")
    _, df = digits_csv
    data = tmp_path / "d.parquet"
    df.to_parquet(data)
    model = tmp_path / "m.sktriplet"
    assert main(["fit", str(data), "--label", "digit", "-o", str(model), *FAST]) == 0
    out = tmp_path / "Z.parquet"
    assert main(["embed", str(model), str(data), "--label", "digit", "-o", str(out)]) == 0
    Z = pd.read_parquet(out)
    est = sktriplet.load(model)
    expected = est.transform(df.drop(columns=["digit"]))
    np.testing.assert_array_equal(Z.filter(like="tripletembedder").to_numpy(), expected)
    np.testing.assert_array_equal(Z["label"], df["digit"])


def test_npy_image_files_and_unlabelled_folder(tmp_path, capsys, digit_images):
    X, y = digit_images
    labelled = tmp_path / "labelled"
    flat = tmp_path / "flat"
    flat.mkdir()
    for i, (img, label) in enumerate(zip(X[:40], y[:40], strict=True)):
        (labelled / str(label)).mkdir(parents=True, exist_ok=True)
        np.save(labelled / str(label) / f"{i:02d}.npy", img)
        np.save(flat / f"{i:02d}.npy", img)
    model = tmp_path / "m.sktriplet"
    assert main(["fit", str(labelled), "-o", str(model), *FAST]) == 0
    out = tmp_path / "Z.csv"
    code, _, err = _run(capsys, "embed", model, flat, "-o", out)
    assert code == 0, err
    df = pd.read_csv(out)
    assert "label" not in df.columns and len(df) == 40
    np.testing.assert_allclose(
        df.filter(like="tripletembedder").to_numpy(),
        sktriplet.load(model).transform(X[:40]),
        rtol=1e-6,
        atol=1e-7,
    )
    # an unlabelled folder cannot be evaluated
    code, _, err = _run(capsys, "evaluate", model, flat)
    _assert_user_error(code, err, "needs labels", "sub-folder per class")


@needs_pillow
def test_user_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch, digits_csv):
    monkeypatch.chdir(tmp_path)
    path, _ = digits_csv
    model = tmp_path / "m.sktriplet"
    code, _, err = _run(capsys, "fit", tmp_path / "nope.csv", "-o", model)
    _assert_user_error(code, err, "no such file or folder")
    bad = tmp_path / "data.txt"
    bad.write_text("1,2\n")
    code, _, err = _run(capsys, "fit", bad, "-o", model)
    _assert_user_error(code, err, "unknown data format '.txt'")
    code, _, err = _run(capsys, "fit", path, "-o", model, *FAST)  # label column is 'digit'
    _assert_user_error(code, err, "needs labels", "--label")
    code, _, err = _run(capsys, "fit", path, "-o", tmp_path / "m.pkl")
    _assert_user_error(code, err, "model file format '.pkl'")
    text = tmp_path / "text.csv"
    pd.DataFrame({"a": [1.0, 2.0], "kind": ["x", "y"], "label": [0, 1]}).to_csv(text, index=False)
    code, _, err = _run(capsys, "fit", text, "-o", model)
    _assert_user_error(code, err, "['kind'] are not numeric")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    code, _, err = _run(capsys, "fit", broken, "-o", model)
    _assert_user_error(code, err, "not a readable .npz")
    fake_model = tmp_path / "fake.sktriplet"
    fake_model.write_bytes(b"garbage")
    code, _, err = _run(capsys, "embed", fake_model, path, "-o", tmp_path / "Z.npy")
    _assert_user_error(code, err)
    # a model fitted on a csv: the label column must be named again, columns may move
    csv_model = tmp_path / "csv.sktriplet"
    assert main(["fit", str(path), "--label", "digit", "-o", str(csv_model), *FAST]) == 0
    code, _, err = _run(capsys, "embed", csv_model, path, "-o", tmp_path / "Z.npy")
    _assert_user_error(code, err, "['digit'] were not features", "--label")
    shuffled = tmp_path / "shuffled.csv"
    frame = pd.read_csv(path)
    frame[frame.columns[::-1]].to_csv(shuffled, index=False)
    code, _, err = _run(capsys, "embed", csv_model, shuffled, "--label", "digit", "-o", "Z.npy")
    assert code == 0, err
    np.testing.assert_array_equal(
        np.load("Z.npy"), sktriplet.load(csv_model).transform(frame.drop(columns=["digit"]))
    )
    code, _, err = _run(capsys, "embed", tmp_path / "none.sktriplet", path, "-o", "Z.npy")
    _assert_user_error(code, err, "no such model file")
    code, _, err = _run(capsys, "fit", path, "-o", tmp_path / "missing" / "m.sktriplet")
    _assert_user_error(code, err, "does not exist")
    # .npy arrays of different shapes (image files may differ in size)
    odd = tmp_path / "odd"
    for name, size in (("a", 8), ("b", 9)):
        (odd / name).mkdir(parents=True)
        np.save(odd / name / "0.npy", np.zeros((size, size), dtype=np.uint8))
    code, _, err = _run(capsys, "fit", odd, "-o", model)
    _assert_user_error(code, err, ".npy images differ in shape", "as image files")
    # training errors (one class) come out the same way
    one = tmp_path / "one.npz"
    np.savez(one, X=np.zeros((4, 3)), y=np.zeros(4))
    code, _, err = _run(capsys, "fit", one, "-o", model, *FAST)
    _assert_user_error(code, err, "at least 2 classes")
    # argparse's own errors also exit 2
    with pytest.raises(SystemExit) as exc:
        main(["fit", str(path), "-o", str(model), "--mining", "easy"])
    assert exc.value.code == 2


def test_missing_pyarrow_is_explained(tmp_path, capsys, monkeypatch):
    # (Pillow is a runtime dependency: image folders need nothing optional.)
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pyarrow" or name.startswith("pyarrow."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    model = tmp_path / "m.sktriplet"
    pq = tmp_path / "d.parquet"
    pq.write_bytes(b"PAR1")
    code, _, err = _run(capsys, "fit", pq, "-o", model)
    _assert_user_error(code, err, "needs pyarrow", "pip install pyarrow")


def test_help_reads_like_a_manual(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for fragment in (
        "usage: sktriplet fit",
        "Train a TripletEmbedder on DATA",
        "--margin M",
        "auto: 0.2 (labels)",
        "--samples-per-class K",
        "data formats (DATA):",
        "examples:",
        "exit status:",
    ):
        assert fragment in text
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(cmd in text for cmd in ("fit ", "embed ", "evaluate "))


def test_python_dash_m_runs_the_command(monkeypatch, capsys):
    argv = ["sktriplet", "embed", "no.sktriplet", "no.csv", "-o", "Z.npy"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("sktriplet", run_name="__main__")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "sktriplet embed: error: no.sktriplet: no such model file."


def test_console_script_entry_point():
    scripts = importlib.metadata.entry_points(group="console_scripts")
    (entry,) = [e for e in scripts if e.name == "sktriplet"]
    assert entry.value == "sktriplet.cli:main"
    assert entry.load() is main


@pytest.mark.parametrize(("flag", "expected"), [("auto", "auto"), ("0.0005", 5e-4)])
def test_lr_option_reaches_the_estimator(tmp_path, capsys, digits, flag, expected):
    est = _fit_saved(tmp_path, capsys, digits, "--lr", flag)
    assert est.lr == expected
    assert est.net_.lr == (1e-3 if expected == "auto" else expected)


@pytest.mark.parametrize("flag", ["fast", "0", "-1"])
def test_bad_lr_option_is_a_usage_error(tmp_path, capsys, digits, flag):
    X, y = digits
    data = tmp_path / "d.npz"
    np.savez(data, X=X[:160], y=y[:160])
    with pytest.raises(SystemExit) as exc:
        main(["fit", str(data), "-o", str(tmp_path / "m"), "--lr", flag])
    assert exc.value.code == 2
    assert "--lr" in capsys.readouterr().err


def test_a_missing_parquet_writer_is_reported_before_any_work(tmp_path, capsys, monkeypatch):
    from sktriplet.cli import commands

    data = tmp_path / "d.npz"
    np.savez(data, X=np.zeros((4, 3)), y=np.array([0, 0, 1, 1]))
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    worked = []
    monkeypatch.setattr(commands, "load_model", lambda *a: worked.append(a))
    for out in ("x.parquet", "x.pq"):
        code, _, err = _run(capsys, "embed", tmp_path / "m.sktriplet", data, "-o", tmp_path / out)
        _assert_user_error(code, err, f"{out}: writing parquet needs pyarrow", "use .csv")
    assert worked == []  # refused before loading the model or embedding anything


@needs_pillow
def test_folders_of_other_modes_and_sizes_are_read_as_the_model_reads(
    tmp_path, capsys, digit_images
):
    # Image files are decoded to the model's channels and size: a grey folder
    # embeds with a colour model, large images with a small one. Only an
    # explicit --color that contradicts the model is refused, naming the fix.
    X, y = digit_images
    rgb, grey, big = tmp_path / "rgb", tmp_path / "grey", tmp_path / "big"
    for i, (img, label) in enumerate(zip(X[:40], y[:40], strict=True)):
        for root, array in (
            (rgb, np.stack([img, img // 2, 255 - img], axis=-1)),
            (grey, img),
            (big, np.kron(img, np.ones((2, 2), dtype=np.uint8))),
        ):
            (root / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / str(label) / f"{i}.png")
    rgb_model, grey_model = tmp_path / "rgb.sktriplet", tmp_path / "grey.sktriplet"
    assert main(["fit", str(rgb), "-o", str(rgb_model), *FAST]) == 0
    assert main(["fit", str(grey), "-o", str(grey_model), *FAST]) == 0
    out = tmp_path / "Z.npy"
    for model, folder in ((rgb_model, grey), (grey_model, rgb), (grey_model, big)):
        code, _, err = _run(capsys, "embed", model, folder, "-o", out)
        assert code == 0, err
        assert np.load(out).shape == (40, 8)
    code, _, err = _run(capsys, "embed", rgb_model, grey, "--color", "gray", "-o", out)
    _assert_user_error(code, err, "--color rgb")


# ------------------------------------------------- image folders, lazily
class _Spec:
    kind = "paths"
    channels = 3


class FakeFileModel:
    """Stands in for a model fitted on files: embeds a path by its file name only."""

    input_spec_ = _Spec()

    def __init__(self):
        self.calls = []
        self.params = {}

    @staticmethod
    def vector(path):
        name = os.path.basename(path)
        return np.array([len(name), sum(map(ord, name)) % 97, name.count("1")], np.float32)

    def transform(self, X):
        assert isinstance(X, np.ndarray) and X.dtype == object  # paths, never pixels
        self.calls.append(len(X))
        return np.stack([self.vector(p) for p in X])

    def get_feature_names_out(self):
        return np.array([f"tripletembedder{i}" for i in range(3)], dtype=object)

    def set_params(self, **params):
        self.params.update(params)
        return self


def _photo_folder(root, classes=("cat", "dog"), per_class=5):
    """Small JPEG/PNG files of different sizes and modes in root/<class>/."""
    modes = ["RGB", "L", "RGBA", "P", "CMYK"]
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            mode = modes[(i + c) % len(modes)]
            ext = "jpg" if mode in ("RGB", "L", "CMYK") else "png"
            Image.new(mode, (9 + 3 * i, 7 + 2 * c)).save(root / name / f"{name}{i}.{ext}")
    return root


@pytest.fixture
def fake_model(monkeypatch):
    model = FakeFileModel()
    monkeypatch.setattr("sktriplet.cli.commands.load_model", lambda path, device: model)
    return model


@needs_pillow
@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".npy"])
def test_embed_folder_writes_chunk_by_chunk_with_paths(tmp_path, capsys, fake_model, suffix):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    root = _photo_folder(tmp_path / "photos")
    (root / "cat" / "notes.txt").write_text("not an image")
    out = tmp_path / f"Z{suffix}"
    code, _, err = _run(capsys, "embed", "m.sktriplet", root, "-o", out, "--chunk-size", "4")
    assert code == 0, err
    expected_paths = [
        str(root / c / f"{c}{i}.{ext}")
        for c in ("cat", "dog")
        for i, ext in sorted(
            (
                (
                    i,
                    "jpg"
                    if ["RGB", "L", "RGBA", "P", "CMYK"][(i + (c == "dog")) % 5]
                    in ("RGB", "L", "CMYK")
                    else "png",
                )
                for i in range(5)
            ),
        )
    ]
    expected = np.stack([FakeFileModel.vector(p) for p in expected_paths])
    assert fake_model.calls == [4, 4, 2]
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(out), expected)
        assert (tmp_path / "Z.paths.txt").read_text().splitlines() == expected_paths
    else:
        df = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
        assert df["path"].tolist() == expected_paths
        assert df["label"].tolist() == ["cat"] * 5 + ["dog"] * 5
        np.testing.assert_array_equal(df.filter(like="tripletembedder").to_numpy(), expected)
    progress = [line for line in err.splitlines() if line.startswith("embedded")]
    assert [line.split()[1] for line in progress] == ["4/10", "8/10", "10/10"]
    assert "\x1b" not in err and "\r" not in err  # stderr is not a terminal here
    assert err.splitlines()[-1] == f"wrote 10 embeddings of width 3 to {out}"


def test_progress_rewrites_one_line_on_a_terminal():
    import io

    from sktriplet.cli.outputs import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    progress = Progress(2500, stream=stream)
    for done in (1024, 2048, 2500):
        progress.update(done)
    text = stream.getvalue()
    assert text.count("\r") == 3 and text.count("\n") == 1 and text.endswith("\n")
    assert "\x1b" not in text
    assert "embedded 2,500/2,500 files (100%)" in text.split("\r")[-1]


@needs_pillow
def test_embed_flat_folder_and_skip_bad_files(tmp_path, capsys, fake_model):
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        Image.new("RGB", (10 + i, 12)).save(flat / f"{i}.JPG")
    (flat / "3.png").write_bytes(b"\x89PNG but truncated")
    out = tmp_path / "Z.csv"
    code, _, err = _run(
        capsys, "embed", "m.sktriplet", flat, "-o", out, "--on-error", "skip", "--workers", "2"
    )
    assert code == 0, err
    df = pd.read_csv(out)
    assert list(df.columns) == ["path", "tripletembedder0", "tripletembedder1", "tripletembedder2"]
    assert df["path"].tolist() == [str(flat / f"{i}.JPG") for i in range(3)]
    (warning,) = [line for line in err.splitlines() if "warning" in line]  # one line
    assert warning.startswith(f"sktriplet embed: warning: left out of {flat}: ")
    assert warning.endswith(
        "1 image file that cannot be read ('3.png' "
        "(UnidentifiedImageError: cannot identify image file))"
    )
    assert fake_model.params == {"iterator_train__num_workers": 2, "iterator_valid__num_workers": 2}


@needs_pillow
def test_folder_errors_name_the_fix(tmp_path, capsys, fake_model, monkeypatch):
    root = _photo_folder(tmp_path / "photos", per_class=2)
    # a colour model and --color gray disagree
    code, _, err = _run(
        capsys, "embed", "m.sktriplet", root, "-o", tmp_path / "Z.npy", "--color", "gray"
    )
    _assert_user_error(code, err, "reads RGB (3 channels) images", "--color rgb")
    code, _, err = _run(
        capsys, "embed", "m.sktriplet", root, "-o", tmp_path / "Z.npy", "--color", "rgb"
    )
    assert code == 0, err
    # .npy arrays and image files in one folder
    np.save(root / "cat" / "array.npy", np.zeros((4, 4)))
    code, _, err = _run(capsys, "embed", "m.sktriplet", root, "-o", tmp_path / "Z.npy")
    _assert_user_error(code, err, "mixes .npy arrays", "keep one kind")
    # no images at all
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    code, _, err = _run(capsys, "embed", "m.sktriplet", empty, "-o", tmp_path / "Z.npy")
    _assert_user_error(code, err, "no images found", "one sub-folder per class")
    # --image-size is for image files
    data = tmp_path / "d.npz"
    np.savez(data, X=np.zeros((4, 3)), y=np.arange(4) % 2)
    code, _, err = _run(capsys, "fit", data, "-o", tmp_path / "m.sktriplet", "--image-size", "32")
    _assert_user_error(code, err, "--image-size applies to folders of image files")
    with pytest.raises(SystemExit):
        main(["fit", str(root), "-o", "m.sktriplet", "--image-size", "0x4"])
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


@needs_pillow
def test_parquet_output_checks_pyarrow_before_loading_the_model(tmp_path, capsys, monkeypatch):
    root = _photo_folder(tmp_path / "photos", per_class=1)
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    code, _, err = _run(
        capsys, "embed", tmp_path / "absent.sktriplet", root, "-o", tmp_path / "Z.parquet"
    )
    _assert_user_error(code, err, "writing parquet needs pyarrow", "use .csv (embeddings: or .npy)")
    assert list(tmp_path.iterdir()) == [root]


@pytest.mark.parametrize(("text", "size"), [("64", 64), ("32x48", (32, 48)), ("32,48", (32, 48))])
def test_image_size_option(text, size):
    from sktriplet.cli.options import image_file_params
    from sktriplet.cli.parser import build_parser

    args = build_parser().parse_args(
        [
            "fit",
            "photos",
            "-o",
            "m.sktriplet",
            "--image-size",
            text,
            "--color",
            "gray",
            "--workers",
            "0",
        ]
    )
    assert image_file_params(args) == {
        "channels": 1,
        "on_error": "raise",
        "image_size": size,
        "iterator_train__num_workers": 0,
        "iterator_valid__num_workers": 0,
    }


def _mixed_folder(root):
    """3 classes of PNG/JPEG files: RGB, L, RGBA, P, CMYK and 16-bit grey, sizes 11 to 60 px."""
    rng = np.random.default_rng(0)
    files = []
    for c in range(3):
        folder = root / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(6):
            h, w = (int(v) for v in rng.integers(11, 60, size=2))
            rgb = np.clip(rng.normal(80 * c + 20, 30, size=(h, w, 3)), 0, 255).astype(np.uint8)
            base = Image.fromarray(rgb)
            kind = i % 6
            if kind == 0:
                img, name = base, f"{i}.jpg"
            elif kind == 1:
                img, name = base.convert("L"), f"{i}.JPEG"
            elif kind == 2:
                img, name = base.convert("RGBA"), f"{i}.png"
            elif kind == 3:
                img, name = base.convert("P"), f"{i}.png"
            elif kind == 4:
                img, name = base.convert("CMYK"), f"{i}.jpg"
            else:
                grey16 = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
                img, name = Image.fromarray(grey16), f"{i}.png"
            img.save(folder / name)
            files.append((folder / name, img.mode))
    return files


@needs_pillow
def test_fit_embed_evaluate_a_mixed_size_mixed_mode_folder(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    root = tmp_path / "photos"
    files = _mixed_folder(root)
    assert {mode for _, mode in files} == {"RGB", "L", "RGBA", "P", "CMYK", "I;16"}
    assert {Image.open(p).mode for p, _ in files} >= {"RGBA", "P", "CMYK", "I;16"}
    model, out = tmp_path / "m.sktriplet", tmp_path / "Z.parquet"
    fit = [
        "--image-size",
        "16",
        "--max-epochs",
        "1",
        "--batch-size",
        "12",
        "--samples-per-class",
        "4",
        "--n-components",
        "4",
        "--workers",
        "0",
        "--verbose",
        "0",
    ]
    code, _, err = _run(capsys, "fit", root, "-o", model, *fit)
    assert code == 0, err
    est = sktriplet.load(model)
    assert est.input_spec_.kind == "paths" and est.input_shape_ == (3, 16, 16)

    code, _, err = _run(
        capsys, "embed", model, root, "-o", out, "--workers", "1", "--chunk-size", "7"
    )
    assert code == 0, err
    df = pd.read_parquet(out)
    # listed like sklearn's load_files: class folders by name, files by name
    paths = [str(p) for c in sorted(root.iterdir()) for p in sorted(c.iterdir())]
    assert df["path"].tolist() == paths
    assert df["label"].tolist() == [os.path.basename(os.path.dirname(p)) for p in paths]
    Z = df.filter(like="tripletembedder").to_numpy()
    assert Z.shape == (18, 4) and np.isfinite(Z).all()
    np.testing.assert_allclose(Z, est.transform(paths), rtol=1e-5, atol=1e-6)
    assert "embedded 18/18 files (100%)" in err

    code, out_text, err = _run(capsys, "evaluate", model, root, "--k", "1", "--workers", "0")
    assert code == 0, err
    expected = retrieval_scores(Z, df["label"].to_numpy(), k=[1])
    assert f"map_at_r {expected['map_at_r']:.4f}" in " ".join(out_text.split())


# ------------------------------------ flags that set estimator parameters
def _subcommand(name):
    import argparse

    from sktriplet.cli.parser import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices[name]


def _flag(command, flag):
    (action,) = [a for a in _subcommand(command)._actions if flag in a.option_strings]
    return action


def test_fit_without_flags_passes_the_estimators_defaults():
    # Reference: TripletEmbedder's own get_params(). The command line differs
    # in exactly two declared shell defaults: a fixed seed and a progress table.
    from sktriplet.cli.options import fit_params, image_file_params

    args = _subcommand("fit").parse_args(["d.npz", "-o", "m.sktriplet"])
    params = {**fit_params(args), **image_file_params(args)}
    defaults = sktriplet.TripletEmbedder().get_params()
    assert set(params) <= set(defaults)
    differ = {
        k: v for k, v in params.items() if v != defaults[k] or type(v) is not type(defaults[k])
    }
    assert differ == {"random_state": 0, "verbose": 1}


@pytest.mark.parametrize(
    ("command", "flag", "param", "cli_only"),
    [
        ("fit", "--mining", "mining", {"none"}),  # given triplets: not readable from a shell
        ("fit", "--criterion", "criterion", set()),
        ("fit", "--distance", "distance", set()),
        ("fit", "--scaling", "scaling", set()),
        ("fit", "--precision", "precision", set()),
        ("fit", "--on-error", "on_error", set()),
        ("embed", "--on-error", "on_error", set()),
        ("evaluate", "--distance", "distance", set()),
    ],
)
def test_choice_flags_offer_the_estimators_options(command, flag, param, cli_only):
    from sklearn.utils._param_validation import StrOptions

    constraints = sktriplet.TripletEmbedder._parameter_constraints[param]
    expected = {o for c in constraints if isinstance(c, StrOptions) for o in c.options}
    expected = expected - cli_only | ({"none"} if None in constraints else set())
    action = _flag(command, flag)
    assert set(action.choices) == expected
    assert len(action.choices) == len(expected)


def test_color_flag_spells_the_estimators_channels():
    from sktriplet.cli.options import image_file_params

    values = []
    for word in _flag("fit", "--color").choices:
        args = _subcommand("fit").parse_args(["d", "-o", "m", "--color", word])
        values.append(image_file_params(args)["channels"])
        sktriplet.TripletEmbedder(channels=values[-1])._validate_params()
    assert values == ["auto", 1, 3]
    assert _flag("fit", "--color").default == "auto" == sktriplet.TripletEmbedder().channels


@pytest.mark.parametrize(
    ("flag", "text", "param", "value"),
    [
        ("--max-epochs", "0", "max_epochs", 0),
        ("--max-epochs", "-1", "max_epochs", -1),
        ("--batch-size", "2", "batch_size", 2),
        ("--batch-size", "1", "batch_size", 1),
        ("--samples-per-class", "1", "samples_per_class", 1),
        ("--margin", "0", "margin", 0.0),
        ("--margin", "-0.1", "margin", -0.1),
        ("--n-components", "auto", "n_components", "auto"),
        ("--n-components", "0", "n_components", 0),
        ("--lr", "1e-3", "lr", 1e-3),
        ("--validation-fraction", "0.25", "validation_fraction", 0.25),
        ("--validation-fraction", "1", "validation_fraction", 1.0),
        ("--random-state", "-1", "random_state", -1),
        ("--scaling", "none", "scaling", None),
        ("--mining", "hard", "mining", "hard"),
        ("--criterion", "arcface", "criterion", "arcface"),
        ("--memory-size", "256", "memory_size", 256),
        ("--memory-size", "0", "memory_size", 0),
        ("--memory-size", "none", "memory_size", None),
        ("--memory-size", "-5", "memory_size", -5),
        ("--precision", "32", "precision", "32"),
        ("--precision", "bf16", "precision", "bf16"),
    ],
)
def test_fit_flags_accept_what_the_estimator_accepts(capsys, flag, text, param, value):
    # Reference: the estimator's own parameter validation.
    from sklearn.utils._param_validation import InvalidParameterError

    from sktriplet.cli.options import fit_params

    try:
        sktriplet.TripletEmbedder(**{param: value})._validate_params()
        valid = True
    except InvalidParameterError:
        valid = False
    parser = _subcommand("fit")
    if valid:
        assert fit_params(parser.parse_args(["d", "-o", "m", flag, text]))[param] == value
    else:
        with pytest.raises(SystemExit):
            parser.parse_args(["d", "-o", "m", flag, text])
        assert f"argument {flag}: must be" in capsys.readouterr().err


def test_flags_follow_a_changed_estimator(monkeypatch):
    # Defaults and choices are read from the estimator, not typed twice: a new
    # default or a newly registered option reaches the command line unchanged.
    from sklearn.utils._param_validation import StrOptions

    est = sktriplet.TripletEmbedder
    monkeypatch.setitem(est.__init__.__kwdefaults__, "margin", 0.35)
    monkeypatch.setitem(est.__init__.__kwdefaults__, "distance", "cosine")
    monkeypatch.setitem(
        est._parameter_constraints, "distance", [StrOptions({"cosine", "sqeuclidean", "l1"})]
    )
    assert _flag("fit", "--margin").default == 0.35
    distance = _flag("fit", "--distance")
    assert distance.default == "cosine" and distance.choices == ("cosine", "l1", "sqeuclidean")
