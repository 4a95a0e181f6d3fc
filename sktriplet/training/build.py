"""Build the embedding network from an input spec and the estimator's parameters.

:func:`build_network` is the one way a network comes to be: ``fit`` calls it
with input statistics learnt from the training data, :func:`sktriplet.load`
with none (the saved weights then fill the standardisation buffers), and
export works on what either built. It reads only an
:class:`~sktriplet.inputs.spec.InputSpec` and a plain dict of parameters (what
``TripletEmbedder.get_params(deep=False)`` returns), never an estimator.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from sktriplet.inputs.spec import InputSpec
from sktriplet.networks import ConvEmbedder, MLPEmbedder, Standardize
from sktriplet.networks.layers import declared_standardize
from sktriplet.training.policy import resolve_module_defaults

__all__ = [
    "ROUTED_PREFIXES",
    "build_network",
    "DEFAULT_N_COMPONENTS",
    "check_network_output",
    "requested_width",
    "routed",
]

#: Width of the default networks' embeddings (``n_components="auto"``).
DEFAULT_N_COMPONENTS = 64

#: Prefixes of the double-underscore parameters routed to inner objects.
ROUTED_PREFIXES = (
    "module__",
    "criterion__",
    "optimizer__",
    "callbacks__",
    "iterator_train__",
    "iterator_valid__",
)


def routed(params: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The routed parameters of one prefix, with the prefix removed.

    Parameters
    ----------
    params : dict
        Estimator parameters (``get_params(deep=False)``).
    prefix : str
        For example ``"module__"``.

    Returns
    -------
    dict
        ``{"hidden_units": ...}`` for ``{"module__hidden_units": ...}``.

    Examples
    --------
    >>> from sktriplet.training.build import routed
    >>> routed({"module__depth": 2, "lr": 0.1}, "module__")
    {'depth': 2}
    """
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def _placeholder_statistics(spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Statistics of the right shape, for a network whose weights are loaded next."""
    shape = (spec.channels, 1, 1) if spec.is_image else (spec.n_features,)
    return np.zeros(shape), np.ones(shape)


def requested_width(params: dict[str, Any], module: Any = None) -> int | None:
    """The embedding width ``n_components`` asks a module class for (``None``: its own).

    ``"auto"`` is :data:`DEFAULT_N_COMPONENTS` for the default networks and
    for module classes whose ``n_components`` has another default, and the
    module's own width for those whose ``n_components`` defaults to ``None``
    (e.g. :class:`~sktriplet.networks.BackboneEmbedder`, which then keeps its
    backbone's feature width).

    Parameters
    ----------
    params : dict
        Estimator parameters.
    module : type, default=None
        The module class (``None``: a default network).

    Returns
    -------
    int or None
        The width to pass, or ``None`` to pass none.
    """
    n_components = params["n_components"]
    if n_components != "auto":
        return int(n_components)
    if isinstance(module, type):
        parameter = inspect.signature(module).parameters.get("n_components")
        if parameter is not None and parameter.default is None:
            return None
    return DEFAULT_N_COMPONENTS


def _sized_kwargs(module: type, spec: InputSpec, params: dict[str, Any]) -> dict[str, Any]:
    """The ``module__*`` arguments plus the sizes the constructor takes."""
    kwargs = routed(params, "module__")
    sig = inspect.signature(module)
    sized = {
        "n_features": spec.n_features,
        "in_channels": spec.channels,
        "image_size": spec.image_size,
        "n_components": requested_width(params, module),
    }
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    for name, value in sized.items():
        if (
            value is not None
            and name not in kwargs
            and (name in sig.parameters or (accepts_any and name == "n_components"))
        ):
            kwargs[name] = value
    for name, value in resolve_module_defaults(module, params).items():
        kwargs.setdefault(name, value)
    return kwargs


def _build_body(spec: InputSpec, params: dict[str, Any]) -> nn.Module:
    module = params.get("module")
    if isinstance(module, nn.Module):
        kwargs = routed(params, "module__")
        if kwargs:
            raise ValueError(
                "module__* parameters need module to be a class, not an instance; "
                f"got {sorted(kwargs)} with an instance of {type(module).__name__}."
            )
        return copy.deepcopy(module)
    if module is None:
        module = ConvEmbedder if spec.is_image else MLPEmbedder
    kwargs = _sized_kwargs(module, spec, params)
    try:
        return module(**kwargs)
    except TypeError as exc:
        raise TypeError(
            f"could not build module {getattr(module, '__name__', module)} with "
            f"arguments {sorted(kwargs)}: {exc}. Check the module__* parameters "
            "against its constructor."
        ) from exc


def build_network(
    spec: InputSpec,
    params: dict[str, Any],
    statistics: tuple[np.ndarray, np.ndarray] | Callable[[], tuple] | None = None,
) -> nn.Sequential:
    """The network: input standardisation, then the embedding module.

    A module that declares its input normalisation (``input_mean`` and
    ``input_std`` for pixels in ``[0, 1]``, as a pretrained
    :class:`~sktriplet.networks.BackboneEmbedder` does) gets exactly that
    (uint8 images and image files: pixels / 255; float images are taken to
    be in ``[0, 1]``), and no statistics are computed from the data.

    Parameters
    ----------
    spec : InputSpec
        The samples the network takes; sizes the default networks and any
        module class whose constructor takes ``n_features``,
        ``in_channels`` or ``image_size``.
    params : dict
        The estimator's parameters (``module``, ``module__*``,
        ``n_components``, ...).
    statistics : tuple of numpy.ndarray, or callable, default=None
        ``(mean, scale)`` of the standardisation (see
        :func:`~sktriplet.inputs.statistics.input_statistics`), or a function
        that computes them (called only when the module declares no
        normalisation); ``None`` builds placeholders of the right shape, for
        weights that are loaded next.

    Returns
    -------
    torch.nn.Sequential
        ``Sequential(Standardize(mean, scale), module)``.

    Examples
    --------
    >>> from sktriplet.inputs.spec import InputSpec
    >>> from sktriplet.training.build import build_network
    >>> net = build_network(InputSpec("rows", (64,)), {"module": None, "n_components": 8})
    >>> type(net[1]).__name__
    'MLPEmbedder'
    """
    body = _build_body(spec, params)
    declared = declared_standardize(body, pixel_max=255.0 if spec.dtype == "uint8" else 1.0)
    if declared is not None and spec.is_image:
        return nn.Sequential(declared, body)
    if callable(statistics):
        statistics = statistics()
    mean, scale = _placeholder_statistics(spec) if statistics is None else statistics
    return nn.Sequential(Standardize(mean, scale), body)


def check_network_output(
    module: nn.Module, sample: torch.Tensor, n_components: int | str | None
) -> int:
    """Run the network on a batch of two samples; check and return the embedding width.

    Parameters
    ----------
    module : torch.nn.Module
        The network, on the device of ``sample``.
    sample : torch.Tensor
        Two samples.
    n_components : int, "auto" or None
        The width the estimator asks for (``"auto"``/``None``: any).

    Returns
    -------
    int
        The embedding width.
    """
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            try:
                out = module(sample)
            except Exception as exc:
                shape = tuple(sample.shape[1:])
                raise ValueError(
                    f"the module failed on samples of shape {shape}: "
                    f"{type(exc).__name__}: {exc}. Build it for inputs of shape "
                    f"(batch, {', '.join(map(str, shape))}) (a module class receives "
                    "n_features, in_channels and image_size when its constructor "
                    "takes them)."
                ) from exc
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(sample):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the module must return a 2-D tensor (batch, n_components); for a "
            f"batch of {len(sample)} it returned {shape}."
        )
    if n_components not in ("auto", None) and out.shape[1] != n_components:
        raise ValueError(
            f"the module returns embeddings of width {out.shape[1]} but "
            f"n_components={n_components}; set n_components={out.shape[1]} "
            "or change the module."
        )
    return int(out.shape[1])
