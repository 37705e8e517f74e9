"""Seed 004's multi-state read fluctuation (Eq. 7–11), beside the Gaussian one of ``fluct-004``.

A cell holding w is, at each read, in one of m states and returns r_l(w, ρ) (Eq. 7–8); for every
output element, sample and input the state is drawn anew (the one-hot S_ij of Eq. 10), and
y_ij = 1(r(w_i, ρ) ∘ S_ij) x_j + b_ij (Eq. 11). Here the m states are equally likely with
r_l = w + σ·d_l, d_l equally spaced, zero mean and unit variance (m = 2: a random-telegraph cell,
±σ with 50 % each, the seed's Fig. 2b example), and σ = read_noise·max|W|/ρ as in the Gaussian form,
so the two have the same variance and differ in shape only (docs/hwa-training.md). The sum over
inputs is drawn exactly, state by state: memory ∝ batch × outputs × inputs (× positions for a
convolution), fine for the networks trained here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def state_offsets(m: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """d_1 … d_m: equally spaced, zero mean, unit variance (m ≥ 2)."""
    d = torch.linspace(-1.0, 1.0, m, dtype=dtype)
    return d / d.square().mean().sqrt()


def multistate_noise(layer, reads: list[tuple[float, torch.Tensor]], m: int,
                     gen: torch.Generator | None) -> torch.Tensor:
    """Σ over reads (factor, x) of factor·Σ_k x_k·d_{l(k)} per output, each cell's state l drawn
    uniformly for every sample, output (position) and input: the fluctuating part of Eq. 11 in units
    of σ. ``layer`` is an HWALayer (Linear or Conv2d)."""
    d = state_offsets(m, reads[0][1].dtype)
    w = layer.weight
    total = None
    for factor, x in reads:
        if layer.is_conv:
            stride, padding, dilation = layer.conv_args
            cols = F.unfold(x, w.shape[2:], dilation=dilation, padding=padding, stride=stride)  # B,K,P
            shape = (cols.shape[0], w.shape[0], cols.shape[1], cols.shape[2])
            states = d[torch.randint(m, shape, generator=gen)]
            y = torch.einsum("bkp,bokp->bop", cols, states)
            h, wd = _out_size(x, w, stride, padding, dilation)
            y = y.reshape(y.shape[0], y.shape[1], h, wd)
        else:
            states = d[torch.randint(m, (x.shape[0], w.shape[0], x.shape[-1]), generator=gen)]
            y = torch.einsum("bk,bok->bo", x, states)
        total = factor * y if total is None else total + factor * y
    return total


def _out_size(x, w, stride, padding, dilation) -> tuple[int, int]:
    def pair(v):
        return v if isinstance(v, tuple) else (v, v)

    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    kh, kw = w.shape[2:]
    return ((x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
            (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1)
