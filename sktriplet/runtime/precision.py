"""Which floating-point precision each pass of the network runs in.

``TripletEmbedder(precision=...)`` takes ``"auto"`` (the default), ``"32"``,
``"bf16"`` or ``"16"``. The network's passes are of two kinds:

* **training** (forward and backward of the trained part), and
* **inference** (``transform``, and the caching passes over a frozen
  backbone or frozen blocks during ``fit``), forward only.

``"32"`` runs both in float32 (no autocast at all); ``"bf16"`` runs both
under ``torch.autocast(dtype=torch.bfloat16)``; ``"16"`` trains under
float16 autocast with a gradient scaler and infers in float32. ``"auto"``
infers in bfloat16 where the device computes bfloat16 natively
(:func:`native_bf16`), else in float32; it trains a *pretrained* network
(a backbone, or its top blocks) in bfloat16 where bfloat16 training is
fast (:func:`fast_bf16_training`: CUDA, or a CPU with AMX), and every
other network in float32. Why (measured in ``docs/scaling.md``): on a CPU
with AVX-512 BF16 but no AMX a bfloat16 forward pass took about half the
time of float32 but a training step was slower; training the default
from-scratch networks in bfloat16 moved their MAP@R by more than 0.005,
training a pretrained backbone's top blocks did not. Mining, distances and
the loss stay float32 whatever the choice, weights stay float32, and the
embeddings handed out are float32.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from typing import NamedTuple

import torch

__all__ = [
    "PRECISIONS",
    "Precision",
    "autocast",
    "check_precision",
    "fast_bf16_training",
    "native_bf16",
    "resolve_precision",
]

#: The values of ``precision``, the default first.
PRECISIONS: tuple[str, ...] = ("auto", "32", "bf16", "16")

_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
#: CPU flags under which a bfloat16 *training* step is faster than float32.
_CPU_BF16_TRAINING_FLAGS = ("amx_bf16",)


class Precision(NamedTuple):
    """A resolved ``precision``: what training and inference passes run in.

    Attributes
    ----------
    fit : {"32", "bf16", "16"}
        The training passes (forward and backward).
    inference : {"32", "bf16"}
        ``transform`` and the caching passes over frozen parts.
    """

    fit: str
    inference: str


def check_precision(precision: object) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming them."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        choices = ", ".join(repr(p) for p in PRECISIONS)
        raise ValueError(f"precision must be one of {choices}; got {precision!r}.")
    return precision


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (Linux; empty elsewhere)."""
    if not sys.platform.startswith("linux"):
        return frozenset()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively.

    CUDA: :func:`torch.cuda.is_bf16_supported`. CPU: Linux with AMX
    (``amx_bf16``) or AVX-512 BF16 (``avx512_bf16``) in ``/proc/cpuinfo``;
    other systems count as not native. Any other device: not native.

    Parameters
    ----------
    device : str or torch.device, default="cpu"
        A resolved device.

    Returns
    -------
    bool

    Examples
    --------
    >>> from sktriplet.runtime.precision import native_bf16
    >>> isinstance(native_bf16("cpu"), bool)
    True
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if kind == "cpu":
        return any(flag in _cpu_flags() for flag in _CPU_BF16_FLAGS)
    return False


def fast_bf16_training(device: str | torch.device = "cpu") -> bool:
    """Whether a bfloat16 training step is faster than float32 on ``device``.

    CUDA: :func:`torch.cuda.is_bf16_supported`. CPU: Linux with AMX
    (``amx_bf16`` in ``/proc/cpuinfo``), whose tile units run bfloat16
    matrix products for the backward pass too. A CPU with AVX-512 BF16 but
    no AMX computes bfloat16 dot products natively, which makes inference
    faster, but a training step there took longer than in float32
    (``docs/scaling.md``), so it does not count.

    Parameters
    ----------
    device : str or torch.device, default="cpu"
        A resolved device.

    Returns
    -------
    bool

    Examples
    --------
    >>> from sktriplet.runtime.precision import fast_bf16_training
    >>> fast_bf16_training("meta")
    False
    """
    kind = torch.device(device).type
    if kind == "cuda":
        return native_bf16(device)
    if kind == "cpu":
        return any(flag in _cpu_flags() for flag in _CPU_BF16_TRAINING_FLAGS)
    return False


def resolve_precision(
    precision: str, device: str | torch.device = "cpu", *, pretrained: bool = False
) -> Precision:
    """What ``precision`` means on ``device``, for training and for inference.

    Parameters
    ----------
    precision : {"auto", "32", "bf16", "16"}
        The estimator's parameter.
    device : str or torch.device, default="cpu"
        A resolved device.
    pretrained : bool, default=False
        Whether what trains is a pretrained network (a
        :class:`~sktriplet.networks.BackboneEmbedder` or its top blocks,
        :func:`~sktriplet.networks.split.is_pretrained`). Only ``"auto"``
        looks at it.

    Returns
    -------
    Precision
        For ``"auto"``: training ``"bf16"`` for a pretrained network on a
        device where :func:`fast_bf16_training`, else ``"32"``; inference
        ``"bf16"`` on a device with :func:`native_bf16`, else ``"32"``.
        ``(p, p)`` for ``p in {"32", "bf16"}``; ``("16", "32")`` for ``"16"``.

    Examples
    --------
    >>> from sktriplet.runtime.precision import resolve_precision
    >>> resolve_precision("32")
    Precision(fit='32', inference='32')
    >>> resolve_precision("16")
    Precision(fit='16', inference='32')
    >>> resolve_precision("auto", "meta", pretrained=True)
    Precision(fit='32', inference='32')
    """
    check_precision(precision)
    if precision == "auto":
        fit = "bf16" if pretrained and fast_bf16_training(device) else "32"
        return Precision(fit, "bf16" if native_bf16(device) else "32")
    return Precision(precision, "32" if precision == "16" else precision)


def autocast(precision: str, device: str | torch.device = "cpu"):
    """The autocast context of a resolved precision (none for ``"32"``).

    Parameters
    ----------
    precision : {"32", "bf16", "16"}
        A resolved precision (:class:`Precision`'s ``fit`` or ``inference``).
    device : str or torch.device, default="cpu"
        Where the pass runs.

    Returns
    -------
    context manager
        :func:`torch.autocast` with bfloat16 or float16, or a no-op context
        for ``"32"`` (no autocast state touched, so float32 stays bitwise
        what it was).
    """
    dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
