"""The package's structure: the triplet core stays pure, no import cycles, old paths."""

import ast
import importlib
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import sktriplet
from sktriplet._aliases import ALIASES
from sktriplet.triplets.registry import LOSSES

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
    core = sorted(p.stem for p in (PACKAGE / "triplets").glob("*.py") if p.stem != "__init__")
    assert {"distances", "mining", "losses", "base", "classification", "registry"} <= set(core)
    # Importing sktriplet.triplets runs sktriplet/__init__.py, which loads the
    # estimator; so check the source files' imports and a bare import by path.
    for name in core:
        imported = _imports(PACKAGE / "triplets" / f"{name}.py")
        assert not [m for m in imported if m.split(".")[0] in ("sklearn", "skorch")], name
        internal = [m for m in imported if m.startswith("sktriplet.")]
        assert all(m.startswith("sktriplet.triplets") for m in internal), (name, internal)
    # In a fresh interpreter: importing the core must not load them at all.
    loader = (
        "import importlib.util, sys, types\n"
        f"root = {str(PACKAGE)!r}\n"
        "for pkg in ('sktriplet', 'sktriplet.triplets'):\n"
        "    m = types.ModuleType(pkg); m.__path__ = [root + ('/triplets' if '.' in pkg else '')]\n"
        "    sys.modules[pkg] = m\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('sktriplet.triplets.'):\n"
        "            file = f\"{root}/triplets/{name.rsplit('.', 1)[1]}.py\"\n"
        "            return importlib.util.spec_from_file_location(name, file)\n"
        "sys.meta_path.insert(0, Finder())\n"
        f"for name in {core!r}:\n"
        "    importlib.import_module('sktriplet.triplets.' + name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'skorch')))"
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


#: Basenames that two modules of the package may share while one is being
#: renamed (none now: issue 27 renamed ``inputs/datasets.py`` to ``loading``
#: and ``inputs/triplets.py`` to ``triplet_batches``). The test below fails for
#: a shared name not listed here, and for a listed name no longer shared.
PENDING_RENAMES: set[str] = set()


def test_module_names_do_not_collide():
    # The rule: every module and every subpackage of sktriplet has a basename
    # of its own (``__init__`` and ``__main__`` aside), so a name in an import,
    # a traceback or a grep means one file; and no package exports a name
    # equal to one of its submodules', so ``package.name`` means one object.
    owners: dict[str, list[str]] = {}
    for name in _modules():
        base = name.rsplit(".", 1)[-1]
        if name != "sktriplet" and base != "__main__":
            owners.setdefault(base, []).append(name)
    shared = {base: names for base, names in owners.items() if len(names) > 1}
    unexpected = {b: n for b, n in shared.items() if b not in PENDING_RENAMES}
    assert not unexpected, f"modules that share a basename, rename one: {unexpected}"
    renamed = PENDING_RENAMES - set(shared)
    assert not renamed, f"no longer shared, remove from PENDING_RENAMES: {renamed}"
    for init in PACKAGE.rglob("__init__.py"):
        submodules = {p.stem for p in init.parent.glob("*.py")} | {
            p.parent.name for p in init.parent.glob("*/__init__.py")
        }
        exported = set(_module_all(init))
        assert not exported & submodules, (init, exported & submodules)


def _module_all(path: Path) -> list[str]:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "__all__" for t in node.targets
        ):
            return list(ast.literal_eval(node.value))
    return []


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
    with pytest.warns(DeprecationWarning, match="sktriplet.evaluation.metrics"):
        sys.modules.pop("sktriplet.metrics", None)
        import sktriplet.metrics  # noqa: F401
    from sktriplet.evaluation import metrics

    assert sys.modules["sktriplet.metrics"] is metrics


@pytest.mark.parametrize("old", sorted(ALIASES))
def test_every_old_path_is_the_new_module_and_says_where_it_went(old):
    new, warns = ALIASES[old]
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    if not warns:  # documented API: silent
        assert not [w for w in caught if old in str(w.message)]
        return
    (warning,) = [w for w in caught if old in str(w.message)]
    assert warning.category is DeprecationWarning
    message = str(warning.message)
    assert f"{old} is now {new}" in message and "future release" in message
    # No release number: the old paths moved after 0.1.0, and none is promised.
    assert not re.search(r"\d+\.\d+", message), message


def test_old_path_warning_is_shown_to_whoever_wrote_the_import(tmp_path):
    # With Python's default filters, a DeprecationWarning shows for code run as
    # a script (and in notebooks, the REPL, test runners) and not for imports
    # inside a library the user does not edit. That needs the warning
    # attributed to the importing line, not to importlib or to sktriplet.
    (tmp_path / "somelib.py").write_text("import sktriplet.metrics\n")
    script = tmp_path / "script.py"
    script.write_text("import somelib\nfrom sktriplet import scoring\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), str(tmp_path)])}
    env.pop("PYTHONWARNINGS", None)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, check=True
    )
    assert f"{script}:2: DeprecationWarning: sktriplet.scoring is now" in out.stderr
    assert "sktriplet.metrics" not in out.stderr, out.stderr


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


# ------------------------------------------------- the seams of issue 27
def _outside_inputs() -> dict[str, Path]:
    return {n: p for n, p in _modules().items() if not n.startswith("sktriplet.inputs")}


def _is_spec_kind(node: ast.AST) -> bool:
    """``spec.kind``, ``self.input_spec_.kind``, ``data.spec.kind``, ..."""
    if not (isinstance(node, ast.Attribute) and node.attr == "kind"):
        return False
    owner = node.value
    name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
    return "spec" in name


def test_no_input_kind_branch_outside_inputs():
    from sktriplet.inputs.spec import KINDS

    found = []
    for name, path in _outside_inputs().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            kinds = [o for o in operands if isinstance(o, ast.Constant) and o.value in KINDS]
            if any(_is_spec_kind(o) for o in operands) or (kinds and len(operands) == 2):
                found.append(f"{name}:{node.lineno}")
    assert not found, f"input-kind branches outside sktriplet.inputs: {found}"


def test_training_never_indexes_raw_samples():
    # Training gets datasets from sktriplet.inputs (TrainingData), never X itself.
    found = []
    for name, path in _modules().items():
        if not name.startswith("sktriplet.training"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Subscript):
                target = node.value
                label = (
                    target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                )
                if label in ("X", "_X"):
                    found.append(f"{name}:{node.lineno}")
    assert not found, found


def test_every_loss_the_estimator_accepts_is_registered_in_one_place():
    from sktriplet import TripletEmbedder
    from sktriplet.triplets.base import LossWrapper, MetricLoss
    from sktriplet.triplets.registry import WRAPPERS, loss_names

    accepted = TripletEmbedder._parameter_constraints["criterion"][0].options
    assert accepted == set(LOSSES) == set(loss_names())
    # Every loss sktriplet defines is registered; every composition the
    # estimator applies is a LossWrapper named by an estimator parameter.
    defined = set()
    for name in _modules():
        module = sys.modules.get(name) or __import__(name, fromlist=["_"])
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, MetricLoss)
                and obj is not MetricLoss
                and obj.__module__ == name
            ):
                defined.add(obj)
    # ... or is the base of registered ones (ProxyLoss).
    bases = {obj for obj in defined if any(issubclass(r, obj) for r in LOSSES.values())}
    assert defined - bases <= set(LOSSES.values()), defined - bases - set(LOSSES.values())
    params = TripletEmbedder().get_params()
    for wrapper in WRAPPERS:
        assert issubclass(wrapper.cls, LossWrapper) and wrapper.param in params


@pytest.mark.parametrize(
    "name", sorted(__import__("sktriplet.triplets.registry", fromlist=["_"]).LOSSES)
)
def test_each_registered_loss_satisfies_the_interface(name):
    import inspect

    import torch

    from sktriplet.training.criterion import build_criterion
    from sktriplet.triplets.base import requires_labels, takes_indices_tuple

    params = {**__import__("sktriplet").TripletEmbedder().get_params(), "criterion": name}
    criterion = build_criterion(params, n_classes=4, width=3)
    forward = inspect.signature(type(criterion).forward).parameters
    assert list(forward)[:3] == ["self", "embeddings", "labels"], name
    z = torch.nn.functional.normalize(torch.randn(8, 3), dim=1).requires_grad_()
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    loss = criterion(z, labels)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert z.grad is not None
    triplets = (torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([4, 6]))
    if requires_labels(criterion):  # a classifier over the training classes
        assert criterion(z.detach(), labels, indices_tuple=triplets).ndim == 0
        with pytest.raises(ValueError, match="needs class labels"):
            criterion(z.detach(), indices_tuple=triplets)
    elif takes_indices_tuple(criterion):
        assert criterion(z.detach(), indices_tuple=triplets).ndim == 0
