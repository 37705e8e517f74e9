"""Networks: small ones for digits (tests, demo) and the seeds' ResNet-32 for CIFAR-10."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from tqdm import tqdm

from devmodel.sim.data import Split


def digits_mlp() -> nn.Module:
    """64 → 128 → 10 multilayer perceptron."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def digits_mlp_small() -> nn.Module:
    """64 → 16 → 10: little redundancy, so device noise costs measurable accuracy (used to show what
    hardware-aware training buys)."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def digits_cnn_small() -> nn.Module:
    """A 4/8-channel CNN with batch norms, sensitive to device noise like digits_mlp_small."""
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    )


def digits_cnn() -> nn.Module:
    """A small CNN for 8×8 digits, with batch norms as in the seeds' ResNets (their statistics are
    what a global conductance drift upsets)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = None
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                       nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.short is None else self.short(x)))


#: Channels of ResNet-32's three stages in seed 001: 31 3×3 convolutions, two 1×1 shortcut
#: convolutions where the width changes and one fully connected layer hold 361,722 weights (the
#: seed's count) with 16/28/56 channels and with no other widths (docs/analog-inference.md,
#: "Networks"); He et al.'s 16/32/64 would give 464,442.
SEED_001_WIDTHS = (16, 28, 56)


def analog_weight_count(net: nn.Module) -> int:
    """The weights a chip holds: every convolution's and linear layer's weights and biases (batch
    norms stay digital), as seed 001 counts "synaptic weights"."""
    return sum(p.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))
               for p in m.parameters())


class ResNet32(nn.Module):
    """ResNet-32 for CIFAR-10 as seed 001 describes it (Fig. 1): a 3×3 convolution, 3 stages of 5
    basic blocks (2 × 3×3 convolutions each, batch norm after every convolution, ReLU after the sum),
    1×1 convolution shortcuts where the width changes, global average pooling and one fully connected
    layer; ``widths`` default to the seed's (361,722 weights)."""

    def __init__(self, n_classes: int = 10, widths: tuple[int, int, int] = SEED_001_WIDTHS) -> None:
        super().__init__()
        width = widths[0]
        self.conv = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        layers, c = [], width
        for stage, c_out in enumerate(widths):
            for b in range(5):
                layers.append(_Block(c, c_out, 2 if (b == 0 and stage > 0) else 1))
                c = c_out
        self.blocks = nn.Sequential(*layers)
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x):
        out = self.blocks(torch.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(out, 1), 1))


NETWORKS = {"digits-mlp": digits_mlp, "digits-cnn": digits_cnn,
            "digits-mlp-small": digits_mlp_small, "digits-cnn-small": digits_cnn_small}


def build(name: str, seed: int = 0) -> nn.Module:
    """A fresh network from NETWORKS, initialised from ``seed`` (not from whatever the global torch
    generator holds), so the same seed gives the same network in any process."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NETWORKS[name]()


@contextlib.contextmanager
def one_thread():
    """Torch on one thread for the block: multithreaded reductions make the same seed give slightly
    different networks (and these networks are too small to gain from threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def train_fp(net: nn.Module, data: Split, epochs: int = 30, lr: float = 3e-3, batch: int = 64,
             seed: int = 0, progress: bool = False) -> nn.Module:
    """Floating-point training (Adam, cross entropy), deterministic in ``seed`` (``one_thread``)."""
    with one_thread():
        return _train(net, data, epochs, lr, batch, seed, progress)


def _train(net, data, epochs, lr, batch, seed, progress) -> nn.Module:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    n = data.x_train.shape[0]
    for _ in tqdm(range(epochs), desc="fp training", disable=not progress, leave=False):
        net.train()
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss_fn(net(data.x_train[idx]), data.y_train[idx]).backward()
            opt.step()
    net.eval()
    return net
