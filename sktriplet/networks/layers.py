"""Layers shared by the embedding networks: input standardisation, L2 normalisation.

Also :class:`AnchoredLinear`, a linear layer with an L2-SP penalty, and
:class:`ParameterAnchor`, the same penalty on the trainable parameters of
another module (a backbone's trained blocks): a module that defines
``regularization_loss()`` adds it to the training loss of
:class:`~sktriplet.training.net.TripletNet` (see
:func:`regularization_loss`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "AnchoredLinear",
    "L2Normalize",
    "ParameterAnchor",
    "Standardize",
    "declared_standardize",
    "regularization_loss",
]


class L2Normalize(nn.Module):
    """Scale every row to unit Euclidean norm (zero rows stay zero).

    Examples
    --------
    >>> import torch
    >>> from sktriplet.networks import L2Normalize
    >>> L2Normalize()(torch.tensor([[3.0, 4.0]]))
    tensor([[0.6000, 0.8000]])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``x`` with rows of unit norm, in float32 (also under bfloat16 autocast)."""
        return F.normalize(x.float(), dim=1, eps=1e-12)


class AnchoredLinear(nn.Linear):
    """A linear layer pulled back towards its starting weights while it trains (L2-SP).

    ``regularization_loss()`` is ``strength * (||W - W0||^2 + ||b - b0||^2)``
    (squared Frobenius and Euclidean norms, summed, not averaged), where
    ``W0`` and ``b0`` are the weights when the layer was made or when
    :meth:`reset_anchor` was last called. This is the "starting point as
    reference" penalty of Li, Grandvalet and Davoine (ICML 2018): it keeps a
    head that starts as the identity close to the pretrained features it
    was given, which matters when few classes train it. The anchor is not
    saved with the weights (``state_dict`` keys are those of ``nn.Linear``);
    a rebuilt layer anchors to its own starting weights.

    Parameters
    ----------
    in_features, out_features : int
        As for ``torch.nn.Linear``.
    strength : float, default=0.0
        Weight of the penalty; ``0`` makes this a plain linear layer.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.networks.layers import AnchoredLinear
    >>> layer = AnchoredLinear(2, 2, strength=0.5)
    >>> layer.regularization_loss().item()
    0.0
    >>> with torch.no_grad():
    ...     layer.bias += 1.0
    >>> round(layer.regularization_loss().item(), 4)  # 0.5 * (1 + 1)
    1.0
    """

    def __init__(self, in_features: int, out_features: int, strength: float = 0.0) -> None:
        super().__init__(in_features, out_features)
        if not strength >= 0:
            raise ValueError(f"strength must be a number >= 0; got {strength!r}.")
        self.strength = float(strength)
        self.register_buffer("weight_anchor", torch.empty(0), persistent=False)
        self.register_buffer("bias_anchor", torch.empty(0), persistent=False)
        self.reset_anchor()

    def reset_anchor(self) -> AnchoredLinear:
        """Make the current weights the point the penalty pulls towards.

        Returns
        -------
        AnchoredLinear
            ``self``.
        """
        self.weight_anchor = self.weight.detach().clone()
        self.bias_anchor = self.bias.detach().clone()
        return self

    def regularization_loss(self) -> torch.Tensor:
        """The penalty ``strength * (||W - W0||^2 + ||b - b0||^2)`` (a scalar tensor)."""
        if self.strength == 0:
            return self.weight.new_zeros(())
        drift = (self.weight - self.weight_anchor).pow(2).sum()
        return self.strength * (drift + (self.bias - self.bias_anchor).pow(2).sum())


class ParameterAnchor(nn.Module):
    """L2-SP for the trainable parameters of another module.

    ``regularization_loss()`` is ``strength * sum ||p - p0||^2`` over the
    parameters ``p`` of ``target`` that required gradients when the anchor was
    last set (:meth:`reset_anchor`) and still do, ``p0`` being their values
    then (Li, Grandvalet and Davoine, ICML 2018). Registered as a submodule
    beside ``target`` (not around it), it leaves ``target``'s parameter names
    and state dict unchanged; the anchors are buffers that move with
    ``.to()`` but are not saved (a rebuilt network anchors to its own
    weights when it is set up for training).

    Parameters
    ----------
    target : torch.nn.Module
        The module whose parameters are pulled back (not registered as a
        submodule of the anchor).
    strength : float, default=0.0
        Weight of the penalty; ``0`` stores nothing and adds nothing.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> layer = nn.Linear(2, 1)
    >>> anchor = ParameterAnchor(layer, strength=0.5)
    >>> with torch.no_grad():
    ...     layer.bias += 2.0
    >>> anchor.regularization_loss().item()  # 0.5 * 2^2
    2.0
    """

    def __init__(self, target: nn.Module, strength: float = 0.0) -> None:
        super().__init__()
        if not strength >= 0:
            raise ValueError(f"strength must be a number >= 0; got {strength!r}.")
        self.strength = float(strength)
        object.__setattr__(self, "_target", target)  # not a submodule: no shared names
        self.names: list[str] = []
        self.reset_anchor()

    def reset_anchor(self) -> ParameterAnchor:
        """Anchor the target's parameters that require gradients now, at their values.

        Returns
        -------
        ParameterAnchor
            ``self``.
        """
        for i in range(len(self.names)):
            delattr(self, f"anchor_{i}")
        self.names = []
        if self.strength == 0:
            return self
        for name, p in self._target.named_parameters():
            if p.requires_grad:
                self.register_buffer(
                    f"anchor_{len(self.names)}", p.detach().clone(), persistent=False
                )
                self.names.append(name)
        return self

    def regularization_loss(self) -> torch.Tensor:
        """The penalty ``strength * sum ||p - p0||^2`` (a scalar tensor)."""
        params = dict(self._target.named_parameters())
        terms = [
            (params[name] - getattr(self, f"anchor_{i}")).pow(2).sum()
            for i, name in enumerate(self.names)
            if params[name].requires_grad
        ]
        if not terms:
            return next(iter(params.values()), torch.zeros(())).new_zeros(())
        return self.strength * torch.stack(terms).sum()


def regularization_loss(module: nn.Module) -> torch.Tensor | None:
    """The sum of ``regularization_loss()`` over ``module`` and its submodules.

    Parameters
    ----------
    module : torch.nn.Module
        A network.

    Returns
    -------
    torch.Tensor or None
        The summed penalty, or ``None`` when no submodule defines one.

    Examples
    --------
    >>> from torch import nn
    >>> from sktriplet.networks.layers import AnchoredLinear, regularization_loss
    >>> regularization_loss(nn.Sequential(nn.Linear(2, 2))) is None
    True
    >>> regularization_loss(nn.Sequential(AnchoredLinear(2, 2, strength=1.0))).item()
    0.0
    """
    terms = [
        m.regularization_loss()
        for m in module.modules()
        if callable(getattr(m, "regularization_loss", None))
    ]
    return torch.stack(terms).sum() if terms else None


class Standardize(nn.Module):
    """Fixed affine input standardisation ``(x - mean) / scale``.

    Converts its input to float32 first, so uint8 images can be fed as they
    are. ``mean`` and ``scale`` are buffers (saved with the weights, not
    trained).

    Parameters
    ----------
    mean, scale : array-like
        Broadcastable against one sample: shape ``(n_features,)`` for rows,
        ``(C, 1, 1)`` for images.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.networks import Standardize
    >>> Standardize([1.0, 2.0], [2.0, 4.0])(torch.tensor([[3.0, 6.0]]))
    tensor([[1., 1.]])
    """

    def __init__(self, mean, scale) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the standardised float32 input."""
        return (x.float() - self.mean) / self.scale


def declared_standardize(module: nn.Module, pixel_max: float = 255.0) -> Standardize | None:
    """The input standardisation a network declares, for images in ``[0, pixel_max]``.

    A network such as :class:`~sktriplet.networks.BackboneEmbedder` declares
    per-channel ``input_mean`` and ``input_std`` for pixels scaled to
    ``[0, 1]``; this returns the layer that maps raw pixels ``x`` (``uint8``
    with ``pixel_max=255``, or floats in ``[0, 1]`` with ``pixel_max=1``) to
    ``(x / pixel_max - mean) / std``, i.e. ``Standardize(mean * pixel_max,
    std * pixel_max)`` with ``(C, 1, 1)`` buffers. It replaces the
    standardisation fitted to the data.

    Parameters
    ----------
    module : torch.nn.Module
        The network; its ``input_mean`` / ``input_std`` attributes are read.
    pixel_max : float, default=255.0
        The value of a white pixel in the input.

    Returns
    -------
    Standardize or None
        ``None`` when the network declares no normalisation (attributes
        missing or ``None``).

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from sktriplet.networks import declared_standardize
    >>> net = nn.Identity()
    >>> net.input_mean, net.input_std = (127 / 255,) * 3, (128 / 255,) * 3
    >>> layer = declared_standardize(net)
    >>> layer(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)).flatten()
    tensor([1., 1., 1.])
    """
    mean = getattr(module, "input_mean", None)
    std = getattr(module, "input_std", None)
    if mean is None or std is None:
        return None
    mean_t = torch.as_tensor(mean, dtype=torch.float64).reshape(-1, 1, 1) * pixel_max
    std_t = torch.as_tensor(std, dtype=torch.float64).reshape(-1, 1, 1) * pixel_max
    return Standardize(mean_t, std_t)
