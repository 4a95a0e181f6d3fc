"""Import paths of sktriplet 0.1.0, kept working after the regrouping.

0.1.0 was one flat package (``sktriplet.losses``, ``sktriplet.metrics``,
...). Its modules now live in subpackages by role; the old dotted names
still import, as the very same module objects, through a meta path finder
installed by ``sktriplet/__init__.py``. ``sktriplet.losses`` and
``sktriplet.sampling`` are part of the documented API and stay silent; the
other old names warn with a :class:`FutureWarning` that names the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

#: Old module name -> (new module name, whether importing it warns).
ALIASES: dict[str, tuple[str, bool]] = {
    "sktriplet.losses": ("sktriplet.triplets.losses", False),
    "sktriplet.sampling": ("sktriplet.training.sampling", False),
    "sktriplet.distances": ("sktriplet.triplets.distances", True),
    "sktriplet.mining": ("sktriplet.triplets.mining", True),
    "sktriplet.callbacks": ("sktriplet.training.callbacks", True),
    "sktriplet.schedules": ("sktriplet.training.schedules", True),
    "sktriplet.distributed": ("sktriplet.training.distributed", True),
    "sktriplet.augment": ("sktriplet.vision.augment", True),
    "sktriplet.metrics": ("sktriplet.evaluation.metrics", True),
    "sktriplet.scoring": ("sktriplet.evaluation.scoring", True),
    "sktriplet.index": ("sktriplet.evaluation.index", True),
    "sktriplet.neighbors": ("sktriplet.evaluation.neighbors", True),
    "sktriplet.plotting": ("sktriplet.evaluation.plotting", True),
    "sktriplet.persistence": ("sktriplet.io.persistence", True),
    "sktriplet.export": ("sktriplet.io.export", True),
    "sktriplet.estimator": ("sktriplet.embedder", True),
    # Renamed after 0.1.0 (no longer the name of the sktriplet.triplets package).
    "sktriplet.inputs.triplets": ("sktriplet.inputs.triplet_batches", False),
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str, warn: bool) -> None:
        self.target = target
        self.warn = warn

    def create_module(self, spec):  # noqa: D102
        if self.warn:
            warnings.warn(
                f"{spec.name} moved to {self.target} in sktriplet 0.2; import it from there "
                "(the old name will be removed in a later release).",
                FutureWarning,
                stacklevel=3,
            )
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # noqa: D102
        pass  # the target module is already executed


class AliasFinder(importlib.abc.MetaPathFinder):
    """Resolve the module names of :data:`ALIASES` to their new homes."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: D102
        if fullname not in ALIASES:
            return None
        new, warn = ALIASES[fullname]
        return importlib.util.spec_from_loader(fullname, _AliasLoader(new, warn))


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(AliasFinder())
