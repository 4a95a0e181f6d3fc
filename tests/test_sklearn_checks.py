"""scikit-learn's own estimator checks."""

import sys

from sklearn.utils.estimator_checks import parametrize_with_checks

from sktriplet import TripletEmbedder

# Every expected failure, with the reason it cannot pass.
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


@parametrize_with_checks(
    [TripletEmbedder(max_epochs=2, batch_size=16, samples_per_class=2, n_components=4,
                     random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible_estimator(estimator, check, capsys, monkeypatch):
    # Silent with the default verbose="auto", even when the output is a terminal.
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    check(estimator)
    assert capsys.readouterr() == ("", "")
