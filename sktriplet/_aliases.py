"""Old import paths, kept working after the modules moved.

sktriplet 0.1.0 was one flat package (``sktriplet.losses``,
``sktriplet.metrics``, ...); its modules now live in subpackages by role,
and a few modules moved again inside them (``sktriplet.evaluation.index``
into :mod:`sktriplet.evaluation.neighbors`). The old dotted names still
import, as the very same module objects, through a meta path finder
installed by ``sktriplet/__init__.py``. ``sktriplet.losses`` and
``sktriplet.sampling`` are part of the documented API and stay silent.

The other old names warn with a :class:`DeprecationWarning` that names the
new path and is attributed to the line with the old import. That category
because an import path is the concern of whoever wrote the import, and
Python shows a ``DeprecationWarning`` exactly to them: for code run as a
script, in the REPL or a notebook (``__main__``) and under test runners,
while an application's end users, who cannot change a library's imports, do
not see it (a :class:`FutureWarning` is always shown, to end users too). The
old path gives the same module, so results cannot change without notice,
which is what scikit-learn's use of :class:`FutureWarning` guards against.
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
    "sktriplet.index": ("sktriplet.evaluation.neighbors.index", True),
    "sktriplet.neighbors": ("sktriplet.evaluation.neighbors", True),
    "sktriplet.plotting": ("sktriplet.evaluation.plotting", True),
    "sktriplet.persistence": ("sktriplet.io.persistence", True),
    "sktriplet.export": ("sktriplet.io.export", True),
    "sktriplet.estimator": ("sktriplet.embedder", True),
    "sktriplet.evaluation.index": ("sktriplet.evaluation.neighbors.index", True),
    "sktriplet.evaluation.triplet_accuracy": ("sktriplet.evaluation.metrics.triplet_scores", True),
}

#: The wording of the warning: no version numbers, since the old path is
#: removed in whichever release first drops it.
MESSAGE = (
    "{old} is now {new}; import it from there. The old path still works but will be "
    "removed in a future release of sktriplet."
)


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str, warn: bool) -> None:
        self.target = target
        self.warn = warn

    def create_module(self, spec):  # noqa: D102
        if self.warn:
            warnings.warn(
                MESSAGE.format(old=spec.name, new=self.target),
                DeprecationWarning,
                # 2: the importing line (warnings skips importlib's own frames).
                stacklevel=2,
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
