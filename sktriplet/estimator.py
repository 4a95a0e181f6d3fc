"""`TripletEmbedder`: the scikit-learn face of triplet training.

The estimator is thin glue: it validates input, builds the network and a
:class:`~sktriplet._net.TripletNet` (skorch) in ``fit`` and keeps it as
``net_``; the loss, mining, batches and networks live in their own modules.
"""

from __future__ import annotations

import copy
import inspect
import numbers
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
from sklearn.utils.validation import check_array, check_is_fitted, validate_data
from torch import nn

from sktriplet._net import ArrayDataset, TripletNet
from sktriplet.distances import DISTANCES
from sktriplet.losses import TripletLoss
from sktriplet.mining import MINING_STRATEGIES
from sktriplet.networks import ConvEmbedder, MLPEmbedder, Standardize

__all__ = ["TripletEmbedder"]

#: Prefixes of the double-underscore parameters routed to inner objects.
ROUTED_PREFIXES = ("module__", "optimizer__", "callbacks__")

#: Rows embedded at a time by ``transform`` (bounds its memory).
TRANSFORM_BATCH_SIZE = 1024


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} but CUDA is not available on this machine; "
            "use device='cpu' or device='auto'."
        )
    return device


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
    batch's distance matrix (see :func:`sktriplet.losses.triplet_loss`).

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
    lr : float, default=1e-3
        Learning rate.
    optimizer : torch.optim.Optimizer class, default=torch.optim.Adam
        Optimizer; its other arguments go as ``optimizer__*`` parameters.
    device : str, default="auto"
        ``"auto"`` (a GPU when one is present), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``.
    random_state : int, RandomState instance or None, default=None
        Seed of the network's initialisation and of the batches. An int gives
        bitwise-identical embeddings on CPU.
    verbose : int, default=0
        ``0`` is silent; ``1`` prints a table per epoch.
    callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks (or ``(name, callback)`` pairs).
    warm_start : bool, default=False
        When fitted already, continue training the same network instead of
        starting over.
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

    See Also
    --------
    sklearn.neighbors.NeighborhoodComponentsAnalysis : Linear metric learning.
    sktriplet.losses.triplet_loss : The loss, as a function.

    Notes
    -----
    2-D input is standardised per feature and images per channel (means and
    scales learnt in ``fit``) before reaching the network. Images are given
    as ``(n_samples, H, W)`` or ``(n_samples, C, H, W)`` arrays; uint8 images
    are kept as uint8 in memory and converted batch by batch.

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
        "lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "optimizer": [type],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "callbacks": [None, list],
        "warm_start": ["boolean"],
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
        lr: float = 1e-3,
        optimizer: type = torch.optim.Adam,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 0,
        callbacks: list | None = None,
        warm_start: bool = False,
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
        self.optimizer = optimizer
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.warm_start = warm_start
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
                ndim = None  # ragged; let sklearn's check explain
        if ndim is not None and ndim >= 3:
            return self._validate_images(X, reset=reset, y=y)
        if reset:
            X, y = validate_data(self, X, y, dtype=[np.float32, np.float64], ensure_min_samples=2)
            self.input_shape_ = (X.shape[1],)
        else:
            X = validate_data(self, X, reset=False, dtype=[np.float32, np.float64])
            if len(self.input_shape_) != 1:
                raise ValueError(
                    f"TripletEmbedder was fitted on images of shape {self.input_shape_} "
                    f"but X is 2-D with shape {X.shape}; pass images of that shape."
                )
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
            body = module(**kwargs)
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
            mean, scale = mean[:, None, None], scale[:, None, None]
        scale = np.where(scale > 1e-12, scale, 1.0)
        return nn.Sequential(Standardize(mean, scale), body)

    def _check_module_output(self, net: TripletNet, X: np.ndarray) -> int:
        module = net.module_
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                sample = torch.from_numpy(np.ascontiguousarray(X[:2])).to(net.device)
                out = module(sample)
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

    def _make_net(self, module: nn.Module, seed: int, device: str) -> TripletNet:
        return TripletNet(
            module=module,
            criterion=TripletLoss,
            criterion__margin=self.margin,
            criterion__mining=self.mining,
            criterion__distance=self.distance,
            criterion__soft=self.soft,
            optimizer=self.optimizer,
            lr=self.lr,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            samples_per_class=self.samples_per_class,
            seed=seed,
            train_split=None,
            callbacks=list(self.callbacks or []),
            device=device,
            verbose=self.verbose,
            **{f"optimizer__{k}": v for k, v in self._routed("optimizer__").items()},
            **{f"callbacks__{k}": v for k, v in self._routed("callbacks__").items()},
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
            cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                if warm:
                    net = previous["net_"]
                    net.set_params(seed=seed, max_epochs=self.max_epochs)
                    net.partial_fit(ArrayDataset(X, codes), None, **fit_params)
                else:
                    net = self._make_net(self._build_module(X), seed, device)
                    net.initialize()
                    self.n_components_ = self._check_module_output(net, X)
                    net.fit(ArrayDataset(X, codes), None, **fit_params)
        except BaseException:
            # Leave the estimator as it was before this call.
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
                batch = torch.from_numpy(np.array(X[start : start + TRANSFORM_BATCH_SIZE]))
                emb = module(batch.to(device, non_blocking=True))
                out[start : start + len(batch)] = emb.float().cpu().numpy()
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
            MAP@R (see :func:`sktriplet.metrics.map_at_r`).
        """
        from sktriplet.metrics import map_at_r

        Z = self.transform(X)
        return float(map_at_r(Z, np.asarray(y), distance=self.distance))


def _chunked_channel_std(X: np.ndarray, mean: np.ndarray) -> np.ndarray:
    total = np.zeros(X.shape[1])
    for start in range(0, len(X), 4096):
        chunk = X[start : start + 4096].astype(np.float64) - mean[:, None, None]
        total += (chunk**2).sum(axis=(0, 2, 3))
    return np.sqrt(total / (len(X) * X.shape[2] * X.shape[3]))
