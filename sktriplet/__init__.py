"""sktriplet: deep metric learning with triplet loss for scikit-learn."""

from sktriplet.estimator import TripletEmbedder
from sktriplet.export import export_onnx, export_program, export_torchscript
from sktriplet.losses import TripletLoss, triplet_loss
from sktriplet.neighbors import (
    OpenSetKNeighborsClassifier,
    calibrate_pair_threshold,
    calibrate_threshold,
    pair_distances,
    verify_pairs,
)
from sktriplet.persistence import load, save
from sktriplet.sampling import PKSampler

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
