"""A fingerprint of the data a fit trains on: what a checkpoint directory is checked against.

:func:`samples_digest` describes validated samples (their kind, number and
shape) and hashes their content: the bytes of arrays, or for image files each
path with its size and modification time (the files are not read), plus the
crop boxes, the class codes and the index triplets. Two fits get the same
digest when they train on the same data in the same order; a changed value,
file, label or order changes it. It is how
:mod:`sktriplet.training.checkpoints` tells whether a checkpoint directory
belongs to the fit at hand.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from sktriplet.inputs.spec import InputSpec

__all__ = ["samples_digest"]

#: Rows hashed at a time (arrays that are not contiguous are copied in blocks).
_BLOCK_BYTES = 1 << 24


def _hash_array(h, arr: np.ndarray) -> None:
    arr = np.asarray(arr)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    if arr.dtype.kind == "O":
        for value in arr.ravel().tolist():
            h.update(repr(value).encode())
        return
    if arr.flags.c_contiguous:
        h.update(memoryview(arr).cast("B"))
        return
    rows = max(1, _BLOCK_BYTES // max(1, arr[:1].nbytes))
    for start in range(0, len(arr), rows):
        h.update(np.ascontiguousarray(arr[start : start + rows]).tobytes())


def _hash_files(h, paths) -> None:
    """Each path with its size and modification time (nanoseconds); no file is read."""
    for path in paths:
        path = os.fspath(path)
        try:
            st = os.stat(path)
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{path}\0missing\n".encode())


def samples_digest(
    X: Any,
    spec: InputSpec,
    codes: np.ndarray | None = None,
    triplets: np.ndarray | None = None,
) -> dict[str, Any]:
    """Describe and hash the data of a fit.

    Parameters
    ----------
    X : numpy.ndarray or BoxTable
        Validated samples (as :func:`~sktriplet.inputs.validation.validate_fit`
        returns them): rows, images, image file paths or crop boxes.
    spec : InputSpec
        What they are.
    codes : numpy.ndarray of int, default=None
        Their class codes.
    triplets : numpy.ndarray of shape (n_triplets, 3), default=None
        Index triplets into ``X`` (triplet mode).

    Returns
    -------
    dict
        ``kind``, ``n_samples``, ``sample_shape``, ``n_triplets`` (or
        ``None``) and ``sha256``, the hash of the content (for files: paths,
        sizes and modification times).

    Examples
    --------
    >>> import numpy as np
    >>> from sktriplet.inputs.spec import InputSpec
    >>> X = np.arange(6, dtype=np.float32).reshape(3, 2)
    >>> a = samples_digest(X, InputSpec("rows", (2,)), np.array([0, 0, 1]))
    >>> b = samples_digest(X, InputSpec("rows", (2,)), np.array([0, 1, 1]))
    >>> a["n_samples"], a["sha256"] == b["sha256"]
    (3, False)
    """
    h = hashlib.sha256()
    if spec.kind == "boxes":
        _hash_files(h, X.paths)
        _hash_array(h, X.boxes)
    elif spec.reads_files:
        _hash_files(h, X)
    else:
        _hash_array(h, X)
    for name, extra in (("codes", codes), ("triplets", triplets)):
        h.update(name.encode())
        if extra is not None:
            _hash_array(h, extra)
    return {
        "kind": spec.kind,
        "n_samples": len(X),
        "sample_shape": [int(s) for s in spec.sample_shape],
        "n_triplets": None if triplets is None else len(triplets),
        "sha256": h.hexdigest(),
    }
