"""The crossbar's periphery in the training forward pass (seed 000's hardware-aware training).

Seed 000 trains with the same forward model it evaluates with (its Supplementary Table 1): inputs
clipped to a *learned* static input range and quantised by an 8-bit DAC, output noise 0.04, outputs
clipped at ±10 and quantised by an 8-bit ADC; noise and bound management off. Quantisers pass
gradients straight through (``devmodel.sim.layers.quantize``). The input range r is a parameter:

* initialised from data: the running mean of 3·std(x) over the first 100 batches;
* its gradient comes from the clipped inputs only (an input clipped at +r whose loss would fall if it
  were larger pulls r up, and likewise at −r); while more than 95 % of the inputs are unclipped it
  also decays by 0.001·r per step, so the range does not stay wider than the data need.

These are the input-range learning rules of seed 000's toolkit (aihwkit 1.2 ``InputRangeParameter``
defaults: init_from_data 100, init_std_alpha 3, decay 0.001, input_min_percentage 0.95), written
here from their description (docs/hwa-training.md, "Periphery in training").
"""

from __future__ import annotations

import torch
from torch import nn

from devmodel.sim.config import CrossbarConfig
from devmodel.sim.layers import quantize

INIT_BATCHES = 100  # batches averaged to initialise the range from data
INIT_STD_ALPHA = 3.0  # r = 3·std(x) at initialisation
DECAY = 0.001  # shrink per step while few inputs are clipped ...
UNCLIPPED_FRACTION = 0.95  # ... i.e. more than this fraction lies inside ±r


class _RangeGradient(torch.autograd.Function):
    """Identity on the clipped inputs; gives the input range its gradient (module docstring)."""

    @staticmethod
    def forward(ctx, x_clipped: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x_clipped, r)
        return x_clipped.view_as(x_clipped)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, r = ctx.saved_tensors
        upper, lower = x >= r, x <= -r
        g_r = (grad * upper).clamp(max=0.0).sum() - (grad * lower).clamp(min=0.0).sum()
        if float((~(upper | lower)).float().mean()) > UNCLIPPED_FRACTION:
            g_r = g_r + DECAY * r
        return grad, g_r.reshape(r.shape)


def add_input_range(layer: nn.Module) -> None:
    """Give ``layer`` a learned input range (``in_range``) and its data-initialisation counter."""
    layer.in_range = nn.Parameter(torch.tensor(1.0))
    layer.register_buffer("in_range_batches", torch.tensor(0))


def clip_to_learned_range(layer: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / r clipped to [−1, 1], r): the first batches set r from the data, later ones learn it."""
    n = int(layer.in_range_batches)
    if n < INIT_BATCHES:
        with torch.no_grad():
            std = x.detach().std()
            if std > 0:
                # .data: a graph still holding r (a forward not yet back-propagated) stays valid
                layer.in_range.data.copy_((layer.in_range * n + INIT_STD_ALPHA * std) / (n + 1))
                layer.in_range_batches.add_(1)
    r = layer.in_range.abs().clamp_min(1e-8)
    rd = r.detach()
    x_c = _RangeGradient.apply(torch.maximum(torch.minimum(x, rd), -rd), r)
    return x_c / rd, rd  # r learns through _RangeGradient only: x/r·r cancels elsewhere


def periphery_forward(layer: nn.Module, x: torch.Tensor, w_norm: torch.Tensor, scale: torch.Tensor,
                      config: CrossbarConfig, gen: torch.Generator | None) -> torch.Tensor:
    """One training forward pass of ``layer`` (an HWALayer) through the crossbar periphery:
    normalised weights ``w_norm`` (codes in [−1, 1]) and per-output digital ``scale``."""
    xn, r = clip_to_learned_range(layer, x)  # r detached
    if config.dac_bits:
        xn = quantize(xn, config.dac_bits, 1.0)
    y = layer.op(xn, w_norm)
    if config.out_noise:
        z = torch.empty_like(y).normal_(generator=gen)
        y = y + config.out_noise * z
    if config.out_bound is not None:
        y = y.clamp(-config.out_bound, config.out_bound)
        if config.adc_bits:
            y = quantize(y, config.adc_bits, config.out_bound)
    y = y * layer._out(scale) * r
    return y if layer.bias is None else y + layer._out(layer.bias)
