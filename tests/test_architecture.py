"""The package's structure: the triplet core stays pure, no import cycles, 0.1.0 paths."""

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import sktriplet

PACKAGE = Path(sktriplet.__file__).parent
DATA = Path(__file__).parent / "data"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every sktriplet module a file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_triplet_core_imports_neither_sklearn_nor_skorch():
    # In a fresh interpreter: importing the core must not load them at all.
    code = (
        "import sys; import sktriplet.triplets.losses, sktriplet.triplets.mining, "
        "sktriplet.triplets.distances; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'skorch')))"
    )
    # Importing sktriplet.triplets runs sktriplet/__init__.py, which loads the
    # estimator; so check the source files' imports and a bare import by path.
    for name in ("distances", "mining", "losses"):
        imported = _imports(PACKAGE / "triplets" / f"{name}.py")
        assert not [m for m in imported if m.split(".")[0] in ("sklearn", "skorch")], name
        internal = [m for m in imported if m.startswith("sktriplet.")]
        assert all(m.startswith("sktriplet.triplets") for m in internal), (name, internal)
    loader = (
        "import importlib.util, sys, types\n"
        f"root = {str(PACKAGE)!r}\n"
        "for pkg in ('sktriplet', 'sktriplet.triplets'):\n"
        "    m = types.ModuleType(pkg); m.__path__ = [root + ('/triplets' if '.' in pkg else '')]\n"
        "    sys.modules[pkg] = m\n"
        "for name in ('distances', 'mining', 'losses'):\n"
        "    spec = importlib.util.spec_from_file_location(\n"
        "        'sktriplet.triplets.' + name, f'{root}/triplets/{name}.py')\n"
        "    mod = importlib.util.module_from_spec(spec)\n"
        "    sys.modules[spec.name] = mod; spec.loader.exec_module(mod)\n"
        + code.split("; ", 2)[2]
    )
    out = subprocess.run([sys.executable, "-c", loader], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_at_least_four_subpackages_by_role():
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert {"triplets", "training", "networks", "evaluation", "io", "inputs"} <= subpackages


def test_no_import_cycles_between_modules():
    modules = _modules()
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name and m != "sktriplet"}
        for name, path in modules.items()
    }
    # sktriplet/__init__ re-exports; a cycle through it is how every package
    # works. Every other cycle is a design error.
    graph.pop("sktriplet")
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError(f"import cycle: {' -> '.join([*stack, node, nxt])}")
            if nxt not in state:
                visit(nxt, [*stack, node])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_nothing_below_the_estimator_imports_it():
    allowed = {"sktriplet", "sktriplet.embedder", "sktriplet._aliases"}
    for name, path in _modules().items():
        if name in allowed or name.startswith(("sktriplet.io", "sktriplet.cli")):
            continue  # io saves and loads estimators, the CLI drives one
        assert "sktriplet.embedder" not in _imports(path), name


def test_old_import_paths_still_work():
    from sktriplet.losses import triplet_loss
    from sktriplet.sampling import PKSampler
    from sktriplet.training.sampling import PKSampler as New
    from sktriplet.triplets.losses import triplet_loss as new_loss

    assert PKSampler is New and triplet_loss is new_loss
    with pytest.warns(FutureWarning, match="sktriplet.evaluation.metrics"):
        sys.modules.pop("sktriplet.metrics", None)
        import sktriplet.metrics  # noqa: F401
    from sktriplet.evaluation import metrics

    assert sys.modules["sktriplet.metrics"] is metrics


@pytest.mark.parametrize("kind", ["rows", "images"])
def test_model_files_saved_by_0_1_0_load_and_embed_the_same(kind):
    expected = np.load(DATA / "v010_expected.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no deprecation noise on load
        est = sktriplet.load(DATA / f"v010_{kind}.sktriplet")
    X = expected["X"]
    if kind == "images":
        X = X.reshape(-1, 1, 8, 8).astype(np.uint8)
    # Written on another CPU and BLAS code path: equal up to float rounding.
    np.testing.assert_allclose(est.transform(X), expected[kind], rtol=0, atol=1e-6)
    assert est.input_spec_.kind == kind
