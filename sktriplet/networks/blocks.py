"""How a backbone is cut into blocks: a stem, an ordered list of blocks, an end.

A backbone's ``forward`` is read as ``end(block[n-1](... block[0](stem(x))))``.
The boundaries between blocks are where :func:`sktriplet.networks.split.split_at_block`
cuts a network into a frozen bottom, whose output can be computed once and
cached, and a top that trains; ``freeze=k`` of
:class:`~sktriplet.networks.BackboneEmbedder` trains the last ``k`` blocks.

**Declaring the blocks of your own backbone.** A module declares its blocks by
defining

- ``blocks``: a method returning, or an attribute holding, the blocks in
  execution order (modules holding parameters);
- ``forward_stem(x)``: what ``forward`` does before the first block;
- ``forward_end(x)``: what ``forward`` does after the last block (the
  backbone's output from the last block's output);
- optionally ``forward_block(index, x)``: runs block ``index``; without it,
  ``blocks[index](x)``.

``forward(x)`` must equal running these in turn; the split checks it once on
a random image and refuses a backbone for which it does not hold.

Backbones that declare nothing get their blocks from their structure
(:func:`backbone_blocks`): torchvision's ResNets (the stages ``layer1`` ...
``layer4`` after the stem ``conv1, bn1, relu, maxpool``), models built as
``features`` + a classifier (torchvision's EfficientNets, MobileNets, VGGs:
the children of ``features``), and chains of ``nn.Sequential`` (the blocks of
:func:`find_blocks`). EfficientNet-Lite0
(:class:`~sktriplet.networks.pretrained.EfficientNetLiteFeatures`) declares
its 16 MBConv blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["BackboneBlocks", "backbone_blocks", "declares_blocks", "find_blocks"]

_RESNET_PARTS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


def _has_parameters(module: nn.Module) -> bool:
    return any(True for _ in module.parameters())


def _largest_container(module: nn.Module) -> nn.Module | None:
    """The container (``module`` or a Sequential / ModuleList in it) with most blocks."""
    best, size = None, 0
    for candidate in module.modules():
        if candidate is not module and not isinstance(candidate, (nn.Sequential, nn.ModuleList)):
            continue
        n = sum(1 for c in candidate.children() if _has_parameters(c))
        if n > size:
            best, size = candidate, n
    return best


class BackboneBlocks:
    """A backbone read as stem, blocks and end; runs any range of them.

    Parameters
    ----------
    blocks : sequence of torch.nn.Module
        The blocks, in execution order.
    stem : callable
        Input to the first block's input.
    block : callable
        ``block(index, x)``: runs block ``index``.
    end : callable
        The last block's output to the backbone's output.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 5, 1), nn.Conv2d(5, 6, 1))
    >>> parts = backbone_blocks(net)
    >>> len(parts.blocks)
    3
    >>> x = torch.rand(1, 3, 4, 4)
    >>> torch.equal(parts.run(parts.run(x, stop=1), start=1), net(x))
    True
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        stem: Callable[[torch.Tensor], torch.Tensor],
        block: Callable[[int, torch.Tensor], torch.Tensor],
        end: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        self.blocks = list(blocks)
        self.stem, self.block, self.end = stem, block, end

    def __len__(self) -> int:
        return len(self.blocks)

    def run(
        self, x: torch.Tensor, start: int | None = None, stop: int | None = None
    ) -> torch.Tensor:
        """Run from boundary ``start`` to boundary ``stop``.

        Boundary ``k`` (``0 <= k <= len(blocks)``) is the input of block
        ``k``: after the stem and blocks ``0 .. k-1``. ``start=None`` starts
        from the backbone's input (the stem runs first), ``stop=None`` ends
        with the backbone's output (the end runs last), so
        ``run(run(x, stop=k), start=k)`` is ``forward(x)``.
        """
        n = len(self.blocks)
        first, last = 0 if start is None else start, n if stop is None else stop
        if not 0 <= first <= last <= n:
            raise ValueError(f"need 0 <= start <= stop <= {n}; got start={start}, stop={stop}.")
        if start is None:
            x = self.stem(x)
        for i in range(first, last):
            x = self.block(i, x)
        return self.end(x) if stop is None else x


def declares_blocks(module: nn.Module) -> bool:
    """Whether ``module`` declares its blocks (``blocks``, ``forward_stem``, ``forward_end``).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    bool
    """
    return all(
        callable(getattr(module, name, None)) for name in ("forward_stem", "forward_end")
    ) and (getattr(module, "blocks", None) is not None)


def _declared(module: nn.Module) -> BackboneBlocks:
    blocks = module.blocks
    if callable(blocks) and not isinstance(blocks, nn.Module):
        blocks = blocks()
    blocks = list(blocks)
    forward_block = getattr(module, "forward_block", None)
    if not callable(forward_block):
        forward_block = lambda i, x: blocks[i](x)  # noqa: E731
    return BackboneBlocks(blocks, module.forward_stem, forward_block, module.forward_end)


def _resnet(module: nn.Module) -> BackboneBlocks:
    m = module

    def stem(x: torch.Tensor) -> torch.Tensor:
        return m.maxpool(m.relu(m.bn1(m.conv1(x))))

    def end(x: torch.Tensor) -> torch.Tensor:
        return m.fc(torch.flatten(m.avgpool(x), 1))

    blocks = [getattr(m, f"layer{i}") for i in range(1, 5)]
    return BackboneBlocks(blocks, stem, lambda i, x: blocks[i](x), end)


def _chain(children: Sequence[nn.Module]) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x: torch.Tensor) -> torch.Tensor:
        for child in children:
            x = child(x)
        return x

    return run


def _grouped(container: nn.Sequential) -> tuple[list, list[list[nn.Module]]]:
    """Children before the first block, and each block with the parameterless ones after it."""
    lead: list[nn.Module] = []
    groups: list[list[nn.Module]] = []
    for child in container.children():
        if _has_parameters(child):
            groups.append([child])
        elif groups:
            groups[-1].append(child)
        else:
            lead.append(child)
    return lead, groups


def _features(module: nn.Module) -> BackboneBlocks:
    m = module
    lead, groups = _grouped(m.features)

    def end(x: torch.Tensor) -> torch.Tensor:
        pooled = m.avgpool(x) if hasattr(m, "avgpool") else F.adaptive_avg_pool2d(x, 1)
        return m.classifier(torch.flatten(pooled, 1))

    blocks = [g[0] for g in groups]
    return BackboneBlocks(blocks, _chain(lead), lambda i, x: _chain(groups[i])(x), end)


def _sequential_path(module: nn.Module, target: nn.Module) -> list[nn.Sequential] | None:
    """The Sequentials from ``module`` down to ``target``, if every step is one."""
    if module is target:
        return [module] if isinstance(module, nn.Sequential) else None
    if not isinstance(module, nn.Sequential):
        return None
    for child in module.children():
        path = _sequential_path(child, target)
        if path is not None:
            return [module, *path]
    return None


def _sequential(module: nn.Module) -> BackboneBlocks | None:
    container = _largest_container(module)
    path = None if container is None else _sequential_path(module, container)
    if not path:
        return None
    before: list[nn.Module] = []
    after: list[nn.Module] = []
    for outer, inner in zip(path, path[1:], strict=False):
        children = list(outer.children())
        i = next(j for j, c in enumerate(children) if c is inner)
        before += children[:i]
        after = children[i + 1 :] + after
    lead, groups = _grouped(path[-1])
    blocks = [g[0] for g in groups]
    return BackboneBlocks(
        blocks, _chain(before + lead), lambda i, x: _chain(groups[i])(x), _chain(after)
    )


def backbone_blocks(module: nn.Module) -> BackboneBlocks | None:
    """The blocks of a backbone and how to run them, or ``None`` if unknown.

    In this order: the blocks ``module`` declares (see the module notes),
    torchvision's ResNet layout, the ``features`` + ``classifier`` layout,
    and chains of ``nn.Sequential`` down to the container of
    :func:`find_blocks`. The structural guesses are checked where it
    matters: :func:`sktriplet.networks.split.split_at_block` compares the
    split network with the whole one on a random image.

    Parameters
    ----------
    module : torch.nn.Module
        The backbone (classifier already removed or not).

    Returns
    -------
    BackboneBlocks or None
    """
    if declares_blocks(module):
        return _declared(module)
    if all(isinstance(getattr(module, n, None), nn.Module) for n in _RESNET_PARTS) and hasattr(
        module, "fc"
    ):
        return _resnet(module)
    if isinstance(getattr(module, "features", None), nn.Sequential) and isinstance(
        getattr(module, "classifier", None), nn.Module
    ):
        return _features(module)
    return _sequential(module)


def find_blocks(module: nn.Module) -> list[nn.Module]:
    """The blocks of a backbone that ``freeze=k`` counts from the end.

    The blocks the backbone declares or :func:`backbone_blocks` recognises
    (ResNet's ``layer1`` ... ``layer4``, the children of ``features`` for
    torchvision's EfficientNets and MobileNets, EfficientNet-Lite0's 16
    MBConv blocks); otherwise the children holding parameters of one
    container: of ``module`` itself or of one of its ``nn.Sequential`` /
    ``nn.ModuleList`` submodules, whichever has the most (the outermost on a
    tie).

    Parameters
    ----------
    module : torch.nn.Module
        The backbone.

    Returns
    -------
    list of torch.nn.Module
        The blocks holding parameters, in execution order.

    Examples
    --------
    >>> from torch import nn
    >>> stages = nn.Sequential(*[nn.Conv2d(4, 4, 3) for _ in range(3)])
    >>> net = nn.Sequential(nn.Conv2d(3, 4, 3), stages)
    >>> len(find_blocks(net))
    3
    """
    parts = backbone_blocks(module)
    if parts is not None:
        return parts.blocks
    container = _largest_container(module)
    if container is None:
        return []
    return [c for c in container.children() if _has_parameters(c)]
