"""Conditioner networks: the functions that output a coupling's log-scale and shift."""

from __future__ import annotations

from torch import nn

__all__ = ["conv_conditioner", "mlp_conditioner"]


def mlp_conditioner(
    in_features: int, out_features: int, hidden: int = 24, layers: int = 4, slope: float = 0.2
) -> nn.Sequential:
    """A fully connected network of ``layers`` linear layers with LeakyReLU between them.

    The paper's toy models use 4 layers of 24 hidden units and LeakyReLU(0.2). The last layer
    starts at zero so that every coupling, and hence the flow, starts as the identity map.

    Example:
        >>> net = mlp_conditioner(1, 2)
        >>> len([m for m in net if isinstance(m, nn.Linear)])
        4
    """
    if layers < 1:
        raise ValueError(f"mlp_conditioner: layers must be >= 1, got {layers}")
    widths = [in_features] + [hidden] * (layers - 1) + [out_features]
    modules: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        modules.append(nn.Linear(a, b))
        if i < layers - 1:
            modules.append(nn.LeakyReLU(slope))
    _zero_last(modules[-1])
    return nn.Sequential(*modules)


def conv_conditioner(
    in_channels: int,
    out_channels: int,
    hidden: int = 16,
    layers: int = 3,
    kernel: int = 3,
    slope: float = 0.2,
) -> nn.Sequential:
    """A stack of ``layers`` same-padded convolutions with LeakyReLU between them.

    The paper's image models use 3 layers of 16 channels, 3x3 kernels, padding 1. The last
    convolution starts at zero (identity coupling at initialisation).

    Example:
        >>> import torch
        >>> conv_conditioner(2, 4)(torch.zeros(1, 2, 7, 7)).shape
        torch.Size([1, 4, 7, 7])
    """
    if layers < 1:
        raise ValueError(f"conv_conditioner: layers must be >= 1, got {layers}")
    widths = [in_channels] + [hidden] * (layers - 1) + [out_channels]
    modules: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        modules.append(nn.Conv2d(a, b, kernel, padding=kernel // 2))
        if i < layers - 1:
            modules.append(nn.LeakyReLU(slope))
    _zero_last(modules[-1])
    return nn.Sequential(*modules)


def _zero_last(layer: nn.Module) -> None:
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
