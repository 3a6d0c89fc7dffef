"""The flow ``g``: a sequence of invertible layers, and builders for vector and image data."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mflow.conditioners import conv_conditioner, mlp_conditioner
from mflow.config import ModelSpec, check_model, choices
from mflow.layers import AffineCoupling, Flatten, InvertibleLayer, Permutation, Squeeze

__all__ = ["FLOW_KINDS", "Flow", "build_flow"]

#: The flows ``build_flow`` builds, by ``ModelSpec.kind``.
FLOW_KINDS = choices(ModelSpec, "kind")


class Flow(InvertibleLayer):
    """A composition of invertible layers; ``forward`` maps data to latents.

    The log-det of the composition is the sum of the layers' log-dets; it is exactly zero
    when every layer is volume-preserving.

    Example:
        >>> flow = build_flow(ModelSpec(couplings=2), (2,))
        >>> x = torch.randn(4, 2)
        >>> torch.allclose(flow.inverse(flow(x)[0]), x, atol=1e-6)
        True
    """

    def __init__(self, layers: list[InvertibleLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.volume_preserving = all(layer.volume_preserving for layer in layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        if self.volume_preserving:  # every log-det is an exact zero: skip the sums
            for layer in self.layers:
                x = layer(x)[0]
            return x, logdet
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


def _mixing_permutation(size: int, split: int, generator: torch.Generator) -> Tensor:
    """A random permutation that moves at least one entry across the coupling split.

    A permutation that keeps both halves as they are would waste the next coupling; for two
    features the only such permutation is the swap.
    """
    while True:
        perm = torch.randperm(size, generator=generator)
        if size < 2 or bool((perm[:split] >= split).any()):
            return perm


def _fc_couplings(spec: ModelSpec, dim: int, count: int, generator: torch.Generator):
    if dim < 2:
        raise ValueError(f"ModelSpec: a flow needs at least 2 features, got {dim}")
    split = dim // 2
    layers: list[InvertibleLayer] = []
    for _ in range(count):
        layers.append(Permutation(_mixing_permutation(dim, split, generator)))
        net = mlp_conditioner(split, 2 * (dim - split), spec.hidden, spec.depth)
        layers.append(AffineCoupling(net, split, spec.volume_preserving, spec.clamp))
    return layers


def _conv_part(spec: ModelSpec, shape: tuple[int, int, int], generator: torch.Generator):
    c, h, w = shape
    layers: list[InvertibleLayer] = []
    for _ in range(spec.conv_levels):
        if h % 2 or w % 2:
            raise ValueError(f"ModelSpec: image size {h}x{w} cannot be squeezed again")
        layers.append(Squeeze())
        c, h, w = 4 * c, h // 2, w // 2
        split = c // 2
        for _ in range(spec.conv_couplings):
            layers.append(Permutation(_mixing_permutation(c, split, generator)))
            net = conv_conditioner(split, 2 * (c - split), spec.conv_hidden, spec.conv_depth)
            layers.append(AffineCoupling(net, split, spec.volume_preserving, spec.clamp))
    layers.append(Flatten((c, h, w)))
    return layers


def build_flow(spec: ModelSpec, shape: tuple[int, ...], seed: int = 0) -> Flow:
    """Build the flow for samples of ``shape``: ``(D,)`` for ``mlp``, ``(C, H, W)`` for ``conv``.

    ``mlp``: ``spec.couplings`` fully connected couplings, each after a fixed random
    permutation. ``conv``: ``spec.conv_levels`` times (checkerboard squeeze, then
    ``spec.conv_couplings`` conv couplings after random channel permutations), a flatten,
    then ``spec.couplings`` fully connected couplings (the authors' fading-square model ends
    this way; set ``couplings=0`` for a purely convolutional flow). The permutations and
    the initial weights are drawn from ``seed``. A spec out of its fields' ranges, or a flow
    without couplings, is refused (``mflow.config.check_model``).
    """
    check_model(spec)
    generator = torch.Generator().manual_seed(seed)
    # Conditioner weights come from the global generator: seed it without leaking the change.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(spec, shape, generator)


def _build(spec: ModelSpec, shape: tuple[int, ...], generator: torch.Generator) -> Flow:
    if spec.kind == "mlp":
        if len(shape) != 1:
            raise ValueError(f"ModelSpec: kind 'mlp' needs vector samples (D,), got {shape}")
        return Flow(_fc_couplings(spec, shape[0], spec.couplings, generator))
    if spec.kind == "conv":
        if len(shape) != 3:
            raise ValueError(f"ModelSpec: kind 'conv' needs image samples (C, H, W), got {shape}")
        layers = _conv_part(spec, shape, generator)
        dim = shape[0] * shape[1] * shape[2]
        return Flow(layers + _fc_couplings(spec, dim, spec.couplings, generator))
    raise ValueError(f"ModelSpec: unknown kind {spec.kind!r}; known: {', '.join(FLOW_KINDS)}")
