"""A fit run in a child process by tests/test_checkpoints.py, to be killed with SIGKILL.

Usage: ``python checkpoint_child.py ROUTE MODE CHECKPOINT_DIR OUT MARKER``.

ROUTE: ``rows`` (digits rows, an MLP) or ``cached`` (a frozen tiny backbone
whose features are cached, the head trained on them). MODE: ``plain`` (fit,
write the embeddings to OUT and the epochs this process trained to
OUT.json), ``kill-epoch`` (stop for good after the second batch of epoch 3)
or ``kill-write`` (stop for good halfway through writing the checkpoint of
epoch 2, its bytes half on disk in the temporary file). Stopping creates
MARKER and sleeps until the parent kills the process. CHECKPOINT_DIR
``none``: fit without one (the uninterrupted reference).
"""

import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

from sktriplet import TripletEmbedder
from sktriplet.networks import BackboneEmbedder
from sktriplet.training import checkpoints

EPOCHS = 4


class Trunk(nn.Sequential):
    """A tiny frozen 'backbone'."""

    def __init__(self):
        super().__init__(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 10, 3, stride=2))


def data_and_params(route):
    common = dict(max_epochs=EPOCHS, random_state=0, device="cpu", verbose=0)
    if route == "rows":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X, y = X[:200].astype(np.float32) / 16, y[:200]
        params = dict(batch_size=32, samples_per_class=4, n_components=8,
                      module__hidden_units=(32,), module__dropout=0.2)  # fmt: skip
        return X, y, {**common, **params}
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 12)
    noise = rng.normal(120, 30, size=(60, 12, 12, 3))
    X = np.clip(noise + 80 * np.eye(5, 3)[y][:, None, None, :], 0, 255).astype(np.uint8)
    # freeze=True: the head trained on the cached features of the frozen trunk.
    params = dict(module=BackboneEmbedder, module__backbone=Trunk, module__freeze=True,
                  image_size=12, batch_size=20, samples_per_class=4, n_components=5)  # fmt: skip
    return X, y, {**common, **params}


def install_stops(mode, marker, trained):
    """Patch the checkpoint callback and writer to count epochs and stop where ``mode`` says."""

    def stop_here():
        open(marker, "w").close()
        while True:  # the parent kills the process here
            time.sleep(0.05)

    real_epoch_begin = checkpoints.EpochCheckpoint.on_epoch_begin
    real_write = checkpoints.write_atomically

    def on_epoch_begin(self, net, **kwargs):
        trained.append(len(net.history))
        self.batches_ = 0
        return real_epoch_begin(self, net, **kwargs)

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.batches_ += 1
            if mode == "kill-epoch" and len(net.history) == 3 and self.batches_ == 2:
                stop_here()

    def write_atomically(path, data):
        stage = os.path.basename(path).startswith("stage")
        if mode == "kill-write" and stage and len(trained) == 2:

            def half(f):
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                stop_here()

            return real_write(path, half)
        return real_write(path, data)

    checkpoints.EpochCheckpoint.on_epoch_begin = on_epoch_begin
    checkpoints.EpochCheckpoint.on_batch_end = on_batch_end
    checkpoints.write_atomically = write_atomically


def main(route, mode, directory, out, marker):
    torch.set_num_threads(1)
    trained = []
    install_stops(mode, marker, trained)
    X, y, params = data_and_params(route)
    if directory == "none":
        est = TripletEmbedder(**params).fit(X, y)
        trained[:] = range(1, EPOCHS + 1)
    else:
        est = TripletEmbedder(**params, checkpoint_dir=directory).fit(X, y)
    np.save(out, est.transform(X))
    with open(out + ".json", "w") as f:
        json.dump({"trained": trained, "history": len(est.net_.history)}, f)


if __name__ == "__main__":
    main(*sys.argv[1:6])
