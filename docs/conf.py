"""Sphinx configuration of the sktriplet documentation.

Build with ``bash docs/build.sh`` (HTML in ``docs/_build/html``). The API
reference tables and the command-line manual are generated here at build
time from the package itself (``gen_modules/``), so they never go stale.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import sktriplet  # noqa: E402

project = "sktriplet"
author = "sktriplet developers"
copyright = "sktriplet developers, BSD-3-Clause"  # noqa: A001
release = sktriplet.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
    "matplotlib.sphinxext.plot_directive",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
# Pages whose document title is a Markdown "# heading" get anchors for ##.
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"sktriplet {release}"
html_theme_options = {
    "description": "Deep metric learning for scikit-learn",
    "fixed_sidebar": True,
    "page_width": "1100px",
    "sidebar_width": "230px",
}
html_static_path: list[str] = []

# -- autodoc / autosummary / numpydoc ---------------------------------------
autosummary_generate = True
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"  # the numpydoc docstrings carry the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- plot directive (figures drawn by code in the user guide) ---------------
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]

# -- sphinx-gallery -----------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    # every examples/plot_*.py, plus the README's quickstart
    "filename_pattern": r"(/plot_|quickstart\.py)",
    "ignore_pattern": r"__init__\.py",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "min_reported_time": 1,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "write_computation_times": False,
}

# -- generated pages -----------------------------------------------------------
#: Public modules in the order of the API reference; any other public module
#: found in the package is appended, so a new one cannot be forgotten.
API_MODULES = [
    "sktriplet.triplets.losses",
    "sktriplet.triplets.mining",
    "sktriplet.triplets.distances",
    "sktriplet.triplets.base",
    "sktriplet.triplets.registry",
    "sktriplet.triplets.classification",
    "sktriplet.inputs.spec",
    "sktriplet.inputs.validation",
    "sktriplet.inputs.loading",
    "sktriplet.inputs.files",
    "sktriplet.inputs.boxes",
    "sktriplet.inputs.statistics",
    "sktriplet.inputs.training_data",
    "sktriplet.inputs.cached_views",
    "sktriplet.inputs.triplet_batches",
    "sktriplet.vision.decode",
    "sktriplet.vision.transforms",
    "sktriplet.vision.folders",
    "sktriplet.vision.augment",
    "sktriplet.networks",
    "sktriplet.training.sampling",
    "sktriplet.training.build",
    "sktriplet.training.criterion",
    "sktriplet.training.factory",
    "sktriplet.training.fit",
    "sktriplet.training.routine",
    "sktriplet.training.net",
    "sktriplet.training.callbacks",
    "sktriplet.training.policy",
    "sktriplet.training.feature_cache",
    "sktriplet.training.top_blocks",
    "sktriplet.training.errors",
    "sktriplet.runtime.inference",
    "sktriplet.runtime.threads",
    "sktriplet.runtime.allocator",
    "sktriplet.runtime.progress",
    "sktriplet.runtime.loader_errors",
    "sktriplet.evaluation.metrics",
    "sktriplet.evaluation.scoring",
    "sktriplet.evaluation.neighbors",
    "sktriplet.io.persistence",
    "sktriplet.io.contract",
    "sktriplet.io.export",
    "sktriplet.datasets",
    "sktriplet.evaluation.plotting",
    "sktriplet.training.distributed",
]
#: Modules (and their submodules) with no API of their own to list (the
#: estimator is top level, the command line has its own page, the aliases only
#: keep 0.1.0 paths working).
NOT_IN_API = {"sktriplet.embedder", "sktriplet.cli", "sktriplet.__main__"}


def _public_modules(package: Path) -> dict[str, Path]:
    """Every public module of the package (subpackages included) and its file."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        listed = not any(name == m or name.startswith(m + ".") for m in NOT_IN_API)
        if len(parts) > 1 and not any(p.startswith("_") for p in parts) and listed:
            found[name] = path
    return found


def _module_all(path: Path) -> tuple[list[str], str]:
    """``__all__`` and the docstring's first line of a module, without importing it."""
    tree = ast.parse(path.read_text())
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", None) == "__all__" for t in node.targets
        ):
            names = list(ast.literal_eval(node.value))
    doc = (ast.get_docstring(tree) or "").strip().splitlines()
    return names, (doc[0] if doc else "")


def _is_constant(module: str, name: str) -> bool:
    obj = getattr(__import__(module, fromlist=[name]), name)
    return not callable(obj)


API_INTRO = """\
Every public name of sktriplet, generated from the docstrings. The modules
follow the data flow (see :doc:`../architecture`): the triplet core
(distances, mining, the loss interface, the losses and their registry); the
input boundary (what ``X`` is, image files and crop boxes, datasets, the
training data of a fit); the networks; training (PK batches, building the
network and the criterion, the skorch net, callbacks, policies); the runtime
(the inference loop, threads, the allocator, progress output,
data-loader workers' errors); evaluation (metrics, scorers, open-set
recognition, search, plots); persistence and export.
The command line is described in :doc:`../cli`."""


def write_api_page(out: Path) -> None:
    """Write the API reference page, with autosummary tables, to ``out``."""
    found = _public_modules(ROOT / "sktriplet")
    modules = [m for m in API_MODULES if m in found] + [m for m in found if m not in API_MODULES]
    top = [n for n in sktriplet.__all__ if not n.startswith("__")]
    lines = [
        ".. This page is generated by docs/conf.py; edit API_INTRO there.",
        "",
        "API reference",
        "=============",
        "",
        API_INTRO,
        "",
        "Top level",
        "---------",
        "",
        ".. currentmodule:: sktriplet",
        "",
        "The names most code needs, importable from ``sktriplet`` itself.",
        "",
        ".. autosummary::",
        "   :toctree: .",
        "",
        *(f"   {n}" for n in top),
        "",
    ]
    listed = {id(getattr(sktriplet, n)): f"sktriplet.{n}" for n in top}
    for module in modules:
        names, _ = _module_all(found[module])
        if not names:
            continue
        mod = __import__(module, fromlist=["_"])
        own = [n for n in names if id(getattr(mod, n)) not in listed]
        funcs = [n for n in own if not _is_constant(module, n)]
        shared = [listed[id(getattr(mod, n))] for n in names if n not in own]
        if not funcs:
            continue  # everything here is documented under another module
        listed.update({id(getattr(mod, n)): f"{module}.{n}" for n in funcs})
        title = f":mod:`{module}`"
        lines += [title, "-" * len(title), "", f".. automodule:: {module}", "   :no-members:", ""]
        lines += [f".. currentmodule:: {module}", ""]
        if shared:
            also = ", ".join(f":obj:`{n}`" for n in shared)
            lines += [f"Also here, documented elsewhere on this page: {also}.", ""]
        lines += [".. autosummary::", "   :toctree: .", "", *(f"   {n}" for n in funcs), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines)
    if not out.exists() or out.read_text() != text:
        out.write_text(text)


def write_cli_help(out_dir: Path) -> None:
    """Write ``sktriplet --help`` and each command's help to text files."""
    from sktriplet.cli.parser import build_parser

    out_dir.mkdir(parents=True, exist_ok=True)
    for command in (None, "fit", "embed", "evaluate"):
        argv = ["--help"] if command is None else [command, "--help"]
        buf = io.StringIO()
        old_columns = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "88"
        try:
            with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):
                build_parser().parse_args(argv)
        finally:
            if old_columns is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = old_columns
        (out_dir / f"cli_{command or 'main'}.txt").write_text(buf.getvalue())


write_api_page(HERE / "gen_modules" / "api.rst")
write_cli_help(HERE / "gen_modules")


# -- docstring fixes applied before numpydoc ---------------------------------
_CODE_SPAN = re.compile(r"(``.*?``|`[^`]*`)")
_TRAILING_UNDERSCORE = re.compile(r"\b([A-Za-z]\w*?)_(?=[\s,.;:)\]]|$)")


def _escape_trailing_underscores(text: str) -> str:
    # "n_features_in_" is a reference in reStructuredText; fitted-attribute
    # names in prose and type lines are meant literally.
    parts = _CODE_SPAN.split(text)
    for i in range(0, len(parts), 2):
        parts[i] = _TRAILING_UNDERSCORE.sub(r"\1\\_", parts[i])
    return "".join(parts)


def fix_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    """Make raw docstrings and attribute names render as in ``help()``."""
    joined: list[str] = []
    for line in lines:
        if joined and joined[-1].endswith("\\") and not joined[-1].endswith("\\\\"):
            # a backslash-newline continuation in a raw (r"...") docstring
            joined[-1] = joined[-1][:-1] + line.lstrip()
        else:
            joined.append(line)
    in_literal = False
    for i, line in enumerate(joined):
        stripped = line.strip()
        if stripped.startswith((">>>", "...")) or in_literal:
            in_literal = in_literal and (not stripped or line.startswith((" ", "\t")))
            continue
        if stripped.endswith("::") or stripped.startswith(".. math"):
            in_literal = True
        joined[i] = _escape_trailing_underscores(line)
    lines[:] = joined


def skip_member(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated metadata-routing setters."""
    if re.fullmatch(r"set_\w+_request", name):
        return True
    return skip


def setup(app):
    """Connect the docstring hooks (before numpydoc's, priority 500)."""
    app.connect("autodoc-process-docstring", fix_docstring, priority=400)
    app.connect("autodoc-skip-member", skip_member)
