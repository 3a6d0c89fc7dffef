"""Steps per second of the library's training step against a bare PyTorch loop.

Both sides train the same architecture on the same data with the same step: a batch drawn
with replacement, Gaussian data noise, the flow, spread noise, the Cholesky prior, backward,
gradient clipping, Adam and a step learning-rate schedule. The bare loop is written here from
torch primitives only. Rounds alternate between the two so that the shared machine's noise
falls on both alike; the table gives the median steps/s of each and their ratio.

Run: python benchmarks/bench_library.py [--rounds 5] [--steps 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from mflow.config import DataSpec, FitSpec, ModelSpec
from mflow.datasets import Dataset, load
from mflow.fit import Trainer, noise_std, prior_lr


class BareCoupling(nn.Module):
    def __init__(self, net: nn.Module, split: int, clamp: float) -> None:
        super().__init__()
        self.net, self.split, self.clamp = net, split, clamp

    def forward(self, x):
        a, b = x[:, : self.split], x[:, self.split :]
        s, t = self.net(a).chunk(2, dim=1)
        s = self.clamp * (2 / math.pi) * torch.atan(s / self.clamp)
        s = s - s.mean(dim=tuple(range(1, s.dim())), keepdim=True)
        return torch.cat([a, b * torch.exp(s) + t], dim=1)


def _mlp(i: int, o: int, h: int, depth: int) -> nn.Sequential:
    widths = [i] + [h] * (depth - 1) + [o]
    mods: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        mods.append(nn.Linear(a, b))
        if k < depth - 1:
            mods.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*mods)


def _conv(i: int, o: int, h: int, depth: int) -> nn.Sequential:
    widths = [i] + [h] * (depth - 1) + [o]
    mods: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        mods.append(nn.Conv2d(a, b, 3, padding=1))
        if k < depth - 1:
            mods.append(nn.LeakyReLU(0.2))
    return nn.Sequential(*mods)


class BareFlow(nn.Module):
    """The library's architecture, re-written plainly (permutations as index tensors)."""

    def __init__(self, spec: ModelSpec, shape: tuple[int, ...], seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.conv_part = nn.ModuleList()
        self.conv_perms: list[torch.Tensor] = []
        self.levels = 0
        dim = shape[0]
        if spec.kind == "conv":
            c, h, w = shape
            for _ in range(spec.conv_levels):
                c, h, w = 4 * c, h // 2, w // 2
                self.levels += 1
                for _ in range(spec.conv_couplings):
                    self.conv_perms.append(torch.randperm(c, generator=gen))
                    net = _conv(c // 2, 2 * (c - c // 2), spec.conv_hidden, spec.conv_depth)
                    self.conv_part.append(BareCoupling(net, c // 2, spec.clamp))
            dim = c * h * w
        self.fc_part = nn.ModuleList()
        self.fc_perms = []
        for _ in range(spec.couplings):
            self.fc_perms.append(torch.randperm(dim, generator=gen))
            net = _mlp(dim // 2, 2 * (dim - dim // 2), spec.hidden, spec.depth)
            self.fc_part.append(BareCoupling(net, dim // 2, spec.clamp))
        self.per_level = spec.conv_couplings
        self.dim = dim

    def forward(self, x):
        k = 0
        for _ in range(self.levels):
            x = F.pixel_unshuffle(x, 2)
            for _ in range(self.per_level):
                x = self.conv_part[k](x[:, self.conv_perms[k]])
                k += 1
        x = x.flatten(1)
        for perm, layer in zip(self.fc_perms, self.fc_part, strict=True):
            x = layer(x[:, perm])
        return x


def bare_loop(spec: FitSpec, x_all: torch.Tensor):
    """A closure doing one training step of the bare implementation."""
    train = spec.train
    torch.manual_seed(train.seed)
    flow = BareFlow(spec.model, tuple(x_all.shape[1:]), train.seed)
    a = nn.Parameter(torch.eye(flow.dim))
    opt = torch.optim.Adam(
        [{"params": flow.parameters()}, {"params": [a], "lr": prior_lr(train, flow.dim)}],
        lr=train.lr, foreach=True,
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, train.lr_decay_every, train.lr_decay)
    gen = torch.Generator().manual_seed(train.seed)
    eye = torch.eye(flow.dim)
    const = 0.5 * flow.dim * math.log(2 * math.pi)
    state = {"step": 0}

    def step():
        idx = torch.randint(x_all.shape[0], (train.batch_size,), generator=gen)
        x = x_all[idx]
        x = x + noise_std(train, state["step"]) * torch.randn(x.shape, generator=gen)
        z = flow(x)
        z = z + math.sqrt(spec.prior.sigma2) * torch.randn(z.shape, generator=gen)
        low = torch.tril(a)
        chol = torch.linalg.cholesky(low @ low.T + spec.prior.sigma2 * eye)
        white = torch.linalg.solve_triangular(chol, z.T, upper=False)
        nll = 0.5 * (white**2).sum(0) + torch.log(torch.diagonal(chol)).sum() + const
        loss = nll.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(flow.parameters()) + [a], train.grad_clip,
                                       foreach=True)
        opt.step()
        sched.step()
        state["step"] += 1

    return step


def _rate(step, steps: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def _sine() -> Dataset:
    return load(DataSpec("sine", n=2000))


def _images() -> Dataset:
    """Random 28x28 images: the speed of a 784-D conv flow does not depend on the pixels."""
    gen = torch.Generator().manual_seed(0)
    return Dataset("images", torch.rand(500, 1, 28, 28, generator=gen).numpy())


#: name -> (spec, data, steps per round as a fraction of --steps)
CASES = {
    "2-D MLP flow (sine)": (FitSpec(data=DataSpec("sine")), _sine, 1.0),
    "784-D conv flow (28x28 images)": (
        FitSpec(model=ModelSpec(kind="conv", couplings=2)), _images, 0.1
    ),
}


def measure(rounds: int = 5, steps: int = 200) -> list[tuple[str, float, float]]:
    """``(case, library steps/s, bare steps/s)`` for each case: medians over ``rounds``."""
    rows = []
    for name, (spec, make_data, share) in CASES.items():
        spec = spec.replace(train={"batch_size": 100, "device": "cpu"})
        data = make_data()
        lib = Trainer(spec, data)._train_step  # the library's own step, as Trainer.run calls it
        bare = bare_loop(spec, torch.as_tensor(data.x))
        n = max(10, int(steps * share))
        lib_rates, bare_rates = [], []
        for _ in range(rounds):
            lib_rates.append(_rate(lib, n))
            bare_rates.append(_rate(bare, n))
        rows.append((name, statistics.median(lib_rates), statistics.median(bare_rates)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} rounds")
    print(f"{'case':48s} {'library steps/s':>16s} {'bare steps/s':>13s} {'bare/library':>13s}")
    for name, lr, br in measure(args.rounds, args.steps):
        print(f"{name:48s} {lr:16.1f} {br:13.1f} {br / lr:13.2f}")


if __name__ == "__main__":
    main()
