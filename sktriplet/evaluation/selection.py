"""Model selection that does not mislead: keep the default unless another candidate clearly wins.

:class:`PreferDefault` is a ``refit=`` rule for scikit-learn's
``GridSearchCV`` / ``RandomizedSearchCV``. Cross-validation scores are noisy,
above all with class-disjoint folds of few classes (each fold's score
depends on which classes it drew), and taking the best mean picks noise as
often as a real gain. The rule keeps the *default* candidate (e.g.
``criterion="triplet"``) unless another candidate beats it by more than the
standard error of their paired per-fold differences; among those that do,
it picks the best mean score. See ``docs/losses.md`` for the recipe and
for how often the rule and the plain best mean chose well on held-out
classes.

scikit-learn itself is not imported here: the rule reads the search's
``cv_results_`` dictionary.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

__all__ = ["PreferDefault"]


class PreferDefault:
    """``refit=`` rule: the default candidate unless another wins by more than a standard error.

    For every candidate ``c`` the per-fold gains over the default ``d``,
    ``g_k = score_k(c) - score_k(d)`` on the same folds, give a mean gain
    ``G`` and a standard error ``SE = std(g, ddof=1) / sqrt(n_folds)``. A
    candidate *qualifies* when ``G > SE`` and ``G > 0``; the rule returns
    the qualifying candidate with the best mean score, or the default when
    none qualifies (always with a single fold). Candidates whose scores are
    not all finite never qualify. Pass it as ``GridSearchCV(...,
    refit=PreferDefault(criterion="triplet"))``; the search then refits the
    chosen candidate on all the data (``best_index_``, ``best_params_``,
    ``best_estimator_``; scikit-learn sets no ``best_score_`` for a callable
    ``refit``).

    Parameters
    ----------
    scoring : str, default="score"
        Which score of ``cv_results_`` to read: ``"score"`` for a single
        scorer, the scorer's name with several (``scoring={"map": ...}``).
    **defaults : dict
        The default candidate's parameter values (e.g.
        ``criterion="triplet"``). A candidate matches when its value of
        every such parameter that the search varies equals the default;
        with several matches (other parameters vary too), the best of them
        by mean score is the default.

    Attributes
    ----------
    defaults : dict
        The default's parameter values.
    last_ : list of dict or None
        After a call: one row per candidate, ``index``, ``params``, ``mean``
        (mean score), ``gain`` and ``se`` (against the default),
        ``qualifies`` and ``chosen``, for inspection and reports.

    Raises
    ------
    ValueError
        At the call, when no candidate matches the defaults.

    See Also
    --------
    sktriplet.evaluation.scoring.make_retrieval_scorer : The scorer to rank by.

    Examples
    --------
    >>> from sktriplet.evaluation.selection import PreferDefault
    >>> results = {
    ...     "params": [{"criterion": "triplet"}, {"criterion": "arcface"}],
    ...     "split0_test_score": [0.50, 0.52], "split1_test_score": [0.60, 0.59],
    ...     "split2_test_score": [0.55, 0.58], "mean_test_score": [0.55, 0.5633],
    ... }
    >>> rule = PreferDefault(criterion="triplet")
    >>> rule(results)  # gains +0.02, -0.01, +0.03: mean 0.0133 > SE 0.0120
    1
    >>> [round(row["se"], 4) for row in rule.last_]
    [0.0, 0.012]
    >>> results["split1_test_score"] = [0.60, 0.57]  # gains +0.02, -0.03, +0.03
    >>> rule(results)  # mean 0.0067 < SE 0.0186: keep the default
    0
    """

    def __init__(self, scoring: str = "score", **defaults: Any) -> None:
        if not defaults:
            raise ValueError(
                "PreferDefault needs the default candidate's parameters, e.g. "
                "PreferDefault(criterion='triplet')."
            )
        self.scoring = scoring
        self.defaults = dict(defaults)
        self.last_: list[dict] | None = None

    def __repr__(self) -> str:  # noqa: D105
        args = [f"{k}={v!r}" for k, v in self.defaults.items()]
        if self.scoring != "score":
            args.insert(0, f"scoring={self.scoring!r}")
        return f"PreferDefault({', '.join(args)})"

    def _scores(self, cv_results: dict) -> np.ndarray:
        pattern = re.compile(rf"split(\d+)_test_{re.escape(self.scoring)}")
        keys = sorted(
            (int(m.group(1)), k) for k in cv_results if (m := pattern.fullmatch(k)) is not None
        )
        if not keys:
            raise ValueError(
                f"cv_results has no split*_test_{self.scoring} scores; with several scorers "
                "pass PreferDefault(scoring=<the scorer's name>, ...)."
            )
        return np.array([cv_results[k] for _, k in keys], dtype=float).T  # (candidates, folds)

    def _default_index(self, params: list[dict], means: np.ndarray) -> int:
        matches = [
            i
            for i, p in enumerate(params)
            if all(p[k] == v for k, v in self.defaults.items() if k in p)
        ]
        if not matches:
            wanted = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
            raise ValueError(
                f"no candidate of the search has the defaults {wanted}; add them to the "
                "parameter grid (the rule compares every candidate with the default)."
            )
        return max(matches, key=lambda i: -math.inf if np.isnan(means[i]) else means[i])

    def __call__(self, cv_results: dict) -> int:
        """The index of the candidate to refit.

        Parameters
        ----------
        cv_results : dict
            A search's ``cv_results_``.

        Returns
        -------
        int
        """
        scores = self._scores(cv_results)
        params = list(cv_results["params"])
        finite = np.isfinite(scores).all(axis=1)
        means = np.where(finite, scores.mean(axis=1), np.nan)
        default = self._default_index(params, means)
        n_folds = scores.shape[1]
        rows = []
        for i, p in enumerate(params):
            gains = scores[i] - scores[default]
            gain = float(gains.mean()) if finite[i] and finite[default] else math.nan
            se = float(gains.std(ddof=1) / math.sqrt(n_folds)) if n_folds > 1 else math.nan
            ok = i != default and n_folds > 1 and gain > 0 and gain > se
            rows.append(
                {
                    "index": i,
                    "params": p,
                    "mean": float(means[i]),
                    "gain": gain,
                    "se": se,
                    "qualifies": bool(ok),
                    "chosen": False,
                }
            )
        qualifying = [r for r in rows if r["qualifies"]]
        chosen = max(qualifying, key=lambda r: r["mean"])["index"] if qualifying else default
        rows[chosen]["chosen"] = True
        self.last_ = rows
        return int(chosen)
