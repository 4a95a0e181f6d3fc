"""Write the 0.1.0 model files that tests/test_persistence.py loads.

Usage (from a checkout of the 0.1.0 release, e.g. ``git worktree add /tmp/v010 6b31824``)::

    PYTHONPATH=/tmp/v010 OMP_NUM_THREADS=1 python tests/data/make_v010_files.py tests/data
"""

import sys

import numpy as np
from sklearn.datasets import load_digits

import sktriplet
from sktriplet import TripletEmbedder, save


def main(out: str) -> None:
    assert sktriplet.__version__ == "0.1.0"
    X, y = load_digits(return_X_y=True)
    small = dict(max_epochs=1, n_components=8, random_state=0)
    rows = TripletEmbedder(**small, module__hidden_units=(32,)).fit(X[:300], y[:300])
    save(rows, f"{out}/v010_rows.sktriplet")
    imgs = X.reshape(-1, 1, 8, 8).astype(np.uint8)
    conv = TripletEmbedder(**small, module__channels=(4, 8)).fit(imgs[:300], y[:300])
    save(conv, f"{out}/v010_images.sktriplet")
    np.savez(
        f"{out}/v010_expected.npz",
        X=X[300:310],
        rows=rows.transform(X[300:310]),
        images=conv.transform(imgs[300:310]),
    )


if __name__ == "__main__":
    main(sys.argv[1])
