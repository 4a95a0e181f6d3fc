"""The identity of a fit: which parameters, data and starting network it trains.

A checkpoint directory (:mod:`sktriplet.training.checkpoints`) belongs to
one fit. :func:`fit_identity` describes that fit as plain JSON: every
estimator parameter that changes what training computes, the data
(:func:`sktriplet.inputs.digest.samples_digest`) and, for a warm-started fit,
a hash of the network it starts from (:func:`net_digest`). Left out, because
they do not change the weights: ``verbose``, ``checkpoint_dir`` itself,
``device`` (a fit may resume on another machine), ``warm_start`` (a fit that
continues no network is a fresh fit), the inference loader settings
(``iterator_valid__*``) and callbacks that only print (skorch's ``PrintLog``
and ``ProgressBar``). ``random_state`` counts when it is an integer; ``None``
or a ``RandomState`` draws a seed, which the directory stores and the
resumed fit reuses. :func:`identity_differences` names what differs between
two identities, for the error that refuses a directory of another fit.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import numbers
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "IGNORED_PARAMS",
    "describe_value",
    "fit_identity",
    "identity_differences",
    "is_cosmetic",
    "net_digest",
]

#: Estimator parameters that do not change what a fit computes.
IGNORED_PARAMS = ("verbose", "checkpoint_dir", "device", "warm_start")
#: Routed parameters that do not change what a fit computes.
IGNORED_PREFIXES = ("iterator_valid__",)
#: Nesting below which objects are described by their class alone.
_MAX_DEPTH = 4


def _path(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', type(obj).__name__)}"


def _tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name, tensor in tensors.items():
        h.update(f"{name}{tensor.dtype}{tuple(tensor.shape)}".encode())
        t = tensor.detach().cpu().contiguous().reshape(-1)  # (a 0-d tensor has no byte view)
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def is_cosmetic(value: Any) -> bool:
    """A callback (class or instance, or a named pair) that only prints."""
    from skorch.callbacks import PrintLog, ProgressBar

    item = value[1] if isinstance(value, tuple) and len(value) == 2 else value
    kind = item if isinstance(item, type) else type(item)
    return isinstance(kind, type) and issubclass(kind, (PrintLog, ProgressBar))


def describe_value(value: Any, depth: int = 0) -> Any:
    """A plain-JSON description of a parameter value that two processes agree on.

    Numbers, strings and containers are themselves; classes and functions
    their import path; arrays and tensors their dtype, shape and a hash;
    ``nn.Module`` instances their structure and a hash of their state;
    objects with ``get_params`` (estimators, skorch callbacks) their class and
    parameters; other objects their class and their public plain attributes.

    Parameters
    ----------
    value : object
        A parameter value.
    depth : int, default=0
        Nesting level (deep objects are described by their class alone).

    Returns
    -------
    object
        JSON-able.

    Examples
    --------
    >>> import torch
    >>> describe_value((32, 16)), describe_value(torch.optim.Adam)
    ([32, 16], 'torch.optim.adam:Adam')
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return repr(float(value))  # exact, and NaN-safe in JSON
    if isinstance(value, type) or inspect.isroutine(value):
        return _path(value)
    if isinstance(value, (list, tuple)):
        return [describe_value(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): describe_value(v, depth + 1) for k, v in sorted(value.items(), key=str)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O":
            return {"array": [repr(v) for v in value.ravel().tolist()]}
        h = hashlib.sha256(f"{value.dtype.str}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
        return {"array": h.hexdigest()}
    if isinstance(value, torch.Tensor):
        return {"tensor": _tensor_digest({"": value})}
    if isinstance(value, nn.Module):
        return {"module": _path(type(value)), "repr": repr(value),
                "state": _tensor_digest(value.state_dict())}  # fmt: skip
    described: dict[str, Any] = {"class": _path(type(value))}
    if depth < _MAX_DEPTH and hasattr(value, "get_params"):
        described["params"] = describe_value(value.get_params(deep=False), depth + 1)
    elif depth < _MAX_DEPTH:
        public = {
            k: v
            for k, v in vars(value).items()
            if not k.startswith("_") and isinstance(v, (type(None), bool, str, numbers.Number))
        } if hasattr(value, "__dict__") else {}  # fmt: skip
        described["attributes"] = describe_value(public, depth + 1)
    return described


def net_digest(net: Any) -> str:
    """A hash of a fitted net's network weights and number of epochs (a warm start's start).

    Parameters
    ----------
    net : skorch.NeuralNet
        An initialised net.

    Returns
    -------
    str
        Hex SHA-256.
    """
    h = hashlib.sha256(_tensor_digest(net.module_.state_dict()).encode())
    criterion = getattr(net, "criterion_", None)
    if isinstance(criterion, nn.Module):
        h.update(_tensor_digest(criterion.state_dict()).encode())
    h.update(f"epochs={len(net.history)}".encode())
    return h.hexdigest()


def fit_identity(
    params: dict[str, Any], data: dict[str, Any], start: str | None = None
) -> dict[str, Any]:
    """What decides whether a checkpoint directory belongs to a fit.

    Parameters
    ----------
    params : dict
        Estimator parameters (``get_params(deep=False)``).
    data : dict
        :func:`sktriplet.inputs.digest.samples_digest` of the data.
    start : str or None, default=None
        :func:`net_digest` of the network a warm-started fit continues
        (``None``: a fresh fit).

    Returns
    -------
    dict
        ``{"params": ..., "data": ..., "start": ...}``, plain JSON.

    Examples
    --------
    >>> a = fit_identity({"max_epochs": 5, "verbose": 1, "random_state": 0}, {"sha256": "x"})
    >>> b = fit_identity({"max_epochs": 5, "verbose": 0, "random_state": 0}, {"sha256": "x"})
    >>> a == b
    True
    """
    described = {}
    for name, value in sorted(params.items()):
        if name in IGNORED_PARAMS or name.startswith(IGNORED_PREFIXES) or name == "samples":
            continue  # (triplet mode's samples are data: ``data`` holds their digest)
        if name == "random_state" and not isinstance(value, numbers.Integral):
            value = "drawn"  # the drawn seed is stored in the directory
        elif name == "callbacks" and value is not None:
            value = [cb for cb in value if not is_cosmetic(cb)]
        described[name] = describe_value(value)
    return json.loads(json.dumps({"params": described, "data": data, "start": start}))


def identity_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two :func:`fit_identity` descriptions, in words.

    Parameters
    ----------
    saved, current : dict
        The directory's identity and the fit's.

    Returns
    -------
    list of str
        One phrase per difference (empty when they are equal).
    """
    out = []
    old, new = saved.get("params", {}), current.get("params", {})
    for name in sorted(set(old) | set(new)):
        if old.get(name, "<unset>") != new.get(name, "<unset>"):
            shown = [_short(old.get(name, "<unset>")), _short(new.get(name, "<unset>"))]
            out.append(f"{name} was {shown[0]} there and is {shown[1]} here")
    if saved.get("data") != current.get("data"):
        was, now = saved.get("data") or {}, current.get("data") or {}
        out.append(
            f"the data differ ({_data_words(was)} there, {_data_words(now)} here)"
            if was.get("n_samples") != now.get("n_samples")
            or was.get("sample_shape") != now.get("sample_shape")
            else "the data differ (same shape, other values, labels, order or files)"
        )
    if saved.get("start") != current.get("start"):
        out.append(
            "one fit continues a fitted network (warm_start) and the other starts "
            "another network, or from another one"
        )
    return out


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _data_words(data: dict[str, Any]) -> str:
    return f"{data.get('n_samples')} samples of shape {tuple(data.get('sample_shape') or ())}"
