"""sktriplet: deep metric learning with triplet loss for scikit-learn."""

from sktriplet.runtime import wait_policy as _wait_policy

_wait_policy.prefer_passive_wait()  # before anything imports torch (see that module)

from sktriplet import _aliases

_aliases.install()

# ruff: noqa: E402

from sktriplet.embedder import TripletEmbedder
from sktriplet.evaluation.neighbors import (
    OpenSetKNeighborsClassifier,
    calibrate_pair_threshold,
    calibrate_threshold,
    pair_distances,
    verify_pairs,
)
from sktriplet.io.export import export_onnx, export_program, export_torchscript
from sktriplet.io.persistence import load, save
from sktriplet.training.sampling import PKSampler
from sktriplet.triplets.losses import TripletLoss, triplet_loss

__version__ = "0.1.0"

__all__ = [
    "OpenSetKNeighborsClassifier",
    "PKSampler",
    "TripletEmbedder",
    "TripletLoss",
    "__version__",
    "calibrate_pair_threshold",
    "calibrate_threshold",
    "export_onnx",
    "export_program",
    "export_torchscript",
    "load",
    "pair_distances",
    "save",
    "triplet_loss",
    "verify_pairs",
]
