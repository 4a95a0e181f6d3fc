"""sktriplet: deep metric learning with triplet loss for scikit-learn."""

from sktriplet.estimator import TripletEmbedder
from sktriplet.losses import TripletLoss, triplet_loss
from sktriplet.sampling import PKSampler

__version__ = "0.1.0"

__all__ = ["PKSampler", "TripletEmbedder", "TripletLoss", "__version__", "triplet_loss"]
