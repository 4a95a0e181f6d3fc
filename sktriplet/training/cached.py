"""Train only the head of a network whose backbone is frozen, on features cached once.

With a frozen pretrained backbone (:class:`~sktriplet.networks.BackboneEmbedder`
with ``freeze=True``, its default) and no augmentation asked for, every epoch
would compute the same backbone features again. ``fit`` then computes them
once, in the data loader's workers (:mod:`sktriplet.training.feature_cache`),
trains the projection head on them with the same PK batches, validation and
checks as any fit, and hands back the whole network, whose head *is* the
trained head. ``augment="auto"`` means no augmentation in this case (cached
features cannot be augmented); ``augment=True`` trains through the backbone
on augmented images instead, without the cache.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, SequentialSampler

from sktriplet.inputs.datasets import ArrayDataset, make_dataset
from sktriplet.networks.backbone import BackboneEmbedder
from sktriplet.runtime.inference import TRANSFORM_BATCH_SIZE, embed
from sktriplet.training.build import check_network_output
from sktriplet.training.errors import check_finite_embeddings
from sktriplet.training.factory import make_net, validation_callbacks
from sktriplet.training.feature_cache import split_for_caching
from sktriplet.training.net import TripletNet

__all__ = ["can_cache_features", "train_on_cached_features"]


def can_cache_features(module: nn.Module, params: dict[str, Any]) -> bool:
    """Whether ``fit`` trains ``module``'s head on cached backbone features.

    Parameters
    ----------
    module : torch.nn.Module
        The network (``Sequential(standardisation, body)``).
    params : dict
        Estimator parameters.

    Returns
    -------
    bool
        ``True`` when the body is a :class:`BackboneEmbedder` whose backbone
        is frozen, ``augment`` is ``"auto"`` or ``False``, and no callback
        maps parameters while training (skorch's ``Freezer`` / ``Unfreezer``).
    """
    body = module[-1] if isinstance(module, nn.Sequential) and len(module) else module
    if not isinstance(body, BackboneEmbedder):
        return False
    frozen = not any(p.requires_grad for p in body.backbone.parameters())
    return frozen and params["augment"] in ("auto", False) and not _maps_params(params)


def _maps_params(params: dict[str, Any]) -> bool:
    """Whether a callback changes parameters while training (e.g. skorch's Unfreezer).

    Such a fit must train through the backbone: with cached features an
    unfrozen backbone would never be used.
    """
    from skorch.callbacks import ParamMapper

    for cb in params.get("callbacks") or []:
        item = cb[1] if isinstance(cb, tuple) else cb
        kind = item if isinstance(item, type) else type(item)
        if issubclass(kind, ParamMapper):
            return True
    return False


def _features(extractor: nn.Module, net: TripletNet, fit) -> np.ndarray:
    dataset = make_dataset(fit.X, fit.spec)
    batches = BatchSampler(SequentialSampler(dataset), fit.params["batch_size"], False)
    extractor.to(net.device)
    return embed(extractor, net.batch_loader(dataset, batches), device=net.device)


def train_on_cached_features(fit, module: nn.Module, width: int) -> tuple[TripletNet, int]:
    """Train the head of ``module`` on its frozen backbone's features.

    Parameters
    ----------
    fit : sktriplet.training.fit._Fit
        The fit's parameters, data, hold-out, seed, device and learning rate.
    module : torch.nn.Module
        The whole network (its backbone frozen).
    width : int
        Width of its embeddings.

    Returns
    -------
    net : TripletNet
        The trained net, whose ``module_`` is the whole network.
    n_components : int
        Width of the embedding.
    """
    params = {**fit.params, "augment": False}
    extractor, head = split_for_caching(module)
    net = make_net(
        params,
        fit.spec,
        head,
        fit.seed,
        fit.device,
        lr=fit.lr,
        n_classes=fit.n_classes,
        width=width,
    )
    net.initialize()
    features = _features(extractor, net, fit)
    valid = (None, None) if fit.held is None else (features[fit.held], fit.codes[fit.held])
    net.callbacks = list(net.callbacks) + validation_callbacks(params, *valid)
    net.initialize_callbacks()
    sample = torch.from_numpy(features[:2]).to(net.device)
    n_components = check_network_output(net.module_, sample, params["n_components"])
    train = fit.train_mask
    net.partial_fit(ArrayDataset(features[train], fit.codes[train]), None)
    out = embed(net.module_, features[train][:TRANSFORM_BATCH_SIZE], device=net.device)
    check_finite_embeddings(out, net=net)
    _hand_over(net, module)
    return net, n_components


def _hand_over(net: TripletNet, module: nn.Module) -> None:
    """Make ``module`` (the whole network) the net's, with an optimizer over all of it.

    The head's optimizer state (Adam's moments) carries over, so a saved model
    loads like any other and ``warm_start`` continues from here.
    """
    trained = net.optimizer_
    net.module_ = module  # its head is the one just trained
    net.initialize_optimizer()
    for group in trained.param_groups:
        for param in group["params"]:
            if param in trained.state:
                net.optimizer_.state[param] = trained.state[param]
