"""A safe file format for fitted :class:`~sktriplet.TripletEmbedder` models.

:func:`save` writes one zip file with three members:

- ``config.json``: the estimator's parameters, its fitted attributes
  (``classes_``, ``input_shape_``, ``n_features_in_``, ``feature_names_in_``,
  ``n_components_``, ...), the training history and the network's seed.
  Classes (a custom ``module``, the ``optimizer``) are stored as import paths
  ``"package.module:QualName"``.
- ``weights.pt``: ``torch.save`` of plain state dicts (the network, with its
  input standardisation buffers, and the optimizer), read back with
  ``torch.load(weights_only=True)``, which refuses anything but tensors and
  plain Python containers.
- ``sha256.json``: SHA-256 checksums of the other two members.

:func:`load` never unpickles arbitrary objects: a tampered, truncated or
foreign file is refused with :class:`ModelFileError` before anything in it
is used. It never inflates more than it allows, either (a zip bomb is refused
at once): the file must hold exactly these three members; ``sha256.json`` may
hold :data:`MAX_CHECKSUMS_BYTES`, ``config.json`` :data:`MAX_CONFIG_BYTES`,
and ``weights.pt`` the size the config declares (:data:`MAX_WEIGHTS_BYTES`
for files of sktriplet 0.1.0, which do not declare it) and at most
:data:`MAX_WEIGHTS_RATIO` times its compressed size. Each size in the zip's
headers is checked before the member is read, and the member is inflated in
chunks that stop at its limit whatever the header says.

:func:`load` imports the modules named by the class paths in the config (as
``import`` would) and checks that each names a ``torch.nn.Module`` or
``torch.optim.Optimizer`` subclass before calling it; load files only from
sources whose code you would import. ``pickle`` and ``joblib`` also work on
a fitted estimator, but, like any pickle, may run code when loaded.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from skorch.history import History
from torch import nn

from sktriplet.inputs.spec import InputSpec

__all__ = ["FORMAT_VERSION", "ModelFileError", "load", "save"]

#: Version of the file layout written by :func:`save`.
FORMAT_VERSION = 1

_MEMBERS = ("config.json", "weights.pt", "sha256.json")

#: Most bytes ``config.json`` may inflate to when loading (parameters, fitted
#: attributes and the training history of a typical fit take well under 1 MiB).
MAX_CONFIG_BYTES = 32 * 2**20
#: Most bytes ``sha256.json`` may inflate to when loading.
MAX_CHECKSUMS_BYTES = 4096
#: Cap on ``weights.pt`` for files that do not declare its size (those
#: written by sktriplet 0.1.0); newer files declare it in ``config.json``.
MAX_WEIGHTS_BYTES = 4 * 2**30
#: ``weights.pt`` may also inflate to at most this many times its compressed
#: size (beyond 1 MiB): :func:`save` stores it uncompressed (ratio 1), and a
#: config is no more trustworthy than the rest of the file.
MAX_WEIGHTS_RATIO = 100
_CHUNK = 2**20
_PATH_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_ALLOWED_BASES = (nn.Module, torch.optim.Optimizer)
_ESTIMATOR = "sktriplet.embedder:TripletEmbedder"
#: Where 0.1.0 defined the estimator (its files name this path).
_ESTIMATOR_010 = "sktriplet.estimator:TripletEmbedder"


class ModelFileError(ValueError):
    """A model file is not a valid sktriplet file, or was altered."""


class _NotEncodableError(TypeError):
    pass


# --------------------------------------------------------------------- JSON
def _class_path(cls: type) -> str:
    """``"module:qualname"`` of an importable class (raise ``_NotEncodableError``)."""
    module, qualname = cls.__module__, cls.__qualname__
    if module == "__main__" or "<locals>" in qualname:
        where = "in __main__" if module == "__main__" else "inside a function"
        raise _NotEncodableError(
            f"class {qualname} is defined {where}, so it cannot be imported when "
            "the file is loaded; move it to an importable module."
        )
    path = f"{module}:{qualname}"
    try:
        found = _resolve(path, check=False)
    except ModelFileError as exc:
        raise _NotEncodableError(f"class {qualname} cannot be imported back: {exc}") from None
    if found is not cls:
        raise _NotEncodableError(f"{path} does not import back to the class {qualname}.")
    if not issubclass(cls, _ALLOWED_BASES):
        raise _NotEncodableError(
            f"class {path} is neither a torch.nn.Module nor a torch.optim.Optimizer; "
            "the safe format stores only those classes."
        )
    return path


def _resolve(path: str, *, check: bool = True) -> type:
    """Import the class named ``"module:qualname"``."""
    if not isinstance(path, str) or not _PATH_RE.match(path):
        raise ModelFileError(f"{path!r} is not a class path of the form 'module:QualName'.")
    module_name, qualname = path.split(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ModelFileError(
            f"the model file needs the class {path}, which cannot be imported here "
            f"({exc}); install or add to the path the code that defines it."
        ) from None
    if check and not (isinstance(obj, type) and issubclass(obj, _ALLOWED_BASES)):
        raise ModelFileError(
            f"the model file names {path}, which is not a torch.nn.Module or "
            "torch.optim.Optimizer subclass; refusing to use it."
        )
    return obj


def _encode(value: Any) -> Any:
    """JSON-able form of a parameter value (raise ``_NotEncodableError``)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, os.PathLike):  # e.g. checkpoint_dir: loaded as its string
        return os.fspath(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return value.item()
    if isinstance(value, type):
        return {"__class__": _class_path(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"__dict__": {k: _encode(v) for k, v in value.items()}}
    if isinstance(value, np.ndarray) and value.dtype.kind in "biufUO":
        return _encode_array(value)
    raise _NotEncodableError(f"a value of type {type(value).__name__} is not JSON-able")


def _encode_array(arr: np.ndarray) -> dict:
    values = arr.tolist()
    if arr.dtype.kind == "O" and not all(
        v is None or isinstance(v, (bool, int, float, str)) for v in arr.ravel().tolist()
    ):
        raise _NotEncodableError("an object array holds values other than str/int/float/bool")
    out = {"__ndarray__": values, "dtype": arr.dtype.str if arr.dtype.kind != "O" else "O"}
    if not np.array_equal(_decode(out), arr):
        raise _NotEncodableError("the array does not survive a JSON round trip")
    return out


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__class__" in value:
        return _resolve(value["__class__"])
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _decode(v) for k, v in value["__dict__"].items()}
    if "__ndarray__" in value:
        dtype = value.get("dtype")
        if not isinstance(dtype, str) or np.dtype(dtype).kind not in "biufUO":
            raise ModelFileError(f"unsupported array dtype {dtype!r} in the model file.")
        data = value["__ndarray__"]
        if dtype == "O":
            arr = np.empty(len(data), dtype=object)
            arr[:] = data
            return arr
        return np.asarray(data, dtype=np.dtype(dtype))
    raise ModelFileError(f"unknown entry {sorted(value)} in the model file's config.")


def _plain(obj: Any) -> Any:
    """History entries as plain JSON values (anything else is dropped)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v = _plain(v)
            if v is not _DROP:
                out[str(k)] = v
        return out
    if isinstance(obj, (list, tuple)):
        return [v for v in (_plain(v) for v in obj) if v is not _DROP]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic) and obj.dtype.kind in "biuf":
        return obj.item()
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    return _DROP


_DROP = object()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------- save
def save(estimator, path: str | os.PathLike) -> None:
    """Save a fitted :class:`~sktriplet.TripletEmbedder` to a safe file.

    The file is a zip with a JSON config, the weights (``torch.save`` of
    state dicts) and their SHA-256 checksums; :func:`load` reads it back
    without unpickling arbitrary objects. The file is written to a temporary
    name first and then renamed, so an interrupted save never leaves a
    half-written file at ``path``.

    Parameters
    ----------
    estimator : TripletEmbedder
        A fitted estimator. Its ``module`` must be ``None`` or an importable
        ``torch.nn.Module`` subclass (not an instance, and not a class
        defined in ``__main__`` or inside a function). A triplet-mode
        estimator's ``samples`` are not stored (they are data, not a
        setting): the loaded estimator has ``samples=None``, transforms
        single samples and scores triplet rows; ``set_params(samples=X)``
        lets it score index triplets again.
    path : str or os.PathLike
        Where to write (conventionally with a ``.sktriplet`` suffix).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        If the estimator is not fitted.
    ValueError
        If the module cannot be stored safely (see ``estimator``).

    Warns
    -----
    UserWarning
        For parameters that are not JSON-able and are left out (such as
        ``callbacks`` or a ``RandomState`` instance); they take their default
        values when loaded.

    See Also
    --------
    load : Read the file back.

    Examples
    --------
    >>> import tempfile, os
    >>> from sklearn.datasets import load_digits
    >>> from sktriplet import TripletEmbedder, load, save
    >>> X, y = load_digits(return_X_y=True)
    >>> emb = TripletEmbedder(max_epochs=1, n_components=8, random_state=0).fit(X[:200], y[:200])
    >>> path = os.path.join(tempfile.mkdtemp(), "digits.sktriplet")
    >>> save(emb, path)
    >>> bool((load(path).transform(X[:5]) == emb.transform(X[:5])).all())
    True
    """
    from sktriplet.embedder import TripletEmbedder

    if not isinstance(estimator, TripletEmbedder):
        raise TypeError(
            f"save expects a fitted TripletEmbedder, got {type(estimator).__name__}; "
            "use pickle or joblib for other objects."
        )
    check_is_fitted(estimator)
    cls = type(estimator)
    if cls is not TripletEmbedder:
        try:
            _class_path(cls)
        except _NotEncodableError as exc:
            if "neither" not in str(exc):
                raise ValueError(f"cannot save a {cls.__qualname__}: {exc}") from None
    if isinstance(estimator.module, nn.Module):
        raise ValueError(
            f"module is an instance of {type(estimator.module).__name__}; the safe format "
            "rebuilds the network from its class and module__* parameters. Pass "
            f"module={type(estimator.module).__name__} (the class) with module__* "
            "parameters, or use pickle/joblib (which run code on load) instead."
        )
    params, dropped = _encoded_params(estimator)
    net = estimator.net_
    config = {
        "format": "sktriplet",
        "format_version": FORMAT_VERSION,
        "sktriplet_version": _version(),
        "torch_version": torch.__version__,
        "estimator": f"{type(estimator).__module__}:{type(estimator).__qualname__}",
        "params": params,
        "dropped_params": dropped,
        "fitted": _encoded_fitted(estimator),
        "input_spec": estimator.input_spec_.to_dict(),
        "net": {"seed": getattr(net, "seed", None), "history": _plain(list(net.history))},
    }
    state = {
        "module": {k: v.detach().cpu() for k, v in net.module_.state_dict().items()},
        "optimizer": _to_cpu(net.optimizer_.state_dict()),
    }
    criterion = {k: v.detach().cpu() for k, v in net.criterion_.state_dict().items()}
    if criterion:  # a criterion with weights (classification_weight > 0)
        state["criterion"] = criterion
    if getattr(net, "rng_state_", None) is not None:
        state["rng_state"] = net.rng_state_.cpu()
    _write(Path(path), config, state)


def _encoded_params(estimator) -> tuple[dict, list[str]]:
    """The JSON-able parameters, and the names of those that are not (dropped)."""
    params, dropped = {}, []
    for name, value in estimator.get_params(deep=False).items():
        if name == "samples":
            # Triplet mode's samples are data, not a setting: the loaded model
            # transforms single samples; set samples again to score index triplets.
            params[name] = None
            continue
        if isinstance(value, nn.Module):
            raise ValueError(
                f"cannot save {name}={type(value).__name__}(...), a module instance: the safe "
                "format stores settings and weights, not objects. Pass the class instead "
                f"({name}={type(value).__name__}, importable and built without arguments; "
                "with module__weights=<a .pt file> for weights of your own), export the "
                "fitted network (export_torchscript / export_onnx), or use pickle/joblib "
                "(which run code on load)."
            )
        try:
            params[name] = _encode(value)
        except _NotEncodableError as exc:
            if name == "module":
                raise ValueError(f"cannot save module={value!r}: {exc}") from None
            if name in ("optimizer",) or isinstance(value, type):
                raise ValueError(f"cannot save {name}={value!r}: {exc}") from None
            dropped.append(name)
    if dropped:
        warnings.warn(
            f"parameters {dropped} are not JSON-able and are not saved; the loaded "
            "estimator has their default values.",
            UserWarning,
            stacklevel=3,
        )
    return params, dropped


def _encoded_fitted(estimator) -> dict:
    """The JSON-able fitted attributes (the net and the spec are stored apart)."""
    fitted = {}
    for name, value in vars(estimator).items():
        if not name.endswith("_") or name.startswith("_") or name in ("net_", "input_spec_"):
            continue
        try:
            fitted[name] = _encode(value)
        except _NotEncodableError:
            warnings.warn(
                f"fitted attribute {name} is not JSON-able and is not saved.",
                UserWarning,
                stacklevel=3,
            )
    return fitted


def _write(path: Path, config: dict, state: dict) -> None:
    """Write the zip: to a temporary name, then renamed (never half-written)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    weights = buffer.getvalue()
    config["weights_bytes"] = len(weights)  # bounds what load inflates
    config_bytes = json.dumps(config, indent=1, allow_nan=True).encode()
    checksums = {"config.json": _sha256(config_bytes), "weights.pt": _sha256(weights)}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("config.json", config_bytes)
            zf.writestr("weights.pt", weights)
            zf.writestr("sha256.json", json.dumps(checksums, indent=1))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _network_variants(params: dict[str, Any], spec: InputSpec) -> list[dict[str, Any]]:
    """The parameter sets a file's weights may fit, the saved ones first.

    Before 29 November 2026 (during 0.1.0's development) the default
    :class:`~sktriplet.networks.ConvEmbedder` averaged its last map
    (``pooling="avg"``); such files name no ``module__pooling`` and their
    weights do not fit today's default (``"avgmax"``), so they are tried
    with ``module__pooling="avg"`` next.
    """
    variants = [params]
    if params.get("module") is None and spec.is_image and "module__pooling" not in params:
        variants.append({**params, "module__pooling": "avg"})
    return variants


def _rebuild_net(params, spec, state, seed, device, name, config, sizes=(None, None)):
    """The net the config describes, with the saved weights; and the params that fit.

    ``sizes`` is ``(n_classes, width)``, which a criterion with a classifier
    (``classification_weight > 0``) is built with.
    """
    from sktriplet.networks.pretrained import weights_loaded_later
    from sktriplet.training.build import build_network
    from sktriplet.training.factory import make_net

    errors = []
    for variant in _network_variants(params, spec):
        # Every weight comes from the file: pretrained weights are not read again.
        with torch.random.fork_rng(devices=[]), weights_loaded_later():
            module = build_network(spec, variant)
            net = make_net(variant, spec, module, seed, device, n_classes=sizes[0], width=sizes[1])
            net.initialize()
        try:
            net.module_.load_state_dict(state["module"], strict=True)
            if isinstance(state.get("criterion"), dict):
                net.criterion_.load_state_dict(state["criterion"], strict=True)
        except (RuntimeError, ValueError, KeyError) as exc:
            errors.append(exc)
            continue
        try:
            if isinstance(state.get("optimizer"), dict):
                net.optimizer_.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            errors.append(exc)
            break
        return net, variant
    raise ModelFileError(
        f"{name!r}: the saved weights do not fit the network that its config "
        f"describes ({errors[0]}). Was the module's code changed since saving? (saved by "
        f"sktriplet {config.get('sktriplet_version', '?')}, loaded by {_version()})"
    ) from None


def _spec(config: dict, fitted: dict, name: str) -> InputSpec:
    """The saved input spec (files of 0.1.0 have only ``input_shape_``)."""
    try:
        if isinstance(config.get("input_spec"), dict):
            spec = InputSpec.from_dict(config["input_spec"])
        else:
            spec = InputSpec.from_input_shape(
                fitted["input_shape_"], fitted.get("feature_names_in_")
            )
        shape = tuple(int(s) for s in fitted.get("input_shape_", spec.sample_shape))
    except (KeyError, TypeError, ValueError):
        raise ModelFileError(f"{name!r}: config.json has no valid input spec.") from None
    if shape != spec.sample_shape:
        raise ModelFileError(
            f"{name!r}: config.json is inconsistent: input_shape_ {shape} but the input "
            f"spec says {spec.sample_shape}."
        )
    return spec


def _version() -> str:
    from sktriplet import __version__

    return __version__


# --------------------------------------------------------------------- load
def _refuse(path: str | os.PathLike, problem: str) -> ModelFileError:
    return ModelFileError(
        f"{os.fspath(path)!r} is not a valid sktriplet model file: {problem}. Refusing to "
        "read it; load only files written by sktriplet.save (save the model again if it "
        "is yours)."
    )


def _member_limit(name: str, info: zipfile.ZipInfo, declared_weights: int | None) -> int:
    """The most bytes ``name`` may inflate to (see the module's limits)."""
    if name == "sha256.json":
        return MAX_CHECKSUMS_BYTES
    if name == "config.json":
        return MAX_CONFIG_BYTES
    cap = MAX_WEIGHTS_BYTES if declared_weights is None else declared_weights
    return min(cap, max(2**20, MAX_WEIGHTS_RATIO * info.compress_size))


def _read_member(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, path: str | os.PathLike
) -> bytes:
    """Inflate one member in chunks, refusing it once it passes ``limit`` bytes.

    The size in the zip's header is checked first (a bomb that declares its
    size is refused without inflating anything), and never trusted: reading
    stops one chunk past ``limit`` whatever the header says.
    """
    if info.file_size > limit:
        raise _refuse(
            path,
            f"its member {info.filename} declares {info.file_size:,} bytes, more than the "
            f"{limit:,} bytes allowed for it",
        )
    chunks, total = [], 0
    with zf.open(info) as member:
        while chunk := member.read(min(_CHUNK, limit + 1 - total)):
            total += len(chunk)
            if total > limit:
                raise _refuse(path, f"its member {info.filename} inflates past {limit:,} bytes")
            chunks.append(chunk)
    if total != info.file_size:
        raise _refuse(
            path,
            f"its member {info.filename} holds {total:,} bytes where its header declares "
            f"{info.file_size:,}",
        )
    return b"".join(chunks)


def _members_of(zf: zipfile.ZipFile, path: str | os.PathLike) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    names = [info.filename for info in infos]
    if len(infos) != len(_MEMBERS) or set(names) != set(_MEMBERS):
        shown = sorted(set(names))[:10]
        raise ModelFileError(
            f"{os.fspath(path)!r} is not an sktriplet model file: it holds {len(infos)} "
            f"members {shown}, expected exactly {list(_MEMBERS)}. Was it written by "
            "sktriplet.save?"
        )
    return {info.filename: info for info in infos}


def _check_config(path: str | os.PathLike, config_bytes: bytes) -> dict:
    try:
        config = json.loads(config_bytes)
    except ValueError:
        raise ModelFileError(f"{os.fspath(path)!r}: config.json is not valid JSON.") from None
    if not isinstance(config, dict) or config.get("format") != "sktriplet":
        raise ModelFileError(f"{os.fspath(path)!r} is not an sktriplet model file.")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{os.fspath(path)!r} has format version {version!r}, newer than this "
            f"sktriplet ({_version()}, format {FORMAT_VERSION}) reads; upgrade sktriplet."
        )
    declared = config.get("weights_bytes")
    if declared is not None and (
        isinstance(declared, bool) or not isinstance(declared, int) or declared < 0
    ):
        raise _refuse(path, f"its config declares weights_bytes={declared!r}")
    return config


def _verify(path: str | os.PathLike, checksums: Any, name: str, data: bytes) -> None:
    if not isinstance(checksums, dict) or checksums.get(name) != _sha256(data):
        raise ModelFileError(
            f"{os.fspath(path)!r}: the SHA-256 checksum of {name} does not match; the "
            "file was modified or corrupted after it was saved. Refusing to load it."
        )


def _read(path: str | os.PathLike) -> tuple[dict, bytes]:
    """The verified config and weights bytes of a model file, read within bounds.

    Members are read in this order, each bounded before it is inflated:
    ``sha256.json``, ``config.json`` (checked against its checksum and
    parsed), then ``weights.pt``, bounded by the size the config declares.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            infos = _members_of(zf, path)
            raw = {}
            for name in ("sha256.json", "config.json"):
                limit = _member_limit(name, infos[name], None)
                raw[name] = _read_member(zf, infos[name], limit, path)
            try:
                checksums = json.loads(raw["sha256.json"])
            except ValueError:
                raise ModelFileError(
                    f"{os.fspath(path)!r}: sha256.json is not valid JSON."
                ) from None
            _verify(path, checksums, "config.json", raw["config.json"])
            config = _check_config(path, raw["config.json"])
            info = infos["weights.pt"]
            limit = _member_limit("weights.pt", info, config.get("weights_bytes"))
            weights = _read_member(zf, info, limit, path)
    except zipfile.BadZipFile as exc:
        raise ModelFileError(
            f"{os.fspath(path)!r} is not a valid sktriplet model file (not a complete zip "
            f"archive: {exc}); it may be truncated or corrupted. Save the model again "
            "with sktriplet.save."
        ) from None
    _verify(path, checksums, "weights.pt", weights)
    return config, weights


def load(path: str | os.PathLike, *, device: str = "cpu"):
    """Load a :class:`~sktriplet.TripletEmbedder` written by :func:`save`.

    Nothing in the file is unpickled beyond tensors and plain containers
    (``torch.load(weights_only=True)``), and the checksums are verified
    before any of it is used. Class paths in the config are imported and must
    name ``torch.nn.Module`` or ``torch.optim.Optimizer`` subclasses.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save`.
    device : str, default="cpu"
        Where to put the network. Weights saved from a GPU load on a
        CPU-only machine with the default.

    Returns
    -------
    TripletEmbedder
        The fitted estimator: ``transform`` gives the same embeddings as the
        saved one, and with ``warm_start=True`` training continues where it
        stopped (optimizer state, history and random state are restored).

    Raises
    ------
    ModelFileError
        If the file is not an sktriplet model file, is truncated, was modified
        after saving, or holds anything but tensors in its weights.

    See Also
    --------
    save : Write the file.

    Examples
    --------
    >>> import tempfile, os
    >>> from sklearn.datasets import load_digits
    >>> from sktriplet import TripletEmbedder, load, save
    >>> X, y = load_digits(return_X_y=True)
    >>> emb = TripletEmbedder(max_epochs=1, n_components=8, random_state=0).fit(X[:200], y[:200])
    >>> path = os.path.join(tempfile.mkdtemp(), "digits.sktriplet")
    >>> save(emb, path)
    >>> load(path).n_components_
    8
    """
    from sktriplet.embedder import TripletEmbedder, resolve_device
    from sktriplet.training.build import ROUTED_PREFIXES

    config, weights = _read(path)
    name = os.fspath(path)
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise ModelFileError(
            f"{name!r}: weights.pt holds something other than tensors and plain "
            f"containers, so torch.load(weights_only=True) refused it ({exc}). Refusing "
            "to load it."
        ) from None
    if not isinstance(state, dict) or not isinstance(state.get("module"), dict):
        raise ModelFileError(f"{name!r}: weights.pt does not hold a network state dict.")
    try:
        params = {k: _decode(v) for k, v in config["params"].items()}
        fitted = {k: _decode(v) for k, v in config["fitted"].items()}
        net_config = dict(config["net"])
    except ModelFileError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ModelFileError(
            f"{name!r}: config.json is malformed ({type(exc).__name__}: {exc})."
        ) from None
    estimator_class = TripletEmbedder
    if config.get("estimator", _ESTIMATOR) not in (_ESTIMATOR, _ESTIMATOR_010):
        estimator_class = _resolve(config["estimator"], check=False)
        if not (isinstance(estimator_class, type) and issubclass(estimator_class, TripletEmbedder)):
            raise ModelFileError(
                f"{name!r} names the estimator {config['estimator']}, which is not a "
                "TripletEmbedder subclass; refusing to use it."
            )
    estimator = estimator_class()
    known = set(estimator._get_param_names())
    unknown = [k for k in params if k not in known and not k.startswith(ROUTED_PREFIXES)]
    if unknown:
        raise ModelFileError(
            f"{name!r} has parameters {unknown} that this sktriplet ({_version()}) does "
            "not know; upgrade sktriplet."
        )
    if params.get("module") is not None and not issubclass(params["module"], nn.Module):
        raise ModelFileError(f"{name!r}: module is not a torch.nn.Module subclass.")
    estimator.set_params(**params)
    device = resolve_device(device)
    spec = _spec(config, fitted, name)
    for key, value in fitted.items():
        setattr(estimator, key, value)
    estimator.input_spec_ = spec
    estimator.input_shape_ = spec.sample_shape
    classes = fitted.get("classes_")
    sizes = (None if classes is None else len(classes), fitted.get("n_components_"))
    params_now = estimator.get_params(deep=False)
    net, used = _rebuild_net(
        params_now, spec, state, net_config.get("seed"), device, name, config, sizes
    )
    if "module__pooling" in used and "module__pooling" not in params:
        estimator.set_params(module__pooling=used["module__pooling"])
    net.history = History(net_config.get("history") or [])
    if isinstance(state.get("rng_state"), torch.Tensor):
        net.rng_state_ = state["rng_state"]
    estimator.net_ = net
    estimator.device_ = device
    return estimator
