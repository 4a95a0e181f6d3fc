"""`TripletEmbedder`: the scikit-learn face of triplet training.

The estimator is thin glue: ``fit`` reads as inputs -> train -> finalise.
:mod:`sktriplet.inputs` validates ``X`` and ``y`` and describes them with an
:class:`~sktriplet.inputs.spec.InputSpec`; :mod:`sktriplet.training` builds
the network from that spec and the parameters, trains it through a skorch
net and returns the result; only then does the estimator record anything.
"""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_is_fitted
from torch import nn

from sktriplet.inputs.digest import samples_digest
from sktriplet.inputs.loading import make_dataset
from sktriplet.inputs.sample_weights import check_sample_weight
from sktriplet.inputs.spec import LAYOUTS, InputSpec
from sktriplet.inputs.training_data import TrainingData
from sktriplet.inputs.triplet_validation import triplet_score_input, validate_fit_triplets
from sktriplet.inputs.validation import encode_labels, validate_fit, validate_transform
from sktriplet.networks.split import is_pretrained
from sktriplet.runtime.inference import embed_dataset
from sktriplet.runtime.precision import PRECISIONS, resolve_precision
from sktriplet.runtime.progress import resolve_verbose
from sktriplet.training.build import ROUTED_PREFIXES, routed
from sktriplet.training.checkpoints import open_checkpoints
from sktriplet.training.criterion import check_criterion, check_weighted_criterion
from sktriplet.training.errors import check_finite_embeddings
from sktriplet.training.fit import FitResult, draw_seed, train
from sktriplet.training.policy import AUTO_BATCH_SIZE, resolve_loss_defaults
from sktriplet.triplets.distances import DISTANCES
from sktriplet.triplets.mining import MINING_STRATEGIES
from sktriplet.triplets.registry import loss_names

__all__ = ["TripletEmbedder"]

#: Fitted attributes that only a fit with validation sets.
_VALIDATION_ATTRIBUTES = ("best_epoch_", "best_validation_score_", "validation_indices_")
#: Fitted attributes of a pretrained backbone's fit (kept by a warm start).
_FREEZE_ATTRIBUTES = ("freeze_", "freeze_report_")


def resolve_device(device: str) -> str:
    """The torch device that ``device`` names (``"auto"``: a GPU when present).

    Parameters
    ----------
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Returns
    -------
    str
        A device this machine has.
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
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


def _check_components(est: TripletEmbedder, fit_params: dict) -> None:
    """Refuse extra fit arguments and wrong module/criterion/optimizer/callback types early."""
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
    check_criterion(est.get_params(deep=False))
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
    batch_size = AUTO_BATCH_SIZE if est.batch_size == "auto" else est.batch_size
    if not est.triplets and batch_size < est.samples_per_class:
        raise ValueError(
            f"batch_size={batch_size} is smaller than samples_per_class="
            f"{est.samples_per_class}; a batch must hold at least one class's "
            "samples. Raise batch_size or lower samples_per_class."
        )


def _check_mode(est: TripletEmbedder) -> None:
    """Refuse parameters that do not fit the mode (labels or ``triplets=True``)."""
    if not est.triplets:
        if est.mining == "none":
            raise ValueError(
                "mining='none' takes given triplets as they are and needs triplets=True; "
                "with labels use 'semihard', 'hard' or 'all'."
            )
        if est.samples is not None:
            raise ValueError(
                "samples is what index triplets point into and needs triplets=True; to "
                "train on labelled samples pass them as fit(X, y)."
            )
        return
    if est.mining == "all":
        raise ValueError(
            "mining='all' needs class labels; with triplets=True use 'none' (the given "
            "triplets, recommended), 'semihard' or 'hard' (negatives mined among the "
            "batch's given negatives)."
        )
    if est.validation_fraction is not None:
        raise ValueError(
            f"validation_fraction={est.validation_fraction} holds out labelled samples "
            "and is not available with triplets=True; pass validation_fraction=None, hold "
            "out triplets yourself and score them with score(T_test) (triplet accuracy)."
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
    margin : float or "auto", default="auto"
        Margin of the triplet hinge (``criterion="triplet"``; the other
        losses have margins of their own). Its scale follows ``distance``: the
        default networks output unit vectors, on which ``"sqeuclidean"``
        distances lie in ``[0, 4]`` and the other two in ``[0, 2]``.
        ``"auto"`` is 0.2 with labels and 1.0 with ``triplets=True`` (see
        Notes); the value used is ``margin_``.
    mining : {"auto", "semihard", "hard", "all", "none"}, default="auto"
        Which triplets of each batch enter the loss. With labels:
        ``"semihard"``, ``"hard"`` or ``"all"`` (see
        :func:`~sktriplet.triplets.losses.triplet_loss`). With
        ``triplets=True``: ``"none"`` takes the given triplets as they are,
        ``"semihard"`` and ``"hard"`` replace each triplet's negative by one
        mined among the negatives given in the same batch (the semi-hard or
        the nearest one); ``"all"`` needs labels and ``"none"`` needs
        triplets. ``"auto"`` is ``"semihard"`` with labels and ``"none"``
        with ``triplets=True``; the strategy used is ``mining_``.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Distance in the embedding space, for training and for :meth:`score`.
    soft : bool, default=False
        Soft margin ``log1p(exp(d(a, p) - d(a, n)))`` in place of the hinge.
    n_components : int or "auto", default="auto"
        Embedding dimension. ``"auto"`` is 64 for the default networks and
        for module classes whose ``n_components`` has a default of its own,
        and the module's own width for those whose ``n_components`` defaults
        to ``None``: :class:`~sktriplet.networks.BackboneEmbedder` then keeps
        its backbone's feature width (a freshly initialised narrower head is
        worse than none when it gets few steps; ``docs/benchmarks.md``).
        ``n_components_`` holds the width.
    module : torch.nn.Module class or instance, default=None
        The embedding network. ``None`` picks :class:`~sktriplet.networks.MLPEmbedder`
        for 2-D ``X`` and :class:`~sktriplet.networks.ConvEmbedder` for images.
        A class is instantiated in ``fit`` with the ``module__*`` parameters,
        plus ``n_features``, ``in_channels``, ``image_size`` and
        ``n_components`` where its constructor takes them. Its output must have
        shape ``(batch, n_components)``.
    max_epochs : int, default=30
        Number of passes over the training data.
    batch_size : int or "auto", default="auto"
        Samples per training batch (triplets per batch with
        ``triplets=True``). ``"auto"`` is 128 with labels; with
        ``triplets=True`` it is 128, or the larger batch that keeps the fit
        within 2,000 optimizer steps (``max_epochs`` epochs over the
        triplets), so the training time stops growing with the number of
        triplets (:func:`~sktriplet.training.policy.resolve_batch_size`);
        the value used is ``batch_size_``.
    samples_per_class : int, default=8
        Samples of each class in a training batch (at least 2).
    lr : float or "auto", default="auto"
        Learning rate (the peak of the schedule). ``"auto"`` is ``2e-3`` for
        images and ``1e-3`` for 2-D ``X``, except that the default network
        on rows trained on fewer than 10 classes gets at most
        ``5e-3 / steps`` (a budget over the fit's optimizer steps, so that
        few classes do not pull the embedding away from the input's geometry;
        see ``docs/defaults.md``); ``net_.lr`` holds the value used.
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
    verbose : int or "auto", default="auto"
        ``0`` is silent; ``1`` prints a table per epoch (loss, active
        triplets, validation scores when enabled, time) and shows a progress
        bar over the pass that caches a frozen backbone's features (on
        standard error, removed when done); ``2`` adds a progress bar over
        the batches of each epoch (the bars need ``tqdm``, which skorch
        installs). ``"auto"`` is ``1`` where someone watches, in a terminal
        (standard output and standard error both terminals) or a Jupyter
        notebook, and ``0`` inside scikit-learn's model selection
        (``GridSearchCV``, ``cross_validate``, ... also with ``n_jobs=1``),
        in worker processes (joblib, dask) and when the output goes to a
        file or a pipe (:func:`sktriplet.runtime.progress.resolve_verbose`);
        it is resolved once per ``fit`` and recorded in ``verbose_``.
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
    precision : {"auto", "32", "bf16", "16"}, default="auto"
        Floating-point precision of the network's passes
        (:mod:`sktriplet.runtime.precision`). ``"auto"`` runs the inference
        passes (``transform``, and the caching passes over a frozen backbone
        or frozen blocks during ``fit``) under bfloat16 autocast where the
        device computes bfloat16 natively (CUDA with bfloat16 support, or a
        CPU with AMX or AVX-512 BF16), else in float32. It trains a
        pretrained backbone (``BackboneEmbedder``, its top blocks included)
        under bfloat16 autocast where bfloat16 training is fast (CUDA with
        bfloat16 support, or a CPU with AMX), and every other network in
        float32.
        ``"32"`` runs everything in float32; ``"bf16"`` trains and infers
        under bfloat16 autocast; ``"16"`` trains under float16 autocast with
        gradient scaling and infers in float32. Distances, mining and the loss
        stay float32, weights and the embeddings stay float32. Measurements
        behind ``"auto"``: the scaling guide.
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
    scaling : {"auto", "feature", "global"} or None, default="auto"
        Input standardisation, learnt in ``fit`` and applied by the network's
        first layer (a module that declares its own input normalisation, such
        as a pretrained :class:`~sktriplet.networks.BackboneEmbedder`, gets
        that instead). ``"auto"`` is ``"global"`` for pixel-like rows (at
        least 16 non-negative columns of whole numbers or of values in
        ``[0, 1]`` sharing one range, :func:`sktriplet.inputs.statistics.is_pixel_like`)
        and ``"feature"`` otherwise. ``"feature"`` centres every feature and divides it by its
        own standard deviation (images: per channel), right for tabular data
        whose columns have different units. ``"global"`` centres every feature
        (images: every channel) the same way but divides all of them by one
        common scale, the root mean square of the centred values, so the
        features keep their relative weights: right when all columns are
        values of one kind, such as the pixels of flattened images, where
        per-feature scaling inflates rarely-varying border pixels. ``None``
        passes the input as it is (as float32). With fewer than 10 training
        classes, ``lr="auto"`` also keeps the default network's training on
        rows gentle (``docs/defaults.md``, "The few-class policy").
    image_layout : {"auto", "channels_first", "channels_last"}, default="auto"
        Layout of 4-D image arrays. ``"auto"`` reads ``(N, H, W, C)`` arrays
        whose last axis has 1, 3 or 4 entries (grey, RGB, RGBA) and whose
        second axis has not as channels-last (as images from PIL, OpenCV,
        imageio and Keras come), and everything else as ``(N, C, H, W)``;
        when both readings are possible (e.g. ``(N, 3, 8, 3)``) it reads
        channels-first and warns. Channels-last images are transposed to
        channels-first (a view, no copy) and give the same embeddings as the
        transposed array. ``transform`` accepts either layout of the fitted
        image shape.
    image_size : int, (height, width) or None, default=None
        For image files: the size every file is read at, whatever its own
        size (``None``: 64). ``transform`` scales the shorter side to fit and
        cuts the centre; training (with ``augment`` ``"auto"`` or ``True``)
        cuts a random crop of 25-100 % of the area and 3/4-4/3 of the aspect
        ratio, resizes it and flips it half the time (see
        :mod:`sktriplet.vision.transforms`). Arrays of images keep their own
        size and ignore it.
    channels : {"auto", 1, 3}, default="auto"
        For image files: read them grey (1) or RGB (3); ``"auto"`` reads grey
        when every file of a random sample of 200 is grey, RGB otherwise.
        Transparency is composited over white; 16-bit, CMYK and palette images
        are converted (see :mod:`sktriplet.vision.decode`).
    on_error : {"raise", "skip"}, default="raise"
        For image files: ``"raise"`` stops with an error naming a missing,
        unreadable or truncated file (missing files are found before training
        starts); ``"skip"`` leaves missing files out of ``fit`` and replaces a
        file that fails to decode during training by another of its class,
        with a warning listing them. ``transform`` always needs every file,
        and so does triplet mode (index triplets point at every file).
    triplets : bool, default=False
        Learn from explicit triplets instead of class labels ("triplet
        mode"): ``fit(T)`` with triplet rows ``T`` of shape
        ``(n_triplets, 3, *sample_shape)`` (anchor, positive and negative of
        each judgement "anchor is more like positive than like negative";
        feature rows or images), or ``fit(I)`` with index triplets ``I`` of
        shape ``(n_triplets, 3)`` into ``samples``; ``y`` must be ``None``.
        Training draws shuffled batches of ``batch_size`` triplets, each
        embedding its distinct samples once; ``transform`` embeds single
        samples and :meth:`score` is the triplet accuracy. See Notes for
        the settings that apply.
    samples : array-like, list of file paths or None, default=None
        With ``triplets=True``: the samples index triplets point into, rows,
        images or image file paths, validated as ``X`` is in labelled
        ``fit``. Cross-validation then splits the triplets while the samples
        stay whole (mind the leakage this invites: ``docs/triplets.md``).
        ``None``: ``fit`` and :meth:`score` take triplet rows. ``clone``
        copies it, and :func:`sktriplet.save` does not store it.
    criterion : str or torch.nn.Module class, default="triplet"
        The loss. A name registered in
        :data:`sktriplet.triplets.registry.LOSSES`:

        - ``"triplet"``: the triplet loss with online mining
          (:class:`~sktriplet.triplets.losses.TripletLoss`; ``margin``,
          ``mining``, ``distance``, ``soft``);
        - ``"contrastive"``: pull positive pairs together, push negative
          pairs past a margin, on ``distance``
          (:class:`~sktriplet.triplets.pair_losses.ContrastiveLoss`;
          ``criterion__pos_margin``, ``criterion__neg_margin``);
        - ``"multi_similarity"``: multi-similarity loss with its pair mining,
          on cosine similarity
          (:class:`~sktriplet.triplets.pair_losses.MultiSimilarityLoss`;
          ``criterion__alpha``, ``__beta``, ``__base``, ``__epsilon``);
        - ``"normalized_softmax"`` and ``"arcface"``: classifier losses with
          one learnable weight vector per training class
          (:class:`~sktriplet.triplets.proxy_losses.NormalizedSoftmaxLoss`,
          ``criterion__temperature``;
          :class:`~sktriplet.triplets.proxy_losses.ArcFaceLoss`,
          ``criterion__scale``, ``criterion__angular_margin``). The class
          weights exist for training only (saved with the model so that
          ``warm_start`` continues, never part of the embedding network or
          an export); they need labels, so not ``triplets=True``.

        ``margin``, ``mining`` and ``soft`` are the triplet loss's and do not
        apply to the others. Which loss for which data, with figures, and how
        to choose by cross-validation: ``docs/losses.md``. Or a loss class of
        your own: an ``nn.Module`` whose ``forward(embeddings, labels)``
        returns a scalar tensor (and takes ``indices_tuple=(a, p, n)`` for
        ``triplets=True``). The class is instantiated in ``fit`` with the
        ``criterion__*`` parameters, plus ``margin``, ``mining``,
        ``distance``, ``soft``, ``n_classes`` and ``n_components`` where its
        constructor takes them. Learnable weights of the loss (a classifier,
        proxies) train with the network and are saved with it.
    classification_weight : float, default=0.0
        Add ``classification_weight`` times the cross-entropy of a cosine
        classifier over the training classes to the loss (an auxiliary loss
        as in re-identification practice:
        :class:`sktriplet.triplets.classification.WithClassification` around
        the ``criterion``, whose class weights train with the network and
        are saved with it). ``0`` trains with the loss alone: with a frozen pretrained backbone
        (the head trained on cached features), 0.5 and 1.0 scored the same
        as 0 on unseen classes (``docs/benchmarks.md``, "Pretrained
        backbones"). Needs class labels (not ``triplets=True``).
    checkpoint_dir : str, path-like or None, default=None
        A directory where ``fit`` writes the complete training state after
        every epoch (network, loss state, optimizer, schedule, validation's
        best weights, history, random states), atomically, so a fit killed at
        any moment (``kill -9``, out of memory, a pre-empted machine) loses
        at most the epoch it was in. A later ``fit`` with the same parameters
        and data, pointed at the same directory, resumes from the last
        completed epoch and ends with exactly the result of an uninterrupted
        fit (bitwise on CPU with the same thread count); one whose fit had
        finished trains nothing and returns the finished model. A directory
        of another fit (other parameters, data, or starting network) is
        refused with an error naming what differs. ``None`` writes nothing.
        Details, disk use and the interplay with ``warm_start``,
        ``validation_fraction`` and Ctrl-C: ``docs/checkpoints.md``.
    memory_size : int or None, default=None
        Cross-batch memory (XBM, Wang et al. 2020): keep the last
        ``memory_size`` training embeddings and their labels (detached) and
        mine each batch against them as well as against itself: anchors from
        the batch, positives and negatives from the batch and the memory
        (:class:`sktriplet.triplets.memory.CrossBatchMemory`). For the
        pair-based losses (``"triplet"`` with ``mining`` ``"semihard"`` or
        ``"hard"``, ``"contrastive"``, ``"multi_similarity"``); needs labels.
        It is meant for batches that are small against the number of
        classes, so that a batch sees few negatives; on the shared sets of
        ``docs/losses.md`` (digits, Omniglot, Glint faces, Cars at batch 32)
        it helped no loss and lowered unseen-class MAP@R on Cars and
        Omniglot: choose it by class-disjoint cross-validation. The memory is part
        of the criterion's state and is saved with the model. ``None`` or
        ``0``: no memory.
    **kwargs : dict
        ``module__*``, ``criterion__*``, ``optimizer__*``, ``callbacks__*``,
        ``iterator_train__*`` and ``iterator_valid__*`` parameters, routed to
        the network's constructor, the loss's constructor, the optimizer,
        named callbacks and the training / inference data loaders (as in skorch: e.g.
        ``iterator_train__num_workers=2``, ``iterator_train__pin_memory=True``).
        They are ordinary parameters for ``get_params``, ``set_params``,
        ``clone`` and ``GridSearchCV``.

    Attributes
    ----------
    net_ : skorch.NeuralNet
        The trained skorch net; ``net_.module_`` is the network (input
        standardisation first), ``net_.history`` the training history.
    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit`` (not set in triplet mode).
    n_features_in_ : int
        Number of features (for images, values per image).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.
    input_shape_ : tuple of int
        Shape of one sample: ``(n_features,)`` or ``(C, H, W)``.
    input_spec_ : sktriplet.inputs.spec.InputSpec
        What ``fit`` was given: the kind of input, the sample shape, dtype,
        feature names and image layout.
    n_components_ : int
        Width of the embedding.
    mining_ : str
        The mining strategy trained with (``mining``, ``"auto"`` resolved).
    margin_ : float
        The margin trained with (``margin``, ``"auto"`` resolved; unused
        with ``soft=True``).
    batch_size_ : int
        Samples (triplets with ``triplets=True``) per training batch of the
        last ``fit`` (``batch_size``, ``"auto"`` resolved).
    verbose_ : int
        The verbosity the last ``fit`` ran with (``verbose="auto"`` resolved).
    device_ : str
        The device the network was trained on.
    precision_ : {"32", "bf16", "16"}
        What ``precision`` meant for the training passes of the last ``fit``.
    inference_precision_ : {"32", "bf16"}
        What it meant for that fit's caching passes over frozen parts, and
        for ``transform`` on the same device (``transform`` resolves
        ``precision`` again for the device it runs on).
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
    freeze_ : bool or int
        With a :class:`~sktriplet.networks.BackboneEmbedder` module: what of
        its backbone trained, ``True`` (nothing: the head alone), ``False``
        (all of it) or the number of top blocks; with the default
        ``module__freeze="auto"``, what it chose. The fitted network's
        backbone is frozen afterwards, whatever trained: a ``warm_start``
        fit continues the head alone.
    freeze_report_ : dict
        With ``module__freeze="auto"``: what was chosen and why
        (:mod:`sktriplet.training.top_blocks`). Keys: ``trained_blocks``
        (``0``: the head alone), ``epochs`` (block epochs kept), ``depth``
        (the top blocks tried), ``views`` (cached views per photo),
        ``max_epochs`` (block epochs run), ``block_lr``,
        ``held_out_classes``, ``head_only_score`` and ``block_scores``
        (held-out MAP@R of the head alone and after every block epoch),
        ``min_gain`` (the margin the best block epoch had to clear against
        the head alone; negative: the blocks are kept unless they lose more
        than ``-min_gain``), ``refit`` (trained
        again on all the classes), ``cache_bytes_per_sample``, ``seconds``
        (per stage, and the budget) and ``note`` (why the head alone
        trained, when the blocks could not). ``verbose=1`` prints it.

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
    as ``(n_samples, H, W)``, ``(n_samples, C, H, W)`` or
    ``(n_samples, H, W, C)`` arrays (see ``image_layout``); uint8 images
    are kept as uint8 in memory and converted batch by batch. Image files
    are given as a 1-D list, array or pandas Series of paths (or a
    one-column DataFrame; ``sklearn.datasets.load_files(root,
    load_content=False).filenames`` works as it is) and are decoded lazily,
    batch by batch, in data-loader workers (``iterator_train__num_workers``
    and ``iterator_valid__num_workers``, by default up to 4 and at most the
    number of cores), so memory depends on the batch, not on the number of
    files; the input statistics come from a random sample of 500 files.
    Sparse input is
    refused (densify it with ``.toarray()``): densifying silently could
    exhaust memory.

    **Triplet mode** (``triplets=True``). The parameters keep the meaning
    and defaults they have with labels, with these differences:
    ``lr_schedule="auto"`` is the cosine schedule; ``batch_size`` counts
    triplets; ``samples_per_class`` does not apply; ``validation_fraction``
    must be ``None``; the input statistics (``scaling``) come from the
    distinct samples of the training triplets (identical triplet rows are
    merged into one sample). ``mining="auto"`` takes the triplets as given
    (``"none"``): mining among a batch's given negatives often picks a
    sample of the anchor's own class, given as the negative of another
    triplet. ``margin="auto"`` is 1.0, a wider margin than with labels,
    which keeps the many easy triplets contributing. On digits with 6,000
    random label-consistent triplets these defaults reach 1.01 of the test
    MAP@R of the label-trained embedding (semi-hard mining with margin 0.2:
    0.87), and on crowd judgements over shoe photos they are within 0.01 of
    the best margin tried (``benchmarks/bench_triplets.py`` and
    ``benchmarks/bench_zappos.py``, 3 seeds; tables and commands in
    ``docs/triplets.md``).
    Inside a :mod:`torch.distributed` process group, triplet mode is refused.

    ``fit`` validates everything before training and, when it fails, leaves
    the estimator as it was. It stops with ``FloatingPointError`` at the
    first non-finite training loss or weights, and never returns non-finite
    embeddings. A ``KeyboardInterrupt`` during ``fit`` keeps the weights of
    the last completed epoch and returns normally; ``warm_start=True`` then
    continues from there, and on CPU ends with the same weights as an
    uninterrupted fit; with ``checkpoint_dir`` a fit killed outright resumes
    from its last completed epoch. :func:`sktriplet.save` and :func:`sktriplet.load`
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
        "margin": [Interval(numbers.Real, 0, None, closed="left"), StrOptions({"auto"})],
        "mining": [StrOptions({*MINING_STRATEGIES, "none", "auto"})],
        "distance": [StrOptions(set(DISTANCES))],
        "soft": ["boolean"],
        "criterion": [StrOptions(set(loss_names())), type],
        "n_components": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "module": [None, type, nn.Module],
        "max_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 2, None, closed="left"), StrOptions({"auto"})],
        "samples_per_class": [Interval(numbers.Integral, 2, None, closed="left")],
        "lr": [Interval(numbers.Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "lr_schedule": [StrOptions({"auto", "cosine", "constant"}), None],
        "optimizer": [type],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose", StrOptions({"auto"})],
        "callbacks": [None, list],
        "warm_start": ["boolean"],
        "validation_fraction": [None, Interval(numbers.Real, 0, 1, closed="neither")],
        "validation_split": [StrOptions({"class", "sample"})],
        "n_iter_no_change": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "precision": [StrOptions(set(PRECISIONS))],
        "augment": [StrOptions({"auto"}), "boolean", callable],
        "scaling": [StrOptions({"auto", "feature", "global"}), None],
        "image_layout": [StrOptions(set(LAYOUTS))],
        "image_size": [None, Interval(numbers.Integral, 1, None, closed="left"), tuple, list],
        "channels": [StrOptions({"auto"}), Interval(numbers.Integral, 1, 3, closed="both")],
        "on_error": [StrOptions({"raise", "skip"})],
        "classification_weight": [Interval(numbers.Real, 0, None, closed="left")],
        "memory_size": [None, Interval(numbers.Integral, 0, None, closed="left")],
        "triplets": ["boolean"],
        "samples": [None, "array-like"],
        "checkpoint_dir": [None, str, os.PathLike],
    }

    def __init__(
        self,
        *,
        margin: float | str = "auto",
        mining: str = "auto",
        distance: str = "sqeuclidean",
        soft: bool = False,
        criterion: str | type[nn.Module] = "triplet",
        n_components: int | str = "auto",
        module: type[nn.Module] | nn.Module | None = None,
        max_epochs: int = 30,
        batch_size: int | str = "auto",
        samples_per_class: int = 8,
        lr: float | str = "auto",
        lr_schedule: str | None = "auto",
        optimizer: type = torch.optim.Adam,
        device: str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int | str = "auto",
        callbacks: list | None = None,
        warm_start: bool = False,
        validation_fraction: float | None = None,
        validation_split: str = "class",
        n_iter_no_change: int | None = None,
        precision: str = "auto",
        augment: str | bool | Any = "auto",
        scaling: str | None = "auto",
        image_layout: str = "auto",
        image_size: int | tuple[int, int] | None = None,
        channels: int | str = "auto",
        on_error: str = "raise",
        triplets: bool = False,
        samples: Any = None,
        classification_weight: float = 0.0,
        checkpoint_dir: str | os.PathLike | None = None,
        memory_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.margin = margin
        self.mining = mining
        self.distance = distance
        self.soft = soft
        self.criterion = criterion
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
        self.image_layout = image_layout
        self.image_size = image_size
        self.channels = channels
        self.on_error = on_error
        self.classification_weight = classification_weight
        self.memory_size = memory_size
        self.triplets = triplets
        self.samples = samples
        self.checkpoint_dir = checkpoint_dir
        for key, value in kwargs.items():
            setattr(self, key, value)

    # ------------------------------------------------------------------ params
    def _routed(self) -> dict[str, Any]:
        """The keyword parameters beyond the signature (``module__*``, ...)."""
        named = set(self._get_param_names())
        return {
            k: v
            for k, v in vars(self).items()
            if k not in named and not k.startswith("_") and not k.endswith("_")
        }

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
        tags.target_tags.required = not self.triplets
        tags.transformer_tags.preserves_dtype = ["float32"]
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    # -------------------------------------------------------------------- fit
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, **fit_params: Any) -> TripletEmbedder:
        """Train the embedding network on labelled samples, or on triplets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or images, or triplets
            Training samples: feature rows (array or DataFrame), images
            ``(n_samples, H, W)``, ``(n_samples, C, H, W)`` or
            ``(n_samples, H, W, C)`` (see ``image_layout``), or image file
            paths. With ``triplets=True``: triplet rows
            ``(n_triplets, 3, *sample_shape)``, or index triplets
            ``(n_triplets, 3)`` into ``samples``.
        y : array-like of shape (n_samples,) or None
            Class labels (any hashable values, e.g. ints or strings);
            ``None`` with ``triplets=True``.
        **fit_params : dict
            Only ``sample_weight``: non-negative finite weights, not all
            zero; weights of 1 train exactly as no weights. Anything else is
            refused: the network takes only the batch of samples.

            - With ``triplets=True``, array-like of shape (n_triplets,): a
              weight per triplet, e.g. how many people gave that answer.
              Each batch's loss is the weighted mean of its triplets' terms,
              so integer weights train as repeated triplets would, batch by
              batch.
            - With class labels, array-like of shape (n_samples,): a weight
              per sample in the mined loss. Each term of a batch's loss is
              weighted by the weight of its **anchor**: the loss is
              ``sum_t w[a_t] l_t / sum_t w[a_t]`` over the terms the mining
              keeps (``mining="semihard"``: the positive pairs ``(a, p)``
              with their chosen negative; ``"hard"``: one term per anchor;
              ``"all"``: every triplet, over its non-zero terms as without
              weights). Integer weights therefore equal repeating each
              anchor's terms. Mining (which negative is chosen) and the PK
              batches do not depend on the weights, and a sample of weight
              0 still serves as the positive or negative of others: to leave
              a sample out, drop it. With ``classification_weight > 0`` the
              classifier's cross-entropy is the weighted mean over the
              samples too. Validation scores (``validation_fraction``,
              MAP@R) stay unweighted. Refused with ``memory_size`` (the
              cross-batch memory takes no weights) and with a
              ``criterion`` whose ``forward`` takes no ``weights``.

            ``GridSearchCV`` and ``cross_val_score`` split the weights with
            the triplets or samples.

        Returns
        -------
        TripletEmbedder
            The fitted estimator.
        """
        self._check_routed()
        sample_weight = fit_params.pop("sample_weight", None)
        _check_components(self, fit_params)
        _check_mode(self)
        device = resolve_device(self.device)
        options = {
            "image_layout": self.image_layout,
            "image_size": self.image_size,
            "channels": self.channels,
        }
        classes = codes = triplets = weights = kept = None
        if sample_weight is not None:
            check_weighted_criterion(self.get_params(deep=False))
        if self.triplets:
            X, triplets, spec = validate_fit_triplets(self, X, y, self.samples, **options)
            weights = check_sample_weight(sample_weight, len(triplets), per="triplet")
        else:
            given = y
            X, y, spec, kept = validate_fit(
                self, X, y, on_error=self.on_error, return_kept=True, **options
            )
            if sample_weight is not None:  # y is known valid: one label per sample given
                n = _num_samples(given)
                weights = check_sample_weight(sample_weight, n, per="sample", kept=kept)
            classes, codes = encode_labels(y)
        warm = self._warm_net(spec)
        params = self.get_params(deep=False)
        params["verbose"] = resolve_verbose(self.verbose)  # once per fit
        digest = lambda: samples_digest(X, spec, codes, triplets, weights)  # noqa: E731
        with open_checkpoints(params, digest, None if warm is None else warm[0]) as checkpoints:
            seed = checkpoints.seed(lambda: draw_seed(self.random_state))
            data = TrainingData(
                spec, X, codes, triplets=triplets, weights=weights, params=params, seed=seed
            )
            result = train(params, data, device=device, warm=warm)
        self._finalise(result, spec, classes, device, warm=warm is not None, kept=kept)
        resolved = resolve_loss_defaults(params)
        self.mining_, self.margin_ = resolved["mining"], resolved["margin"]
        self.batch_size_ = int(result.net.batch_size)
        return self

    def _warm_net(self, spec: InputSpec):
        """The fitted net and width to continue from (``warm_start``), or ``None``."""
        if not (self.warm_start and hasattr(self, "net_")):
            return None
        if spec.sample_shape != self.input_spec_.sample_shape:
            raise ValueError(
                f"warm_start=True but X has samples of shape {spec.sample_shape}, "
                f"while the fitted network takes {self.input_spec_.sample_shape}."
            )
        return self.net_, self.n_components_

    def _finalise(
        self,
        result: FitResult,
        spec: InputSpec,
        classes: np.ndarray | None,
        device: str,
        *,
        warm: bool,
        kept: np.ndarray | None = None,
    ) -> None:
        """Record what training produced (training has succeeded).

        ``kept``: the positions in the ``X`` given to ``fit`` of the samples
        trained on, when ``on_error="skip"`` left some out.
        """
        self.net_ = result.net
        earlier = getattr(self, "classes_", None) if warm else None
        if classes is None:  # triplet mode: no classes
            if hasattr(self, "classes_"):
                del self.classes_
        elif earlier is not None:
            self.classes_ = np.unique(np.concatenate([earlier, classes]))
        else:
            self.classes_ = classes
        self.n_components_ = result.n_components
        self.verbose_ = result.net.verbose
        self.device_ = device
        self.precision_, self.inference_precision_ = resolve_precision(
            self.precision, device, pretrained=is_pretrained(result.net.module_)
        )
        self.input_spec_ = spec
        self.input_shape_ = spec.sample_shape
        self.n_features_in_ = spec.n_features
        if spec.feature_names is not None:
            self.feature_names_in_ = np.asarray(spec.feature_names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        for key in _VALIDATION_ATTRIBUTES + (() if warm else _FREEZE_ATTRIBUTES):
            if hasattr(self, key):
                delattr(self, key)
        if result.freeze is not None:
            self.freeze_ = result.freeze
        if result.freeze_report is not None:
            self.freeze_report_ = result.freeze_report
        if result.best_epoch is not None:
            self.best_epoch_ = result.best_epoch
            self.best_validation_score_ = result.best_score
            held = np.flatnonzero(result.held)
            self.validation_indices_ = held if kept is None else kept[held]

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

        Notes
        -----
        Safe to call from several threads at once (a web server): the
        network is put in evaluation mode once and left there, so calls never
        switch its mode under each other, and each call gives exactly the
        embeddings of a serial call.
        """
        check_is_fitted(self)
        X = validate_transform(self, X, self.input_spec_)
        dataset = make_dataset(X, self.input_spec_)
        # Files stream, one batch of decoded images in memory at a time, with
        # the loader settings as they are now (set_params after fit counts).
        loader = routed(self.get_params(deep=False), "iterator_valid__")
        module = self.net_.module_
        if any(m.training for m in module.modules()):
            # Evaluation mode for good, not switched and restored per call:
            # a call restoring training mode while another thread's forward
            # pass runs puts BatchNorm there in training mode, giving batch
            # statistics and overwriting the running ones (issue 29).
            module.eval()
        with self.net_.threads():  # as many torch threads as training used
            precision = resolve_precision(self.precision, self.net_.device).inference
            out = embed_dataset(
                self.net_, dataset, n_components=self.n_components_, precision=precision, **loader
            )
        # One vectorised check at the end instead of a device sync and an
        # extra pass per batch (see benchmarks/bench_fit.py).
        check_finite_embeddings(out)
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
            Passed on to :meth:`fit` (which refuses them).

        Returns
        -------
        ndarray of shape (n_samples, n_components_), dtype float32
            The embeddings of ``X`` after training.
        """
        if self.triplets:
            raise ValueError(
                "fit_transform is not available with triplets=True: fit takes triplets, "
                "transform single samples. Call fit(T) (or fit(I)), then transform(X)."
            )
        return self.fit(X, y, **fit_params).transform(X)

    def score(self, X, y=None) -> float:
        """MAP@R of the embeddings of ``X``; in triplet mode, triplet accuracy.

        With labels, each sample queries all the others (leave-one-out) by
        ``distance``; MAP@R rewards ranking the ``R`` other samples of its
        class first. It lies in ``[0, 1]``, higher is better, and needs no
        classifier, so it also measures classes never seen in training.

        With ``triplets=True``, the score is the fraction of triplets whose
        anchor is strictly nearer (by ``distance``) to its positive than to
        its negative in the embedding
        (:func:`~sktriplet.evaluation.metrics.triplet_accuracy`).
        Index triplets embed each sample they touch once.

        Parameters
        ----------
        X : array-like
            Samples; with ``triplets=True``, triplet rows
            ``(n_triplets, 3, *sample_shape)`` (for instance triplets of
            samples never seen in training) or, with ``samples`` set,
            index triplets ``(n_triplets, 3)`` into ``samples``.
        y : array-like of shape (n_samples,) or None
            The samples' class labels; ``None`` with ``triplets=True``.

        Returns
        -------
        float
            MAP@R (see :func:`sktriplet.evaluation.metrics.map_at_r`), or
            the triplet accuracy.
        """
        from sktriplet.evaluation.metrics import indexed_triplet_accuracy, map_at_r

        if self.triplets:
            check_is_fitted(self)
            to_embed, index = triplet_score_input(X, y, self.samples)
            Z = np.asarray(self.transform(to_embed))
            return indexed_triplet_accuracy(Z, index, distance=self.distance)
        if y is None:
            raise ValueError(
                "score needs y, the class labels of X (it is MAP@R); with triplets=True "
                "it scores triplets instead."
            )
        Z = self.transform(X)
        return float(map_at_r(Z, np.asarray(y), distance=self.distance))
