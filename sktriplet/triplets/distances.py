"""Pairwise distances between embeddings, shared by mining, losses and metrics.

Every function here takes and returns :class:`torch.Tensor` objects and knows
nothing of scikit-learn or skorch. Three distances are supported:

``"sqeuclidean"``
    Squared Euclidean distance ``||a - b||^2`` (FaceNet's choice). On
    L2-normalised embeddings it lies in ``[0, 4]``.
``"euclidean"``
    Euclidean distance ``||a - b||``; in ``[0, 2]`` on unit vectors.
``"cosine"``
    Cosine distance ``1 - cos(a, b)``; in ``[0, 2]``.

Gradients are finite everywhere, including where two embeddings coincide
(the square root at zero is the classic source of NaN).
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = [
    "DISTANCES",
    "Distance",
    "check_distance",
    "gather_distances",
    "paired_distances",
    "pairwise_distances",
]

Distance = Literal["sqeuclidean", "euclidean", "cosine"]

#: The names accepted wherever a ``distance`` argument is taken.
DISTANCES: tuple[str, ...] = ("sqeuclidean", "euclidean", "cosine")

# Below this squared distance the square root's derivative is cut off (the
# gradient of ``sqrt`` at zero is infinite).
_SQRT_EPS = 1e-12


def check_distance(distance: str) -> str:
    """Return ``distance`` if it names a supported distance, else raise.

    Parameters
    ----------
    distance : str
        The name to check.

    Returns
    -------
    str
        ``distance`` unchanged.

    Raises
    ------
    ValueError
        If ``distance`` is not one of :data:`DISTANCES`.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance={distance!r} is not supported; use one of {list(DISTANCES)}.")
    return distance


def _sqeuclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # ||a||^2 + ||b||^2 - 2 a.b, through one matrix product (the cdist floor).
    a2 = (a * a).sum(dim=1, keepdim=True)
    b2 = (b * b).sum(dim=1, keepdim=True)
    d = torch.addmm(a2, a, b.T, beta=1.0, alpha=-2.0) + b2.T
    return d.clamp_min(0.0)


def pairwise_distances(
    a: torch.Tensor,
    b: torch.Tensor | None = None,
    distance: str = "sqeuclidean",
) -> torch.Tensor:
    """Distance matrix between the rows of ``a`` and the rows of ``b``.

    Parameters
    ----------
    a : torch.Tensor of shape (n, d)
        Embeddings, one per row.
    b : torch.Tensor of shape (m, d), default=None
        Second set of embeddings. ``None`` means ``a`` itself; the diagonal
        of the result is then exactly zero.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Which distance to compute (see the module docstring).

    Returns
    -------
    torch.Tensor of shape (n, m)
        Non-negative distances, in the dtype of ``a``.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.distances import pairwise_distances
    >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    >>> pairwise_distances(x, distance="euclidean")
    tensor([[0., 5.],
            [5., 0.]])
    """
    check_distance(distance)
    same = b is None
    if b is None:
        b = a
    if distance == "cosine":
        an = torch.nn.functional.normalize(a, dim=1, eps=1e-12)
        bn = an if same else torch.nn.functional.normalize(b, dim=1, eps=1e-12)
        d = (1.0 - an @ bn.T).clamp_min(0.0)
    else:
        d = _SelfSqEuclidean.apply(a) if same else _sqeuclidean(a, b)
        if distance == "euclidean":
            # sqrt with a finite derivative at 0: below eps the distance is 0
            # and no gradient flows (it is zero there anyway by symmetry).
            positive = d > _SQRT_EPS
            d = torch.where(positive, d, torch.ones_like(d)).sqrt() * positive
    if same and distance != "sqeuclidean":
        d = d.fill_diagonal_(0.0) if not d.requires_grad else _zero_diagonal(d)
    return d


class _SelfSqEuclidean(torch.autograd.Function):
    """``||x_i - x_j||^2`` for all pairs of rows, with a hand-written backward.

    Forward is one matrix product and in-place passes over the result; the
    backward is two matrix products, ``dL/dx = 2 (diag(g 1 + g^T 1) x -
    (g + g^T) x)``, without the chain of ``B x B`` temporaries that autograd
    keeps for the same expression. The diagonal is exactly zero (its true
    derivative is zero, and the formula's terms for it cancel). Entries
    clamped at zero keep the derivative of the unclamped expression, which is
    ``2 (x_i - x_j) ~ 0`` there.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        sq = (x * x).sum(dim=1)
        d = torch.addmm(sq[:, None], x, x.T, beta=1.0, alpha=-2.0)
        d.add_(sq[None, :]).clamp_min_(0.0).fill_diagonal_(0.0)
        ctx.save_for_backward(x)
        return d

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        (x,) = ctx.saved_tensors
        weight = grad.sum(dim=1) + grad.sum(dim=0)
        out = torch.addmm(x * (2.0 * weight[:, None]), grad, x, alpha=-2.0)
        return out.addmm_(grad.T, x, alpha=-2.0)


def paired_distances(
    a: torch.Tensor, b: torch.Tensor, distance: str = "sqeuclidean"
) -> torch.Tensor:
    """Distances between matching rows of ``a`` and ``b`` (no matrix).

    The loss measures only the triplets that mining chose with this
    function, so back-propagation costs ``O(n_triplets x d)`` instead of
    going through the whole ``B x B`` distance matrix. Values agree with
    :func:`pairwise_distances` up to rounding (computed from differences,
    they are the more accurate of the two).

    Parameters
    ----------
    a, b : torch.Tensor of shape (..., d)
        Embeddings, broadcastable against each other.
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        Which distance to compute (see the module docstring).

    Returns
    -------
    torch.Tensor of shape (...)
        ``d(a[..., :], b[..., :])``, non-negative.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.distances import paired_distances
    >>> a = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    >>> paired_distances(a, torch.tensor([[3.0, 4.0], [1.0, 1.0]]))
    tensor([25.,  0.])
    """
    check_distance(distance)
    if distance == "cosine":
        an = torch.nn.functional.normalize(a, dim=-1, eps=1e-12)
        bn = torch.nn.functional.normalize(b, dim=-1, eps=1e-12)
        return (1.0 - (an * bn).sum(dim=-1)).clamp_min(0.0)
    diff = a - b
    d = (diff * diff).sum(dim=-1)
    if distance == "euclidean":
        positive = d > _SQRT_EPS
        d = torch.where(positive, d, torch.ones_like(d)).sqrt() * positive
    return d


def gather_distances(
    x: torch.Tensor, dist: torch.Tensor, cols: torch.Tensor, distance: str = "sqeuclidean"
) -> torch.Tensor:
    """Entries ``dist[a, cols[a, j]]`` of a distance matrix, differentiable in ``x``.

    Mining chooses a few pairs per row of a distance matrix computed without
    gradients; this function hands back those entries (exactly the values
    mining saw) with the gradient of ``d(x_a, x_c)`` attached. The backward
    pass builds the ``B x B`` matrix of the pairs' gradients once and needs
    two matrix products, as differentiating the whole matrix would, but
    none of the ``B x B`` temporaries of autograd's chain and no pass over
    the pairs that were not chosen.

    Parameters
    ----------
    x : torch.Tensor of shape (B, d)
        The embeddings ``dist`` was computed from (gradients flow to them).
    dist : torch.Tensor of shape (B, B)
        ``pairwise_distances(x.detach(), distance=distance)``.
    cols : torch.Tensor of shape (B, m) or (B,), dtype int64
        Columns of the pairs, per row ``a`` of ``dist``. A pair of a row with
        itself must get a zero gradient (the derivative at a coincident pair
        is taken as zero).
    distance : {"sqeuclidean", "euclidean", "cosine"}, default="sqeuclidean"
        The distance of ``dist``.

    Returns
    -------
    torch.Tensor of the shape of ``cols``
        ``dist.gather(1, cols)``, with gradients with respect to ``x``.

    Examples
    --------
    >>> import torch
    >>> from sktriplet.triplets.distances import gather_distances, pairwise_distances
    >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [1.0, 0.0]], requires_grad=True)
    >>> d = pairwise_distances(x.detach(), distance="euclidean")
    >>> v = gather_distances(x, d, torch.tensor([[1], [2], [0]]), distance="euclidean")
    >>> v.squeeze(1).tolist()
    [5.0, 4.4721360206604, 1.0]
    >>> v.sum().backward()
    >>> x.grad[0].tolist()  # (x0 - x1)/5 + (x0 - x2)/1
    [-1.600000023841858, -0.800000011920929]
    """
    check_distance(distance)
    flat = cols.ndim == 1
    if flat:
        cols = cols[:, None]
    if distance == "cosine":
        x = torch.nn.functional.normalize(x, dim=1, eps=1e-12)
    out = _GatheredDistances.apply(x, dist.detach(), cols, distance)
    return out.squeeze(1) if flat else out


class _GatheredDistances(torch.autograd.Function):
    """``dist[a, cols[a, j]]`` forward, the pairs' gradient backward.

    For squared Euclidean distances ``d(a, c) = ||x_a - x_c||^2`` with pair
    gradients ``G`` (``B x B``, zero off the chosen pairs): ``dL/dx = 2
    (diag(G 1 + G^T 1) x - (G + G^T) x)``. Euclidean distances chain through
    ``1 / (2 d)`` (zero where ``d`` is zero, as :func:`pairwise_distances`
    does), cosine distances ``1 - z_a . z_c`` of normalised ``z`` give
    ``-(G + G^T) z``.
    """

    @staticmethod
    def forward(ctx, x, dist, cols, distance):  # noqa: D102
        values = dist.gather(1, cols)
        ctx.save_for_backward(x, cols, values)
        ctx.distance = distance
        return values

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):  # noqa: D102
        x, cols, values = ctx.saved_tensors
        if ctx.distance == "euclidean":
            grad = torch.where(values > 0, grad / (2.0 * values.clamp_min(1e-30)), 0.0)
        batch = x.shape[0]
        grad = grad.to(x.dtype)
        pair_grad = grad.new_zeros(batch, batch).scatter_add_(1, cols, grad)
        # G^T x as (x^T G)^T: a product of contiguous operands (a transposed
        # B x B operand costs a copy).
        if ctx.distance == "cosine":
            out = torch.mm(pair_grad, x).add_(torch.mm(x.T, pair_grad).T)
            return out.neg_(), None, None, None
        weight = grad.sum(dim=1).index_add_(0, cols.reshape(-1), grad.reshape(-1))
        out = torch.addmm(x * (2.0 * weight[:, None]), pair_grad, x, alpha=-2.0)
        return out.add_(torch.mm(x.T, pair_grad).T, alpha=-2.0), None, None, None


def _zero_diagonal(d: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(d.shape[0], dtype=torch.bool, device=d.device)
    return d.masked_fill(eye, 0.0)
