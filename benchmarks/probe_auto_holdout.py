"""How many held-out classes does ``freeze="auto"`` need to judge the top blocks?

Runs ``TripletEmbedder(module=BackboneEmbedder, module__backbone=
"efficientnet_lite0", image_size=128)`` (``freeze="auto"``, everything else at
its default) on one set of ``bench_transfer.py`` (its class-disjoint split
and seed) and prints, for the hold-out ``"auto"`` drew from the training
classes:

- its MAP@R per block epoch (epoch 0: the head alone), scored on view 0 (what
  ``"auto"`` scores) and flip-averaged (each photo's and its mirror's
  embeddings averaged), and the per-query paired differences from the head
  alone (mean, standard error, t);
- which epoch the margin rule (:data:`~sktriplet.training.top_blocks.AUTO_MIN_GAIN`)
  keeps on either score.

Unless ``--no-refit``, the refit on all the training classes then runs every
block epoch (not only the chosen ones), and the unseen classes' MAP@R
(flip-averaged, as ``transform`` embeds) is printed after each: the test
score of every choice the rule could have made. ``--holdout`` and
``--min-held`` set :data:`~sktriplet.training.top_blocks.AUTO_HOLDOUT` and
:data:`~sktriplet.training.top_blocks.AUTO_MIN_HELD_CLASSES` for the run.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/probe_auto_holdout.py --dataset glint \\
        [--seed 0] [--holdout 0.25] [--min-held 5] [--no-refit] [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from skorch.callbacks import Callback

sys.path.insert(0, str(Path(__file__).parent))
import bench_transfer as bt  # noqa: E402

import sktriplet.training.callbacks as cb  # noqa: E402
import sktriplet.training.top_blocks as tb  # noqa: E402
from sktriplet.evaluation.metrics import retrieval_scores  # noqa: E402
from sktriplet.inputs.cached_views import CachedViews  # noqa: E402
from sktriplet.inputs.loading import make_dataset  # noqa: E402
from sktriplet.networks.split import split_at_block  # noqa: E402
from sktriplet.training.feature_cache import cache_views  # noqa: E402

HOLDOUT: list[tuple[np.ndarray, np.ndarray]] = []  # per-query AP@R (view 0, flip) per epoch
TEST: list[float] = []  # unseen MAP@R (flip) of the refit per epoch
CTX: dict = {}


def ap_at_r(Z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Leave-one-out AP@R of every query, cosine ranking (a plain reference loop)."""
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    D = -(Z @ Z.T)
    np.fill_diagonal(D, np.inf)
    out = np.full(len(y), np.nan)
    for i in range(len(y)):
        R = int((y == y[i]).sum()) - 1
        if R < 1:
            continue
        rel = (y[np.argsort(D[i], kind="stable")[:R]] == y[i]).astype(float)
        out[i] = (np.cumsum(rel) / np.arange(1, R + 1) * rel).sum() / R
    return out


def raw_views(top, cache, rows) -> list[np.ndarray]:
    """Un-normalised head outputs of every cached view of ``rows``."""
    top.eval()
    outs = []
    with torch.no_grad():
        for v in range(cache.shape[1]):
            parts = []
            for s in range(0, len(rows), 256):
                a = np.ascontiguousarray(cache[rows[s : s + 256], v], dtype=np.float32)
                parts.append(top.head(top.features(torch.from_numpy(a))).numpy())
            outs.append(np.concatenate(parts))
    return outs


def _install() -> None:
    """Record the block stage's hold-out queries, cache the test photos, refit every epoch."""
    scores, cache, train_blocks = cb.RetrievalValidation._scores, tb._cache, tb.train_blocks
    head_then_blocks = tb._head_then_blocks

    def _scores(self, net, Z=None):
        ds = self._dataset()
        if Z is None and isinstance(ds, CachedViews):
            z0, z1 = raw_views(net.module_, ds.cache, ds.rows)
            HOLDOUT.append((ap_at_r(z0, np.asarray(self.y)), ap_at_r(z0 + z1, np.asarray(self.y))))
        return scores(self, net, Z)

    def _cache(module, depth, params, data, head_net, clock):
        if "test" not in CTX and tb.AUTO_REFIT:
            bottom, _ = split_at_block(module, depth, check=False)
            ds = make_dataset(np.asarray(CTX["paths"]), data.spec)
            CTX["test"] = cache_views(bottom, ds, batch_size=params["batch_size"])
        return cache(module, depth, params, data, head_net, clock)

    def _train_blocks(top, params, data, views, device, width, lr, epochs, n_run):
        if views.held is not None:
            return train_blocks(top, params, data, views, device, width, lr, epochs, n_run)
        n_steps = epochs * tb._batches_per_epoch(params, views.train_codes)
        stage = tb.stage_params(params, lr, epochs, n_steps)
        net = tb.fresh_net(top, stage, data, device, width)
        net.callbacks = [*net.callbacks, ("unseen", _Unseen())]
        tb.run_fit(net, stage, views, validation=tb._VALIDATION)
        return net

    def _head_then_blocks(embedder, cached, params, data, device, width, epochs, n_run, net=None):
        return head_then_blocks(embedder, cached, params, data, device, width, epochs, epochs, net)

    cb.RetrievalValidation._scores = _scores
    tb._cache, tb.train_blocks, tb._head_then_blocks = _cache, _train_blocks, _head_then_blocks


class _Unseen(Callback):
    """The unseen classes' flip-averaged MAP@R at the start and after every epoch."""

    def _score(self, net) -> None:
        z0, z1 = raw_views(net.module_, CTX["test"], np.arange(len(CTX["test"])))
        z = (z0 + z1) / np.linalg.norm(z0 + z1, axis=1, keepdims=True)
        TEST.append(float(retrieval_scores(z.astype(np.float32), CTX["y"], k=1)["map_at_r"]))

    def on_train_begin(self, net, **kwargs):  # noqa: D102
        self._score(net)

    def on_epoch_end(self, net, **kwargs):  # noqa: D102
        self._score(net)


def _kept(series: np.ndarray, gain: float) -> int:
    """The epoch the margin rule keeps (0: the head alone)."""
    best, kept = series[0], 0
    for epoch, score in enumerate(series[1:], 1):
        if score > best + (gain if kept == 0 else 0.0):
            best, kept = score, epoch
    return kept


def report(n_classes: int) -> None:
    """Print the hold-out curves, the rule's choices and the paired differences."""
    ap0 = np.array([a for a, _ in HOLDOUT])
    apf = np.array([f for _, f in HOLDOUT])
    print(f"held-out classes {n_classes}, queries {ap0.shape[1]}")
    print("unseen MAP@R (flip) after epoch 0..:", " ".join(f"{t:.3f}" for t in TEST) or "-")
    for name, ap in (("view 0", ap0), ("flip", apf)):
        series = np.nanmean(ap, axis=1)
        kept = _kept(series, tb.AUTO_MIN_GAIN)
        unseen = f", unseen {TEST[kept]:.3f}" if TEST else ""
        print(
            f"hold-out MAP@R, {name}: {' '.join(f'{s:.4f}' for s in series)}; "
            f"margin {tb.AUTO_MIN_GAIN} keeps epoch {kept}{unseen}"
        )
        for epoch in range(1, len(ap)):
            d = ap[epoch] - ap[0]
            d = d[~np.isnan(d)]
            se = d.std(ddof=1) / np.sqrt(len(d))
            print(
                f"  epoch {epoch} - head, per query: mean {d.mean():+.4f}, se {se:.4f}, "
                f"t {d.mean() / se if se > 0 else float('nan'):+.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=list(bt.SETS), default="glint")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", type=float, default=tb.AUTO_HOLDOUT)
    parser.add_argument("--min-held", type=int, default=tb.AUTO_MIN_HELD_CLASSES)
    parser.add_argument("--no-refit", action="store_true")
    parser.add_argument("--data", default=str(bt.DATA))
    parser.add_argument("--cache", default="/tmp/sktriplet-bench")
    a = parser.parse_args()
    print(f"# {' '.join(sys.argv)}")
    tb.AUTO_HOLDOUT, tb.AUTO_MIN_HELD_CLASSES = a.holdout, a.min_held
    tb.AUTO_REFIT = not a.no_refit
    _install()
    args = argparse.Namespace(
        data=a.data,
        seed=a.seed,
        image_size=128,
        max_classes=None,
        max_train_images=None,
        cache=a.cache,
        workers=1,
        device="cpu",
        epochs=30,
    )
    split = bt.load_split(a.dataset, args)
    CTX["paths"], CTX["y"] = split.test_paths, np.asarray(split.test_y)
    torch.manual_seed(a.seed)
    emb, _, fit, _ = bt._fit_estimator(split, args)
    print(f"{split.describe()}, seed {a.seed}; fit {fit:.0f} s")
    report(emb.freeze_report_["held_out_classes"])


if __name__ == "__main__":
    main()
