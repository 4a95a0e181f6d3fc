"""`TripletEmbedder`: the scikit-learn face of triplet training.

The estimator is thin glue: it validates input, builds the network and a
:class:`~sktriplet.training.net.TripletNet` (skorch) in ``fit`` and keeps it as
``net_``; the loss, mining, batches and networks live in their own modules.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import numbers
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import _num_samples, check_array, check_is_fitted, validate_data
from torch import nn

from sktriplet.networks import ConvEmbedder, MLPEmbedder, Standardize
from sktriplet.training.callbacks import MiningStats, RetrievalValidation
from sktriplet.training.net import ArrayDataset, TrainingDivergedError, TripletNet
from sktriplet.triplets.distances import DISTANCES
from sktriplet.triplets.losses import TripletLoss
from sktriplet.triplets.mining import MINING_STRATEGIES

__all__ = ["TripletEmbedder"]

#: Prefixes of the double-underscore parameters routed to inner objects.
ROUTED_PREFIXES = ("module__", "optimizer__", "callbacks__")

#: History keys recorded every epoch but left out of the ``verbose=1`` table.
_QUIET_HISTORY_KEYS = [
    "train_fallback",
    "train_d_ap",
    "train_d_an",
    "train_spread",
    "valid_r_precision",
    "valid_map_at_r_best",
    "valid_map_at_r_start",
    "valid_r_precision_start",
    "valid_precision_at_1_start",
]


def _callback_name(cb) -> str | None:
    return cb[0] if isinstance(cb, tuple) else None


#: ``augment="auto"`` moves images at least this many pixels high and wide
#: (on 8x8 digits a 2-pixel shift is a quarter of the image and hurts).
AUTO_AUGMENT_MIN_SIZE = 16

#: ``lr="auto"``: the peak learning rate for images and for 2-D ``X``
#: (see ``docs/defaults.md``).
AUTO_LR_IMAGES = 2e-3
AUTO_LR_ROWS = 1e-3

#: Rows embedded at a time by ``transform`` (bounds its memory).
TRANSFORM_BATCH_SIZE = 1024


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or "
            "'cuda:N'."
        ) from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available on this machine; "
            "use device='cpu' or device='auto'."
        )
    if parsed.type == "cuda" and (parsed.index or 0) >= torch.cuda.device_count():
        raise ValueError(
            f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA "
            "device(s); use device='cuda' or an index below that."
        )
    return device


def _check_numeric_columns(X) -> None:
    """Refuse a DataFrame with non-numeric columns, naming them and the fix."""
    dtypes = getattr(X, "dtypes", None)
    if not hasattr(dtypes, "items") or not hasattr(X, "columns"):
        return  # not a pandas DataFrame
    from pandas.api.types import is_numeric_dtype

    bad = [(c, str(t)) for c, t in dtypes.items() if not is_numeric_dtype(t)]
    if bad:
        shown = ", ".join(f"{c!r} ({t})" for c, t in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise ValueError(
            f"X has {len(bad)} non-numeric column(s): {shown}. TripletEmbedder needs "
            "numbers; encode them first (e.g. OneHotEncoder or OrdinalEncoder in a "
            "ColumnTransformer) or drop them."
        )


def _check_components(est: TripletEmbedder, fit_params: dict) -> None:
    """Refuse extra fit arguments and wrong module/optimizer/callback types early."""
    from skorch.callbacks import Callback

    if fit_params:
        raise TypeError(
            f"fit got unexpected keyword argument(s) {sorted(fit_params)}; the network "
            "(input standardisation, then the module) takes only the batch of samples. "
            "Pass only X and y."
        )
    if isinstance(est.module, type) and not issubclass(est.module, nn.Module):
        raise TypeError(
            f"module must be a torch.nn.Module subclass or instance, or None; got the "
            f"class {est.module.__name__}."
        )
    if not issubclass(est.optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer subclass such as torch.optim.Adam; "
            f"got {est.optimizer.__name__}."
        )
    for i, cb in enumerate(est.callbacks or []):
        item = cb[1] if isinstance(cb, tuple) and len(cb) == 2 and isinstance(cb[0], str) else cb
        ok = isinstance(item, Callback) or (isinstance(item, type) and issubclass(item, Callback))
        if not ok:
            raise TypeError(
                f"callbacks[{i}] is {cb!r} ({type(cb).__name__}); pass skorch callbacks "
                "(skorch.callbacks.Callback instances) or (name, callback) pairs."
            )


def _explain_non_numeric(exc: ValueError) -> None:
    if "could not convert" in str(exc):
        raise ValueError(
            f"X must be numeric ({exc}); encode string or categorical features first "
            "(e.g. with OneHotEncoder or OrdinalEncoder)."
        ) from exc


def _check_finite_output(net: TripletNet, X: np.ndarray) -> None:
    """Raise if the trained network embeds training samples to non-finite values."""
    module = net.module_
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.from_numpy(np.ascontiguousarray(X)).to(net.device))
    finally:
        module.train(was_training)
    if not bool(torch.isfinite(out).all()):
        raise TrainingDivergedError(
            f"after {len(net.history)} epoch(s) the network maps training samples to "
            f"non-finite embeddings: training diverged. Lower the learning rate (lr={net.lr} "
            f"now, try lr={net.lr / 10:g}) or check the input for extreme values."
        )


def _all_finite(a: np.ndarray, block: int = 1 << 20) -> bool:
    """Whether every entry of ``a`` is finite, in blocks of about ``block`` entries.

    One vectorised pass, with a temporary of at most ``block`` booleans
    instead of one of the array's size.
    """
    if a.dtype.kind != "f":
        return True
    flat = a.reshape(len(a), -1) if a.ndim else a.reshape(1, 1)
    rows = max(1, block // max(1, flat.shape[1]))
    return all(np.isfinite(flat[i : i + rows]).all() for i in range(0, len(flat), rows))


def _check_finite(X: np.ndarray) -> None:
    """Raise scikit-learn's error for NaN or infinity in ``X``."""
    if not _all_finite(X):
        check_array(X, dtype=None, input_name="X", ensure_min_samples=0)  # raises


def _check_float32_range(X: np.ndarray) -> None:
    if X.dtype == np.float64 and X.size and np.abs(X).max() > np.finfo(np.float32).max:
        raise ValueError(
            "X has values beyond the float32 range (|x| > 3.4e38), which the network "
            "cannot represent; rescale X (e.g. with StandardScaler) first."
        )


class TripletEmbedder(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Learn an embedding with triplet loss and online mining.

    ``fit`` trains a neural network (through skorch) so that samples of the
    same class lie close together and samples of different classes far apart;
    ``transform`` maps samples to that embedding. The embedding feeds any
    scikit-learn estimator, above all
    :class:`~sklearn.neighbors.KNeighborsClassifier`, and recognises classes
    never seen in training by nearest neighbours.

    Training draws class-balanced batches (``batch_size // samples_per_class``
    classes, ``samples_per_class`` samples each) and mines triplets on each
    batch's distance matrix (see :func:`sktriplet.triplets.losses.triplet_loss`).

    Parameters
    ----------
    margin : float, default=0.2
        Margin of the triplet hinge. Its scale follows ``distance``: the
        default networks output unit vectors, on which ``"sqeuclidean"``
        distances lie in ``[0, 4]`` and the other two in ``[0, 2]``.
    mining : {"semihard", "hard", "all"}, default="semihard"
        Which triplets of each batch enter the loss.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance in the embedding space, for training and for :meth:`score`.
    soft : bool, default=False
        Soft margin ``log1p(exp(d(a, p) - d(a, n)))`` in place of the hinge.
    n_components : int, default=64
        Embedding dimension.
    module : torch.nn.Module class or instance, default=None
        The embedding network. ``None`` picks :class:`~sktriplet.networks.MLPEmbedder`
        for 2-D ``X`` and :class:`~sktriplet.networks.ConvEmbedder` for images.
        A class is instantiated in ``fit`` with the ``module__*`` parameters,
        plus ``n_features``, ``in_channels``, ``image_size`` and
        ``n_components`` where its constructor takes them. Its output must have
        shape ``(batch, n_components)``.
    max_epochs : int, default=30
        Number of passes over the training data.
    batch_size : int, default=128
        Samples per training batch.
    samples_per_class : int, default=8
        Samples of each class in a training batch (at least 2).
    lr : float or "auto", default="auto"
        Learning rate (the peak of the schedule). ``"auto"`` is ``2e-3`` for
        images and ``1e-3`` for 2-D ``X``; ``net_.lr`` holds the value used.
    lr_schedule : {"auto", "cosine", "constant"} or None, default="auto"
        How the learning rate moves over the ``max_epochs`` epochs of a
        ``fit``. ``"cosine"``: ``lr / 2`` in the first epoch (warm-up), then
        ``lr * 0.5 * (1 + cos(pi * (e - 1) / (max_epochs - 1)))`` in the
        epochs ``e = 1, ..., max_epochs - 1`` (counting from 0), from ``lr``
        down to a small fraction of it
        (:class:`sktriplet.training.schedules.CosineLR`, one step per epoch, recorded as
        ``lr`` in ``net_.history``). ``"constant"`` and
        ``None`` keep ``lr``. ``"auto"`` is ``"cosine"`` for images and
        ``"constant"`` for 2-D ``X``. A warm-started fit runs the schedule
        again over its own epochs. Set ``"constant"`` when ``callbacks``
        holds a schedule of its own (e.g. skorch's ``LRScheduler``). Why,
        with numbers: ``docs/defaults.md``.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        Optimizer; its other arguments go as ``optimizer__*`` parameters.
    device : str, default="auto"
        ``"auto"`` (a GPU when one is present), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.
    random_state : int, RandomState instance or None, default=None
        Seed of the network's initialisation and of the batches. An int gives
        bitwise-identical embeddings on CPU.
    verbose : int, default=0
        ``0`` is silent; ``1`` prints a table per epoch (loss, active
        triplets, validation scores when enabled, time); ``2`` adds a
        progress bar over the batches of each epoch (needs ``tqdm``).
    callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks (or ``(name, callback)`` pairs).
    warm_start : bool, default=False
        When fitted already, continue training the same network (and the
        optimizer's state) instead of starting over. Loss, learning-rate and
        batch parameters changed since the last fit apply to the new epochs.
    validation_fraction : float or None, default=None
        Hold out this fraction of the training data and score retrieval on it
        after every epoch (``valid_map_at_r``, ``valid_r_precision`` and
        ``valid_precision_at_1`` in ``net_.history``); the weights of the best
        epoch by MAP@R are kept. The network training starts from is scored
        too, as epoch 0 (``valid_map_at_r_start`` in the first epoch's row)
        and kept when no epoch beats it, so on the held-out data the result
        is never worse than the untrained network. ``None`` trains on all the
        data, so ``fit`` inside cross-validation holds nothing back.
    validation_split : {"class", "sample"}, default="class"
        How to hold out: ``"class"`` holds out whole classes (the open-set
        protocol: validation measures classes never trained on);
        ``"sample"`` holds out a stratified fraction of each class's samples.
    n_iter_no_change : int or None, default=None
        With validation, stop when MAP@R has not improved for this many
        epochs. ``None`` trains for ``max_epochs``.
    precision : {"32", "bf16", "16"}, default="32"
        Mixed precision for training: ``"bf16"`` or ``"16"`` run the
        network's forward pass under :func:`torch.autocast` in bfloat16 or
        float16, while distances and mining stay in float32; ``"16"`` also
        scales the loss against gradient underflow. ``transform`` always runs
        in float32. Meant for GPUs (``"bf16"`` on Ampere or newer); see the
        scaling guide.
    augment : "auto", bool or callable, default="auto"
        Light augmentation of the training batches (never of ``transform``):
        ``"auto"`` and ``True`` move every training image by a random shift of
        up to 2 pixels, rotation of up to 10 degrees and scaling of up to 10 %
        (:class:`sktriplet.vision.augment.RandomAffine`); ``"auto"`` does so for
        images of at least 16x16 pixels only (smaller ones and 2-D ``X`` are
        left alone), ``True`` with 2-D ``X`` is an error, ``False`` turns it
        off. A callable is applied to each training
        batch ``X`` (a tensor) as it is. Why it is on, with numbers:
        ``docs/defaults.md``; turn it off for images whose meaning changes
        when moved or turned.
    scaling : {"feature", "global"} or None, default="feature"
        Input standardisation, learnt in ``fit`` and applied by the network's
        first layer. ``"feature"`` centres every feature and divides it by its
        own standard deviation (images: per channel), right for tabular data
        whose columns have different units. ``"global"`` centres every feature
        (images: every channel) the same way but divides all of them by one
        common scale, the root mean square of the centred values, so the
        features keep their relative weights: right when all columns are
        values of one kind, such as the pixels of flattened images, where
        per-feature scaling inflates rarely-varying border pixels. ``None``
        passes the input as it is (as float32). With few training classes
        and pixel-like 2-D data, ``"global"`` with a brief, gentle training is
        the documented setting (``docs/defaults.md``, "The hard case").
    **kwargs : dict
        ``module__*``, ``optimizer__*`` and ``callbacks__*`` parameters, routed
        to the network's constructor, the optimizer and named callbacks (as in
        skorch). They are ordinary parameters for ``get_params``,
        ``set_params``, ``clone`` and ``GridSearchCV``.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained skorch net; ``net_.module_`` is the network (input
        standardisation first), ``net_.history`` the training history.
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    n_features_in_ : int
        Number of features (for images, values per image).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.
    input_shape_ : tuple of int
        Shape of one sample: ``(n_features,)`` or ``(C, H, W)``.
    n_components_ : int
        Width of the embedding.
    device_ : str
        The device the network was trained on.
    best_epoch_ : int
        With ``validation_fraction``: the epoch whose weights were kept;
        ``0`` when no epoch beat the untrained network on the held-out data,
        which is then what ``transform`` uses (with ``warm_start``, the
        number of earlier epochs when none beat the previous fit's weights).
    best_validation_score_ : float
        With ``validation_fraction``: that epoch's validation MAP@R.
    validation_indices_ : ndarray of int
        With ``validation_fraction``: indices (into the ``X`` given to
        ``fit``) of the samples held out for validation.

    See Also
    --------
    sklearn.neighbors.NeighborhoodComponentsAnalysis : Linear metric learning.
    sktriplet.triplets.losses.triplet_loss : The loss, as a function.

    Notes
    -----
    Inside a :mod:`torch.distributed` process group of several processes
    (``torchrun``), ``fit`` trains with global mining across the processes
    (see :mod:`sktriplet.training.distributed`); ``batch_size`` is then per process.

    By default 2-D input is standardised per feature and images per channel
    (means and scales learnt in ``fit``, see ``scaling``) before reaching the
    network. Images are given
    as ``(n_samples, H, W)`` or ``(n_samples, C, H, W)`` arrays; uint8 images
    are kept as uint8 in memory and converted batch by batch. Sparse input is
    refused (densify it with ``.toarray()``): densifying silently could
    exhaust memory.

    ``fit`` validates everything before training and, when it fails, leaves
    the estimator as it was. It stops with ``FloatingPointError`` at the
    first non-finite training loss or weights, and never returns non-finite
    embeddings. A ``KeyboardInterrupt`` during ``fit`` keeps the weights of
    the last completed epoch and returns normally; ``warm_start=True`` then
    continues from there, and on CPU ends with the same weights as an
    uninterrupted fit. :func:`sktriplet.save` and :func:`sktriplet.load`
    store a fitted estimator without pickle (see
    ``docs/reproducibility.md``).

    References
    ----------
    .. [1] Schroff, Kalenichenko and Philbin, "FaceNet: A Unified Embedding
       for Face Recognition and Clustering", CVPR 2015.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from sktriplet import TripletEmbedder
    >>> X, y = load_digits(return_X_y=True)
    >>> pipe = make_pipeline(TripletEmbedder(max_epochs=3, random_state=0),
    ...                      KNeighborsClassifier())
    >>> pipe.fit(X[:1000], y[:1000]).score(X[1000:], y[1000:]) > 0.85
    True
    """

    _parameter_constraints: dict = {
        "margin": [Interval(numbers.Real, 0, None, closed="left")],
        "mining": [StrOptions(set(MINING_STRATEGIES))],
        "distance": [StrOptions(set(DISTANCES))],
        "soft": ["boolean"],
        "n_components": [Interval(numbers.Integral, 1, None, closed="left")],
        "module": [None, type, nn.Module],
        "max_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 2, None, closed="left")],
        "samples_per_class": [Interval(numbers.Integral, 2, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "lr_schedule": [StrOptions({"auto", "cosine", "constant"}), None],
        "optimizer": [type],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [None, list],
        "warm_start": ["boolean"],
        "validation_fraction": [None, Interval(numbers.Real, 0, 1, closed="neither")],
        "validation_split": [StrOptions({"class", "sample"})],
        "n_iter_no_change": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "precision": [StrOptions({"32", "bf16", "16"})],
        "augment": [StrOptions({"auto"}), "boolean", callable],
        "scaling": [StrOptions({"feature", "global"}), None],
    }

    def __init__(
        self,
        *,
        margin: float = 0.2,
        mining: str = "semihard",
        distance: str = "sqeuclidean",
        soft: bool = False,
        n_components: int = 64,
        module: type[nn.Module] | nn.Module | None = None,
        max_epochs: int = 30,
        batch_size: int = 128,
        samples_per_class: int = 8,
        lr: float | str = "auto",
        lr_schedule: str | None = "auto",
        optimizer: type = torch.optim.Adam,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        callbacks: list | None = None,
        warm_start: bool = False,
        validation_fraction: float | None = None,
        validation_split: str = "class",
        n_iter_no_change: int | None = None,
        precision: str = "32",
        augment: str | bool | Any = "auto",
        scaling: str | None = "feature",
        **kwargs: Any,
    ) -> None:
        self.margin = margin
        self.mining = mining
        self.distance = distance
        self.soft = soft
        self.n_components = n_components
        self.module = module
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.samples_per_class = samples_per_class
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.optimizer = optimizer
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.warm_start = warm_start
        self.validation_fraction = validation_fraction
        self.validation_split = validation_split
        self.n_iter_no_change = n_iter_no_change
        self.precision = precision
        self.augment = augment
        self.scaling = scaling
        for key, value in kwargs.items():
            setattr(self, key, value)

    # ------------------------------------------------------------------ params
    def _routed(self, prefix: str | None = None) -> dict[str, Any]:
        """The keyword parameters beyond the signature (all, or one prefix's)."""
        named = set(self._get_param_names())
        items = {
            k: v
            for k, v in vars(self).items()
            if k not in named and not k.startswith("_") and not k.endswith("_")
        }
        if prefix is None:
            return items
        return {k[len(prefix) :]: v for k, v in items.items() if k.startswith(prefix)}

    def _check_routed(self) -> None:
        unknown = [k for k in self._routed() if not k.startswith(ROUTED_PREFIXES)]
        if unknown:
            raise TypeError(
                f"TripletEmbedder got unexpected parameter(s) {unknown}; extra "
                f"parameters must start with one of {list(ROUTED_PREFIXES)}."
            )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Get the parameters, including the routed ``module__*`` ones.

        Parameters
        ----------
        deep : bool, default=True
            Also return the parameters of contained estimators.

        Returns
        -------
        dict
            Parameter names mapped to their values.
        """
        params = super().get_params(deep=deep)
        params.update(self._routed())
        return params

    def set_params(self, **params: Any) -> TripletEmbedder:
        """Set parameters, including routed ``module__*`` ones.

        Parameters
        ----------
        **params : dict
            Parameter names mapped to new values.

        Returns
        -------
        TripletEmbedder
            This estimator.
        """
        for key in [k for k in params if k.startswith(ROUTED_PREFIXES) or k in self._routed()]:
            setattr(self, key, params.pop(key))
        return super().set_params(**params)

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    # -------------------------------------------------------------- input data
    def _validate_X(self, X, *, reset: bool, y=None):
        """Validate ``X`` (and ``y`` when fitting); return numpy arrays."""
        if isinstance(X, torch.Tensor):
            X = X.detach().cpu().numpy()
        ndim = getattr(X, "ndim", None)
        if ndim is None and not hasattr(X, "iloc"):
            try:
                ndim = np.asarray(X).ndim
            except ValueError:
                raise ValueError(
                    "X is ragged: its rows (or images) do not all have the same length; "
                    "pass a 2-D array of equal-length rows or images of one shape."
                ) from None
        if ndim is not None and ndim >= 3:
            return self._validate_images(X, reset=reset, y=y)
        _check_numeric_columns(X)
        if reset:
            try:
                X, y = validate_data(
                    self, X, y, dtype=[np.float32, np.float64], ensure_min_samples=2
                )
            except ValueError as exc:
                _explain_non_numeric(exc)
                if "inconsistent numbers of samples" not in str(exc):
                    raise
                raise ValueError(
                    f"X has {_num_samples(X)} samples but y has {_num_samples(y)}; pass "
                    "one label per sample."
                ) from None
            self.input_shape_ = (X.shape[1],)
        else:
            try:
                # NaN/inf are checked below in one vectorised pass (sklearn's
                # check costs ~3x as much; it still words the error).
                X = validate_data(
                    self, X, reset=False, dtype=[np.float32, np.float64], ensure_all_finite=False
                )
                _check_finite(X)
            except ValueError as exc:
                _explain_non_numeric(exc)
                raise
            if len(self.input_shape_) != 1:
                raise ValueError(
                    f"TripletEmbedder was fitted on images of shape {self.input_shape_} "
                    f"but X is 2-D with shape {X.shape}; pass images of that shape."
                )
        _check_float32_range(X)
        X = X.astype(np.float32, copy=False)
        return X if y is None else (X, y)

    def _validate_images(self, X, *, reset: bool, y=None):
        if X.ndim > 4:
            raise ValueError(
                f"X has {X.ndim} dimensions; images must be (n_samples, H, W) or "
                "(n_samples, C, H, W)."
            )
        X = check_array(
            X,
            allow_nd=True,
            dtype=None if np.asarray(X).dtype == np.uint8 else np.float32,
            ensure_min_samples=2 if reset else 1,
            input_name="X",
        )
        if X.dtype != np.uint8:
            X = X.astype(np.float32, copy=False)
        if X.ndim == 3:
            X = X[:, None]
        shape = tuple(int(s) for s in X.shape[1:])
        if 0 in shape:
            raise ValueError(
                f"X has images of shape {shape} (as (C, H, W)) with an empty dimension; "
                "pass images with at least one channel and one pixel."
            )
        if reset and X.ndim == 4 and shape[2] in (1, 3, 4) and shape[0] > 4:
            warnings.warn(
                f"X has images of shape {shape} read as (C, H, W), i.e. {shape[0]} "
                f"channels of {shape[1]}x{shape[2]} pixels; if they are channels-last "
                "(n_samples, H, W, C), pass X.transpose(0, 3, 1, 2).",
                UserWarning,
                stacklevel=4,
            )
        if reset:
            if y is None:
                raise ValueError(
                    "TripletEmbedder requires y to be passed, but the target y is None."
                )
            self.input_shape_ = shape
            self.n_features_in_ = int(np.prod(shape))
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            y = np.asarray(y)
            if y.ndim == 2 and y.shape[1] == 1:
                y = y.ravel()
            if len(y) != len(X):
                raise ValueError(
                    f"X has {len(X)} samples but y has {len(y)}; pass one label per sample."
                )
            return X, y
        check_is_fitted(self)
        if len(self.input_shape_) == 1:
            raise ValueError(
                f"X has images of shape {shape} (as (C, H, W)) but TripletEmbedder was "
                f"fitted on 2-D X with {self.input_shape_[0]} features; pass X of shape "
                f"(n_samples, {self.input_shape_[0]})."
            )
        if shape != self.input_shape_:
            raise ValueError(
                f"X has images of shape {shape} (as (C, H, W)) but TripletEmbedder was "
                f"fitted on images of shape {self.input_shape_}; resize them to match."
            )
        return X

    @staticmethod
    def _encode_labels(y) -> tuple[np.ndarray, np.ndarray]:
        kind = type_of_target(y, input_name="y", raise_unknown=True)
        if kind not in ("binary", "multiclass"):
            raise ValueError(
                f"TripletEmbedder needs class labels, but y is {kind!r} (e.g. "
                "continuous values); pass one discrete class label per sample."
            )
        classes, codes = np.unique(y, return_inverse=True)
        counts = np.bincount(codes)
        if len(classes) < 2:
            raise ValueError(
                f"y has 1 class ({classes[0]!r}); triplet training needs at least "
                "2 classes so that every anchor has negatives."
            )
        if counts.max() < 2:
            raise ValueError(
                "every class in y has a single sample; at least one class needs 2 or "
                "more samples to form positive pairs."
            )
        return classes, codes.astype(np.int64)

    # --------------------------------------------------------------- building
    def _build_module(self, X: np.ndarray) -> nn.Module:
        module = self.module
        kwargs = self._routed("module__")
        if isinstance(module, nn.Module):
            if kwargs:
                raise ValueError(
                    "module__* parameters need module to be a class, not an instance; "
                    f"got {sorted(kwargs)} with an instance of {type(module).__name__}."
                )
            body = copy.deepcopy(module)
        else:
            if module is None:
                module = MLPEmbedder if X.ndim == 2 else ConvEmbedder
            sig = inspect.signature(module)
            sized = {
                "n_features": X.shape[1] if X.ndim == 2 else int(np.prod(X.shape[1:])),
                "in_channels": X.shape[1] if X.ndim == 4 else None,
                "image_size": tuple(X.shape[2:]) if X.ndim == 4 else None,
                "n_components": self.n_components,
            }
            accepts_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
            for name, value in sized.items():
                if (
                    value is not None
                    and name not in kwargs
                    and (name in sig.parameters or (accepts_any and name == "n_components"))
                ):
                    kwargs[name] = value
            try:
                body = module(**kwargs)
            except TypeError as exc:
                raise TypeError(
                    f"could not build module {getattr(module, '__name__', module)} with "
                    f"arguments {sorted(kwargs)}: {exc}. Check the module__* parameters "
                    "against its constructor."
                ) from exc
        mean, scale = _input_scaling(X, self.scaling)
        return nn.Sequential(Standardize(mean, scale), body)

    def _check_module_output(self, net: TripletNet, X: np.ndarray) -> int:
        module = net.module_
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                sample = torch.from_numpy(np.ascontiguousarray(X[:2])).to(net.device)
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
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != 2:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(
                f"the module must return a 2-D tensor (batch, n_components); for a "
                f"batch of 2 it returned {shape}."
            )
        if out.shape[1] != self.n_components:
            raise ValueError(
                f"the module returns embeddings of width {out.shape[1]} but "
                f"n_components={self.n_components}; set n_components={out.shape[1]} "
                "or change the module."
            )
        return int(out.shape[1])

    def _split_validation(
        self, X: np.ndarray, codes: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Boolean mask of the samples held out for validation (or ``None``)."""
        if self.validation_fraction is None:
            return None
        rng = np.random.default_rng([seed, 1])
        counts = np.bincount(codes)
        if self.validation_split == "class":
            candidates = rng.permutation(np.flatnonzero(counts >= 2))
            n_valid = int(round(self.validation_fraction * len(counts)))
            n_valid = min(max(n_valid, 2), len(candidates) - 2)
            if n_valid < 2:
                raise ValueError(
                    f"validation_split='class' needs at least 4 classes with 2 or more "
                    f"samples (2 to validate, 2 to train); y has {len(candidates)}. Use "
                    "validation_split='sample' or validation_fraction=None."
                )
            held = np.isin(codes, candidates[:n_valid])
        else:
            held = np.zeros(len(codes), dtype=bool)
            for c in np.flatnonzero(counts >= 4):
                members = rng.permutation(np.flatnonzero(codes == c))
                take = min(max(int(round(self.validation_fraction * len(members))), 2),
                           len(members) - 2)
                held[members[:take]] = True
            if not held.any():
                raise ValueError(
                    "validation_split='sample' needs classes with at least 4 samples "
                    "(2 to validate, 2 to train); use validation_fraction=None."
                )
        return held

    def _validation_callbacks(self, X_valid, y_valid) -> list:
        if X_valid is None:
            return []
        return [
            (
                "retrieval_validation",
                RetrievalValidation(
                    X_valid, y_valid, distance=self.distance, patience=self.n_iter_no_change
                ),
            )
        ]

    def _fitted_on_images(self) -> bool:
        """Whether ``fit`` got images (``(C, H, W)`` samples) rather than rows."""
        return len(self.input_shape_) == 3

    def _lr(self) -> float:
        """The peak learning rate: ``lr``, or what ``lr="auto"`` picks for ``X``."""
        if self.lr != "auto":
            return float(self.lr)
        return AUTO_LR_IMAGES if self._fitted_on_images() else AUTO_LR_ROWS

    def _schedule_callbacks(self) -> list:
        """The learning-rate schedule ``lr_schedule`` asks for, as named callbacks."""
        images = self._fitted_on_images()
        if self.lr_schedule == "cosine" or (self.lr_schedule == "auto" and images):
            from sktriplet.training.schedules import CosineLR

            return [("lr_schedule", CosineLR(warmup_epochs=1))]
        return []

    def _augmenter(self):
        """The training-batch augmentation ``augment`` asks for, or ``None``."""
        images = self._fitted_on_images()
        if callable(self.augment):
            return self.augment
        if self.augment is True and not images:
            raise ValueError(
                f"augment=True needs images, but X is 2-D with {self.input_shape_[0]} "
                "features; use augment='auto' or augment=False for tabular data."
            )
        big = images and min(self.input_shape_[1:]) >= AUTO_AUGMENT_MIN_SIZE
        if self.augment is True or (self.augment == "auto" and big):
            from sktriplet.vision.augment import RandomAffine

            return RandomAffine()
        return None

    def _changed_training_params(self, net: TripletNet) -> dict[str, Any]:
        """Net parameters that differ from this estimator's (for ``warm_start``).

        The loss, learning rate and batch shape follow the current parameters;
        the network and the optimizer's state carry over. skorch updates
        ``lr`` in place, so Adam's moments survive.
        """
        wanted = {
            "criterion__margin": self.margin,
            "criterion__mining": self.mining,
            "criterion__distance": self.distance,
            "criterion__soft": self.soft,
            "lr": self._lr(),
            "batch_size": self.batch_size,
            "samples_per_class": self.samples_per_class,
        }
        changed = {k: v for k, v in wanted.items() if getattr(net, k, None) != v}
        # skorch re-creates the optimizer whenever criterion parameters are
        # set; the criterion has no weights, so update it in place instead.
        for key in [k for k in changed if k.startswith("criterion__")]:
            value = changed.pop(key)
            setattr(net, key, value)
            setattr(net.criterion_, key[len("criterion__") :], value)
        return changed

    def _make_net(self, module: nn.Module, seed: int, device: str) -> TripletNet:
        from sktriplet.training.distributed import DistributedTripletNet, is_distributed

        net_class = DistributedTripletNet if is_distributed() else TripletNet
        return net_class(
            module=module,
            criterion=TripletLoss,
            criterion__margin=self.margin,
            criterion__mining=self.mining,
            criterion__distance=self.distance,
            criterion__soft=self.soft,
            optimizer=self.optimizer,
            lr=self._lr(),
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            samples_per_class=self.samples_per_class,
            seed=seed,
            precision=self.precision,
            augment=self._augmenter(),
            train_split=None,
            callbacks=[
                ("mining_stats", MiningStats()),
                *self._schedule_callbacks(),
                *_progress_callbacks(self.verbose),
                *list(self.callbacks or []),
            ],
            device=device,
            verbose=self.verbose,
            **{f"optimizer__{k}": v for k, v in self._routed("optimizer__").items()},
            **{
                "callbacks__print_log__keys_ignored": _QUIET_HISTORY_KEYS,
                **{f"callbacks__{k}": v for k, v in self._routed("callbacks__").items()},
            },
        )

    # -------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, **fit_params: Any) -> TripletEmbedder:
        """Train the embedding network on labelled samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), (n_samples, H, W) or (n_samples, C, H, W)
            Training samples: feature rows (array or DataFrame) or images.
        y : array-like of shape (n_samples,)
            Class labels (any hashable values, e.g. ints or strings).
        **fit_params : dict
            Passed on to skorch's ``fit`` (and so to the module's ``forward``).

        Returns
        -------
        TripletEmbedder
            The fitted estimator.
        """
        self._check_routed()
        _check_components(self, fit_params)
        if self.batch_size < self.samples_per_class:
            raise ValueError(
                f"batch_size={self.batch_size} is smaller than samples_per_class="
                f"{self.samples_per_class}; a batch must hold at least one class's "
                "samples. Raise batch_size or lower samples_per_class."
            )
        device = _resolve_device(self.device)
        warm = self.warm_start and hasattr(self, "net_")
        previous = {
            k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")
        }
        warm_snapshot = None
        try:
            X, y = self._validate_X(X, reset=True, y=y)
            y = np.asarray(y)
            if y.ndim == 2 and y.shape[1] == 1:
                y = y.ravel()
            classes, codes = self._encode_labels(y)
            if warm and self.input_shape_ != previous["input_shape_"]:
                raise ValueError(
                    f"warm_start=True but X has samples of shape {self.input_shape_}, "
                    f"while the fitted network takes {previous['input_shape_']}."
                )
            rng = check_random_state(self.random_state)
            seed = int(rng.randint(np.iinfo(np.int32).max))
            seed = _broadcast_seed(seed)  # the same on every process when distributed
            cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                held = self._split_validation(X, codes, seed)
                if held is None:
                    X_train, y_train, X_valid, y_valid = X, codes, None, None
                else:
                    X_train, y_train = X[~held], codes[~held]
                    X_valid, y_valid = X[held], codes[held]
                if warm:
                    net = previous["net_"]
                    if getattr(net, "rng_state_", None) is not None:
                        # Continue the torch random stream (dropout) where the last
                        # epoch ended: a resumed fit then equals an uninterrupted one.
                        torch.set_rng_state(net.rng_state_)
                    warm_snapshot = net.snapshot()
                    net.set_params(
                        seed=seed,
                        max_epochs=self.max_epochs,
                        precision=self.precision,
                        **self._changed_training_params(net),
                    )
                    net.callbacks = (
                        [
                            cb
                            for cb in net.callbacks
                            if _callback_name(cb) not in ("retrieval_validation", "lr_schedule")
                        ]
                        + self._schedule_callbacks()
                        + self._validation_callbacks(X_valid, y_valid)
                    )
                    net.initialize_callbacks()
                    net.partial_fit(ArrayDataset(X_train, y_train), None, **fit_params)
                else:
                    net = self._make_net(self._build_module(X), seed, device)
                    net.callbacks = list(net.callbacks) + self._validation_callbacks(
                        X_valid, y_valid
                    )
                    net.initialize()
                    self.n_components_ = self._check_module_output(net, X)
                    net.partial_fit(ArrayDataset(X_train, y_train), None, **fit_params)
                _check_finite_output(net, X_train[:TRANSFORM_BATCH_SIZE])
        except BaseException:
            # Leave the estimator as it was before this call.
            if warm_snapshot is not None:
                previous["net_"].restore(warm_snapshot)
            for key in [k for k in vars(self) if k.endswith("_") and not k.startswith("_")]:
                delattr(self, key)
            for key, value in previous.items():
                setattr(self, key, value)
            raise
        self.net_ = net
        self.classes_ = (
            np.unique(np.concatenate([previous["classes_"], classes])) if warm else classes
        )
        self.n_components_ = previous["n_components_"] if warm else self.n_components_
        self.device_ = device
        validation = dict(net.callbacks_).get("retrieval_validation")
        if validation is not None and validation.best_score_ > -np.inf:
            self.best_epoch_ = validation.best_epoch_
            self.best_validation_score_ = validation.best_score_
            self.validation_indices_ = np.flatnonzero(held)
        else:
            for key in ("best_epoch_", "best_validation_score_", "validation_indices_"):
                if hasattr(self, key):
                    delattr(self, key)
        return self

    # -------------------------------------------------------------- transform
    def transform(self, X) -> np.ndarray:
        """Embed samples.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
            Samples of the same kind as in ``fit``.

        Returns
        -------
        ndarray of shape (n_samples, n_components_), dtype float32
            The embeddings (a DataFrame after ``set_output(transform="pandas")``).
        """
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        return self._embed(X)

    def _embed(self, X: np.ndarray) -> np.ndarray:
        module = self.net_.module_
        module.eval()
        out = np.empty((len(X), self.n_components_), dtype=np.float32)
        device = self.net_.device
        with torch.inference_mode():
            for start in range(0, len(X), TRANSFORM_BATCH_SIZE):
                chunk = X[start : start + TRANSFORM_BATCH_SIZE]
                if not (chunk.flags.c_contiguous and chunk.flags.writeable):
                    chunk = np.array(chunk)  # no copy for the usual in-memory array
                emb = module(torch.from_numpy(chunk).to(device, non_blocking=True))
                out[start : start + len(chunk)] = emb.float().cpu().numpy()
        # One vectorised check at the end instead of a device sync and an
        # extra pass per batch (see benchmarks/bench_fit.py).
        if not _all_finite(out):
            bad = ~np.isfinite(out).all(axis=1)
            start = int(np.argmax(bad)) // TRANSFORM_BATCH_SIZE * TRANSFORM_BATCH_SIZE
            stop = min(start + TRANSFORM_BATCH_SIZE, len(X))
            raise FloatingPointError(
                f"the network returned non-finite embeddings for samples {start} to "
                f"{stop - 1}; check X for extreme values (refit on rescaled data) or "
                "refit with a lower lr."
            )
        return out

    def fit_transform(self, X, y=None, **fit_params: Any) -> np.ndarray:
        """Fit on ``X, y`` and return the embeddings of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
            Training samples.
        y : array-like of shape (n_samples,)
            Class labels.
        **fit_params : dict
            Passed on to :meth:`fit`.

        Returns
        -------
        ndarray of shape (n_samples, n_components_), dtype float32
            The embeddings of ``X`` after training.
        """
        return self.fit(X, y, **fit_params).transform(X)

    def score(self, X, y) -> float:
        """Mean average precision at R (MAP@R) of the embeddings of ``X``.

        Each sample queries all the others (leave-one-out) by ``distance``;
        MAP@R rewards ranking the ``R`` other samples of its class first. It
        lies in ``[0, 1]``, higher is better, and needs no classifier, so it
        also measures classes never seen in training.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images
            Samples.
        y : array-like of shape (n_samples,)
            Their class labels.

        Returns
        -------
        float
            MAP@R (see :func:`sktriplet.evaluation.metrics.map_at_r`).
        """
        from sktriplet.evaluation.metrics import map_at_r

        Z = self.transform(X)
        return float(map_at_r(Z, np.asarray(y), distance=self.distance))


def _progress_callbacks(verbose: int) -> list:
    """A batch progress bar for ``verbose >= 2`` (skorch's, over tqdm)."""
    if verbose < 2:
        return []
    if importlib.util.find_spec("tqdm") is None:
        warnings.warn(
            "verbose=2 shows a progress bar over batches, which needs tqdm "
            "(pip install tqdm); showing the per-epoch table only.",
            UserWarning,
            stacklevel=4,
        )
        return []
    from skorch.callbacks import ProgressBar

    return [("progress_bar", ProgressBar())]


def _broadcast_seed(seed: int) -> int:
    """Rank 0's seed on every process of a distributed fit (else ``seed``)."""
    from sktriplet.training.distributed import broadcast_seed

    return broadcast_seed(seed)


def _input_scaling(X: np.ndarray, scaling: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the input standardisation that ``scaling`` asks for.

    Shapes ``(n_features,)`` for 2-D ``X`` and ``(C, 1, 1)`` for images;
    ``"global"`` repeats one scale, the root mean square of the centred values.
    """
    if X.ndim == 2:
        mean = X.mean(axis=0, dtype=np.float64)
        scale = X.std(axis=0, dtype=np.float64)
    else:
        axes = (0, 2, 3)
        mean = X.mean(axis=axes, dtype=np.float64)
        scale = (
            np.sqrt(np.maximum((X.astype(np.float64) ** 2).mean(axis=axes) - mean**2, 0.0))
            if X.nbytes < 2**28
            else _chunked_channel_std(X, mean)
        )
    if scaling is None:
        mean, scale = np.zeros_like(mean), np.ones_like(scale)
    elif scaling == "global":
        # Every feature (channel) weighs the same in the mean of the variances.
        common = float(np.sqrt(np.mean(scale**2)))
        scale = np.full_like(scale, common if common > 1e-12 else 1.0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    if X.ndim != 2:
        mean, scale = mean[:, None, None], scale[:, None, None]
    return mean, scale


def _chunked_channel_std(X: np.ndarray, mean: np.ndarray) -> np.ndarray:
    total = np.zeros(X.shape[1])
    for start in range(0, len(X), 4096):
        chunk = X[start : start + 4096].astype(np.float64) - mean[:, None, None]
        total += (chunk**2).sum(axis=(0, 2, 3))
    return np.sqrt(total / (len(X) * X.shape[2] * X.shape[3]))
