"""Contract tests over every invertible layer and whole flows, in float64."""

from __future__ import annotations

import io

import pytest
import torch

from mflow.conditioners import conv_conditioner, mlp_conditioner
from mflow.config import ModelSpec
from mflow.flow import build_flow
from mflow.layers import AffineCoupling, Flatten, Permutation, Squeeze


def _randomise(module: torch.nn.Module) -> None:
    """Give zero-initialised output layers random weights, so couplings are not the identity."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _cases():
    """(name, layer factory, input shape)."""
    return [
        ("gin_mlp", lambda: AffineCoupling(mlp_conditioner(2, 6), 2, True), (5,)),
        ("nvp_mlp", lambda: AffineCoupling(mlp_conditioner(2, 6), 2, False), (5,)),
        ("gin_conv", lambda: AffineCoupling(conv_conditioner(2, 4), 2, True), (4, 6, 6)),
        ("nvp_conv", lambda: AffineCoupling(conv_conditioner(2, 4), 2, False), (4, 6, 6)),
        ("permutation", lambda: Permutation(torch.tensor([2, 0, 3, 1])), (4,)),
        ("squeeze", Squeeze, (1, 4, 4)),
        ("flatten", lambda: Flatten((2, 3, 3)), (2, 3, 3)),
        ("flow_mlp_gin", lambda: build_flow(ModelSpec(couplings=3), (3,)), (3,)),
        (
            "flow_mlp_nvp",
            lambda: build_flow(ModelSpec(couplings=3, volume_preserving=False), (3,)),
            (3,),
        ),
        (
            "flow_conv_gin",
            lambda: build_flow(
                ModelSpec(kind="conv", conv_levels=1, conv_couplings=2, couplings=1), (1, 4, 4)
            ),
            (1, 4, 4),
        ),
        (
            "flow_conv_nvp",
            lambda: build_flow(
                ModelSpec(kind="conv", conv_levels=1, conv_couplings=2, couplings=1,
                          volume_preserving=False),
                (1, 4, 4),
            ),
            (1, 4, 4),
        ),
    ]


CASES = _cases()
IDS = [c[0] for c in CASES]


def _make(factory):
    layer = factory().double()
    _randomise(layer)
    return layer


@pytest.mark.parametrize(("name", "factory", "shape"), CASES, ids=IDS)
def test_inverse_recovers_input(name, factory, shape):
    layer = _make(factory)
    x = torch.randn(7, *shape, dtype=torch.float64)
    y, logdet = layer(x)
    assert y.shape[0] == 7 and logdet.shape == (7,)
    assert torch.allclose(layer.inverse(y), x, atol=1e-6)


@pytest.mark.parametrize(("name", "factory", "shape"), CASES, ids=IDS)
def test_logdet_matches_autograd(name, factory, shape):
    layer = _make(factory)
    x = torch.randn(3, *shape, dtype=torch.float64)
    _, logdet = layer(x)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: layer(v[None])[0][0], x[i])
        jac = jac.reshape(x[i].numel(), x[i].numel())
        expected = torch.linalg.slogdet(jac).logabsdet
        assert torch.allclose(logdet[i], expected, atol=1e-6)
        if layer.volume_preserving:
            assert abs(expected.item()) < 1e-8
            assert logdet[i].item() == 0.0


@pytest.mark.parametrize(("name", "factory", "shape"), CASES, ids=IDS)
def test_every_parameter_gets_a_gradient(name, factory, shape):
    layer = _make(factory)
    x = torch.randn(4, *shape, dtype=torch.float64, requires_grad=True)
    y, logdet = layer(x)
    (y.pow(2).sum() + logdet.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize(("name", "factory", "shape"), CASES, ids=IDS)
def test_state_dict_round_trip(name, factory, shape):
    layer = _make(factory)
    buffer = io.BytesIO()
    torch.save(layer.state_dict(), buffer)
    buffer.seek(0)
    fresh = factory().double()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(4, *shape, dtype=torch.float64)
    assert torch.equal(fresh(x)[0], layer(x)[0])


def test_volume_preserving_flow_flags():
    assert build_flow(ModelSpec(), (2,)).volume_preserving
    assert not build_flow(ModelSpec(volume_preserving=False), (2,)).volume_preserving


def test_flow_starts_as_identity():
    flow = build_flow(ModelSpec(), (4,))
    x = torch.randn(5, 4)
    z, _ = flow(x)
    # Couplings start at the identity, so only the permutations act: the norm is kept.
    assert torch.allclose(z.norm(dim=1), x.norm(dim=1), atol=1e-6)


def test_build_flow_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = build_flow(ModelSpec(), (3,), seed=4)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = build_flow(ModelSpec(), (3,), seed=4)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize(
    ("spec", "shape", "message"),
    [
        (ModelSpec(kind="mlpp"), (2,), "model.kind: expected one of conv, mlp"),
        (ModelSpec(kind="mlp"), (1, 4, 4), "needs vector samples"),
        (ModelSpec(kind="conv"), (4,), "needs image samples"),
        (ModelSpec(kind="conv", conv_levels=3), (1, 4, 4), "cannot be squeezed"),
        (ModelSpec(), (1,), "at least 2 features"),
    ],
)
def test_build_flow_refuses_bad_specs(spec, shape, message):
    with pytest.raises(ValueError, match=message):
        build_flow(spec, shape)


def test_permutation_refuses_non_permutation():
    with pytest.raises(ValueError, match="not a permutation"):
        Permutation(torch.tensor([0, 0, 1]))


def test_coupling_refuses_bad_clamp():
    with pytest.raises(ValueError, match="clamp"):
        AffineCoupling(mlp_conditioner(1, 2), 1, clamp=0.0)
