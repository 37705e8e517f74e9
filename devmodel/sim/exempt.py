"""PCM-noise-exempt columns (seed 000, Suppl. B.4 and Table 8): the output columns whose devices are
read at their ideal conductances, chosen by the seed's rule — the largest mean absolute gradient of
the loss with respect to the column's weights, over 100 batches — ranked over all layers
(docs/analog-inference.md, "Scales and exempt columns")."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from devmodel.errors import DevmodelError
from devmodel.sim.layers import AnalogLayer


def column_sensitivity(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 64,
                       batches: int = 100) -> list[torch.Tensor]:
    """Per Linear/Conv2d of the digital ``net`` (module order): each output column's mean |∂L/∂W|
    (cross entropy, its weights averaged), averaged over ``batches`` batches cycling through ``x``."""
    layers = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    sums = [torch.zeros(m.weight.shape[0]) for m in layers]
    was_training = net.training
    net.eval()
    n = x.shape[0]
    for b in range(batches):
        idx = torch.arange(b * batch, (b + 1) * batch) % n
        loss = F.cross_entropy(net(x[idx]), y[idx])
        grads = torch.autograd.grad(loss, [m.weight for m in layers])
        for s, g in zip(sums, grads, strict=True):
            s += g.detach().abs().reshape(g.shape[0], -1).mean(dim=1)
    net.train(was_training)
    return [s / batches for s in sums]


def exempt_columns(anet: nn.Module, sensitivity: list[torch.Tensor], fraction: float) -> int:
    """Mark the ``fraction`` of all columns with the largest sensitivity as exempt (the rest not);
    returns how many. ``anet`` is the analog network converted from the net ``sensitivity`` is of."""
    layers = [m for m in anet.modules() if isinstance(m, AnalogLayer)]
    if len(layers) != len(sensitivity) or any(m.exempt.numel() != s.numel()
                                              for m, s in zip(layers, sensitivity, strict=False)):
        raise DevmodelError("exempt columns: the sensitivities are not of this analog network's layers")
    if not 0.0 <= fraction <= 1.0:
        raise DevmodelError(f"--exempt-fraction must be in [0, 1], not {fraction:g}")
    flat = torch.cat(sensitivity)
    k = int(round(fraction * flat.numel()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    if k:
        chosen[torch.topk(flat, k).indices] = True
    for m, part in zip(layers, torch.split(chosen, [s.numel() for s in sensitivity]), strict=True):
        m.exempt.copy_(part)
    return k
