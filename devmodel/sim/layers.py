"""Analog ``Linear`` and ``Conv2d`` layers on tiled crossbars (analog-inference issue).

A layer's weight matrix (outputs × inputs; a convolution's kernels flattened into columns, seeds
000/003) is split into tiles of at most ``tile_rows`` inputs — whole input channels for a
convolution, so each tile is itself a convolution over a channel group — and the digital partial
sums of the tiles are added. Each tile maps its weights onto conductances with a digital output
scale per column (max |w| of that column in the tile) or one per tile, on a differential pair
G⁺ − G⁻ (the unused device at g_min) read as one column, or on two columns digitised separately and
subtracted (003). One matrix-vector product, in the normalised units of ``CrossbarConfig``:

    x → clip to the static input range, DAC → y = x·Wᵀ + w_noise·‖x‖·z + out_noise·z
      → clip to ±out_bound, ADC → × input range × output scale → Σ tiles → × α (drift comp.) + bias

The short-term weight noise is re-drawn at every product; it is applied as its exact equivalent on
the outputs, N(0, w_noise²·Σ x²), instead of perturbing every weight. Quantisers use a straight-
through gradient so the same layers serve hardware-aware training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from devmodel.errors import DevmodelError
from devmodel.sim.config import CrossbarConfig


def bit_planes(code: torch.Tensor, bits: int) -> list[torch.Tensor]:
    """δ_0 … δ_{bits−1} of integer codes (seed 004: x = Σ_p 2^p δ_p): each plane the sign of the
    code times bit p of its magnitude (0 or ±1)."""
    sign, mag = torch.sign(code), code.abs()
    return [sign * torch.remainder(torch.floor(mag / 2**p), 2) for p in range(bits)]


def quantize(x: torch.Tensor, bits: int, bound: float) -> torch.Tensor:
    """Symmetric uniform quantisation of ``x`` (already within ±bound) to 2^bits − 1 levels, with a
    straight-through gradient."""
    steps = 2 ** (bits - 1) - 1
    q = torch.round(x * (steps / bound)) * (bound / steps)
    return x + (q - x).detach()


class AnalogLayer(nn.Module):
    """Common tiling, programming, time and periphery of the analog layers."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, config: CrossbarConfig,
                 out_scale: torch.Tensor | None = None, in_range: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        self.register_buffer("weight", weight.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        self.register_buffer("input_range", torch.tensor(1.0, dtype=weight.dtype))
        if config.input_range == "learned":
            if in_range is None:
                raise DevmodelError("input_range='learned' needs the input ranges a hardware-aware "
                                    "training learned (device-000 networks carry them as `in_range`); "
                                    f"this {type(self).__name__} has none: use input_range='calibrated'")
            self.input_range.fill_(float(in_range))
        # per-output scales a training learned (scales="learned"; the digital module's `out_scale`)
        self.register_buffer("out_scale", None if out_scale is None
                             else out_scale.detach().clone().reshape(-1).to(weight.dtype))
        self.in_tiles = self._input_tiles()
        self.out_tiles = self._chunks(weight.shape[0], config.tile_cols)
        self.alpha = 1.0
        # outputs whose devices are "PCM-noise-exempt" (seed 000, B.4): read at their ideal
        # conductance (no programming noise, drift or 1/f noise); the periphery still applies
        self.register_buffer("exempt", torch.zeros(weight.shape[0], dtype=torch.bool))
        self.generator: torch.Generator | None = None
        self._w: list[tuple[torch.Tensor, ...]] = []  # per input tile: effective normalised weights
        self._scale: list[torch.Tensor] = []  # per input tile: digital output scale per output
        self._prog: list[tuple] = []  # per input tile: programmed state (G⁺, ν⁺, G⁻, ν⁻)
        # per input tile, with read_noise="card": each device's short-term read-noise variance in
        # normalised units (G⁺ and G⁻ summed on a pair), aligned with self._w
        self._var: list[tuple[torch.Tensor, ...]] | None = None
        self._ref = 1.0  # summed current of all devices at a constant read voltage (Σ G) at t0
        self.set_ideal()

    # -- tiling -------------------------------------------------------------------------------
    @staticmethod
    def _chunks(n: int, size: int | None) -> list[slice]:
        size = size or n
        return [slice(i, min(i + size, n)) for i in range(0, n, size)]

    def _input_tiles(self) -> list[slice]:
        return self._chunks(self.weight.shape[1], self.config.tile_rows)

    @property
    def n_devices(self) -> int:
        return 2 * self.weight.numel()

    def _tile_weight(self, k: int) -> torch.Tensor:
        return self.weight[:, self.in_tiles[k]]

    def _scales(self, wk: torch.Tensor) -> torch.Tensor:
        """Digital output scale per output for one input tile: column max, tile max, or learned."""
        if self.config.scales == "learned":
            if self.out_scale is None:
                raise DevmodelError("scales='learned' needs the output scales a hardware-aware training "
                                 "learned (device-000 networks carry them as `out_scale`); this "
                                 f"{type(self).__name__} has none: use scales='column'")
            return self.out_scale
        col = wk.abs().reshape(wk.shape[0], -1).amax(dim=1)
        if self.config.scales == "tile":
            col = torch.cat([col[s].amax().expand(s.stop - s.start) for s in self.out_tiles])
        return torch.where(col > 0, col, torch.ones_like(col))

    def _bshape(self, v: torch.Tensor) -> torch.Tensor:
        """Per-output vector shaped to broadcast against this layer's outputs."""
        return v

    # -- programming and time -----------------------------------------------------------------
    def _normalised(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(output scale, weights / scale in [−1, 1]) of input tile ``k`` (learned scales clip);
        with ``scale_levels`` N the scales are N integers × one per tile (seed 000, Eq. 1)."""
        wk = self._tile_weight(k)
        s = self._scales(wk)
        shape = (-1,) + (1,) * (wk.dim() - 1)
        wn = (wk / s.reshape(shape)).clamp(-1, 1)
        if self.config.scale_levels:
            q = self._integer_scales(s, self.config.scale_levels)
            return q, wn * (s / q).reshape(shape)  # conductances corrected by γ/q ≤ 1
        return s, wn

    def _integer_scales(self, gamma: torch.Tensor, n: int) -> torch.Tensor:
        """q_i = α_N·⌈γ_i/α_N⌉ with α_N = max_k γ_k / N over each output tile (seed 000, Eq. 1): at
        most N distinct values, q_i ≥ γ_i so no conductance exceeds g_max; N = 1 is the tile scale."""
        q = torch.empty_like(gamma)
        for t in self.out_tiles:
            alpha = gamma[t].max() / n
            q[t] = alpha * torch.ceil(gamma[t] / alpha - 1e-9)
        return q

    def set_ideal(self) -> None:
        """Effective weights = the digital weights (no devices)."""
        self._w, self._scale = [], []
        for k in range(len(self.in_tiles)):
            s, wn = self._normalised(k)
            self._scale.append(s)
            self._w.append((wn.clamp_min(0), (-wn).clamp_min(0)) if self._two else (wn,))
        self.alpha = 1.0
        self._var = None

    @property
    def _two(self) -> bool:
        return self.config.differential == "two_columns"

    def program(self, native, g_min_us: float, age_t0_s: float | None) -> None:
        """Program every tile's devices with the card's native noise model (once per trial)."""
        g_max = native.g_max_us
        self._prog, self._scale = [], []
        for k in range(len(self.in_tiles)):
            s, wn = self._normalised(k)
            self._scale.append(s)
            span = g_max - g_min_us
            gp = g_min_us + span * wn.clamp_min(0)
            gm = g_min_us + span * (-wn).clamp_min(0)
            nup, num = native.drift_coefficients(gp), native.drift_coefficients(gm)
            self._prog.append((native.program(gp, nup), nup, native.program(gm, num), num))
        self._span, self._g_min = g_max - g_min_us, g_min_us
        # drift compensation (seed 001): the summed current of all columns for a constant input
        # is Σ G over the devices; its value at t0 is the reference
        self._ref = None
        if age_t0_s is not None:
            self.set_time(native, age_t0_s)
            self._ref = self._current

    def set_time(self, native, age_s: float) -> None:
        """Effective weights at ``age_s`` after programming (drift and accumulated 1/f noise)."""
        self._w = []
        self._var = [] if self.config.read_noise == "card" else None
        self._current = 0.0
        for k, (gp, nup, gm, num) in enumerate(self._prog):
            gp_t, gm_t = native.at_time(gp, nup, age_s), native.at_time(gm, num, age_s)
            if self.exempt.any():
                gp_t, gm_t = self._exempt_ideal(k, gp_t, gm_t)
                # drift compensation measures (and corrects) the drifting devices only
                keep = ~self.exempt.reshape((-1,) + (1,) * (gp_t.dim() - 1))
                self._current += float((gp_t * keep).sum() + (gm_t * keep).sum())
            else:
                self._current += float(gp_t.sum() + gm_t.sum())
            if self._two:
                self._w.append((gp_t / self._span, gm_t / self._span))
            else:
                self._w.append(((gp_t - gm_t) / self._span,))
            if self._var is not None:
                self._var.append(self._read_variance(native, gp_t, gm_t))
        self.alpha = 1.0
        if self._ref is not None:  # programmed with a reference: compensation on
            self.alpha = self._ref / max(self._current, 1e-30)
            if self.exempt.any():  # exempt outputs do not drift: not compensated
                self.alpha = torch.where(self.exempt, 1.0, self.alpha).to(self.weight.dtype)

    def _read_variance(self, native, gp_t: torch.Tensor, gm_t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each device's short-term read-noise variance from the card, in normalised units: the
        currents of G⁺ and G⁻ add, so their variances add on a pair; exempt outputs read noise-free
        (seed 000, B.4)."""
        vp = (native.short_term_std_us(gp_t) / self._span).square_()
        vm = (native.short_term_std_us(gm_t) / self._span).square_()
        if self.exempt.any():
            keep = ~self.exempt.reshape((-1,) + (1,) * (vp.dim() - 1))
            vp, vm = vp * keep, vm * keep
        return (vp, vm) if self._two else (vp.add_(vm),)

    def _exempt_ideal(self, k: int, gp_t: torch.Tensor, gm_t: torch.Tensor):
        """The exempt outputs' devices at their target conductances (seed 000, B.4)."""
        _, wn = self._normalised(k)
        mask = self.exempt.reshape((-1,) + (1,) * (wn.dim() - 1))
        ideal_p = self._g_min + self._span * wn.clamp_min(0)
        ideal_m = self._g_min + self._span * (-wn).clamp_min(0)
        return torch.where(mask, ideal_p, gp_t), torch.where(mask, ideal_m, gm_t)

    # -- forward ------------------------------------------------------------------------------
    def _mvm(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _sum_inputs(self, x_sq: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Σ over each output's inputs of ``x_sq`` (given x², this is the weight-noise norm)."""
        raise NotImplementedError

    def _weight_variance(self, x_sq: torch.Tensor, w: torch.Tensor, var: torch.Tensor | None):
        """Output variance from the short-term weight noise for inputs² ``x_sq``: Σ_j x_j²·σ_ij² with
        each device's σ from the card (read_noise="card"), or w_noise²·Σ_j x_j²; None when there is
        none."""
        c = self.config
        if c.read_noise == "card":
            return None if var is None else self._mvm(x_sq, var).clamp_min_(0)
        return self._sum_inputs(x_sq, w).clamp_min(0) * c.w_noise**2 if c.w_noise else None

    def _periphery(self, y: torch.Tensor, x: torch.Tensor, w: torch.Tensor,
                   var: torch.Tensor | None = None) -> torch.Tensor:
        """Noise, output clipping and ADC on one tile's outputs (differentiable path). Weight noise
        and output noise are independent Gaussians: one draw with their summed variance
        Σx²σ² + o² serves both."""
        return self._bound(self._noisy(y, x, w, var))

    def _noisy(self, y: torch.Tensor, x: torch.Tensor, w: torch.Tensor, var) -> torch.Tensor:
        """``y`` (the product of inputs ``x`` with ``w``) with weight and output noise added."""
        c = self.config
        w_var = self._weight_variance(x * x, w, var) if self._weight_noise else None
        if w_var is None and not c.out_noise:
            return y
        std = c.out_noise if w_var is None else (w_var + c.out_noise**2).sqrt()
        return y + torch.empty_like(y).normal_(generator=self.generator) * std

    def _bound(self, y: torch.Tensor) -> torch.Tensor:
        """Output clipping and ADC."""
        c = self.config
        if c.out_bound is not None:
            y = y.clamp(-c.out_bound, c.out_bound)
            if c.adc_bits:
                y = quantize(y, c.adc_bits, c.out_bound)
        return y

    def _tile_input(self, x: torch.Tensor, k: int) -> torch.Tensor:
        raise NotImplementedError

    @property
    def reads_per_mvm(self) -> int:
        """Reads of every device per matrix-vector product (bit-serial: one per input bit)."""
        return self.config.dac_bits - 1 if self.config.bit_serial else 1

    def _forward_bit_serial(self, x: torch.Tensor) -> torch.Tensor:
        """Seed 004: the input code x = Σ_p 2^p δ_p (sign apart) is applied one bit plane at a
        time; every read has its own noise, bound and ADC, and the outputs are summed with weights
        2^p. Output variance from read noise: w²·Σ_p 4^p Σ δ_p² instead of w²·(Σ_p 2^p δ_p)²."""
        c = self.config
        r = self.input_range
        s_in = 2 ** (c.dac_bits - 1) - 1
        out = None
        for k in range(len(self.in_tiles)):
            xk = quantize((self._tile_input(x, k) / r).clamp(-1.0, 1.0), c.dac_bits, 1.0)
            code = torch.round(xk.detach() * s_in)
            w, var = self._w[k], self._tile_var(k)
            y = 0
            for p, plane in enumerate(bit_planes(code, c.dac_bits - 1)):
                if not plane.any():
                    continue
                yp = sum(self._periphery(self._mvm(plane, wi), plane, wi, vi) * (1 if j == 0 else -1)
                         for j, (wi, vi) in enumerate(zip(w, var, strict=True)))
                y = y + yp * (2**p / s_in)
            if torch.is_grad_enabled():  # straight-through: gradients as for the unsplit product
                lin = sum(self._mvm(xk, wi) * (1 if j == 0 else -1) for j, wi in enumerate(w))
                y = y + lin - lin.detach()
            y = y * self._bshape(self._scale[k] * (r * self.alpha))
            out = y if out is None else out + y
        if self.bias is not None:
            out = out + self._bshape(self.bias)
        return out

    @property
    def _weight_noise(self) -> bool:
        """Whether any short-term weight noise is drawn at the reads."""
        return bool(self._var) if self.config.read_noise == "card" else bool(self.config.w_noise)

    def _tile_var(self, k: int) -> tuple:
        """Input tile ``k``'s device variances (read_noise="card"), or Nones."""
        return self._var[k] if self._var else (None,) * len(self._w[k])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.bit_serial:
            return self._forward_bit_serial(x)
        if self.config.noise_management or self.config.bound_management:
            return self._forward_managed(x)
        if not torch.is_grad_enabled() and not self._two:
            return self._forward_inference(x)
        c = self.config
        r = self.input_range
        out = None
        for k in range(len(self.in_tiles)):
            xk = self._tile_input(x, k) / r
            if c.dac_bits:
                xk = quantize(xk.clamp(-1.0, 1.0), c.dac_bits, 1.0)
            w, var = self._w[k], self._tile_var(k)
            if self._two:
                y = self._periphery(self._mvm(xk, w[0]), xk, w[0], var[0]) - \
                    self._periphery(self._mvm(xk, w[1]), xk, w[1], var[1])
            else:
                y = self._periphery(self._mvm(xk, w[0]), xk, w[0], var[0])
            y = y * self._bshape(self._scale[k] * (r * self.alpha))
            out = y if out is None else out + y
        if self.bias is not None:
            out = out + self._bshape(self.bias)
        return out

    @torch.no_grad()
    def _forward_inference(self, x: torch.Tensor) -> torch.Tensor:
        """The same arithmetic, fused and in place: the DAC codes (integers) go through the
        crossbar and 1/steps joins the digital output factor, as does the ADC's step."""
        c = self.config
        r = float(self.input_range)
        s_in = 2 ** (c.dac_bits - 1) - 1 if c.dac_bits else 1
        s_out = 2 ** (c.adc_bits - 1) - 1 if (c.adc_bits and c.out_bound is not None) else None
        out = None
        for k in range(len(self.in_tiles)):
            xk = self._tile_input(x, k) * (s_in / r)  # x in units of one DAC step
            if c.dac_bits:
                xk.clamp_(-s_in, s_in).round_()
            w = self._w[k][0]
            y = self._mvm(xk, w)  # in units of 1/s_in
            w_var = (self._weight_variance(xk.square_(), w, self._tile_var(k)[0])
                     if self._weight_noise else None)
            if w_var is not None or c.out_noise:  # in code units: normalised noise × s_in
                if w_var is not None:
                    std = w_var.add_((c.out_noise * s_in) ** 2).sqrt_()
                else:
                    std = c.out_noise * s_in
                noise = torch.empty_like(y).normal_(generator=self.generator)
                y = y.addcmul_(noise, std) if torch.is_tensor(std) else y.add_(noise.mul_(std))
            gain = r / s_in
            if c.out_bound is not None:
                bound = c.out_bound * s_in
                y.clamp_(-bound, bound)
                if s_out:
                    y.mul_(s_out / bound).round_()  # ADC codes
                    gain = r / s_in * bound / s_out
            factor = self._bshape(self._scale[k] * (gain * self.alpha))
            out = y.mul_(factor) if out is None else out.addcmul_(y, factor)
        if self.bias is not None:
            out.add_(self._bshape(self.bias))
        return out


    @torch.no_grad()
    def _forward_managed(self, x: torch.Tensor) -> torch.Tensor:
        """Inference with seed 000's dynamic managements (B.1; aihwkit's NoiseManagement.ABS_MAX and
        BoundManagement.ITERATIVE): each sample's input to a tile divided by its own abs-max instead
        of the static range, and a sample whose outputs clip re-run with its input halved, up to
        ``bound_management`` times (the halvings undone digitally)."""
        c = self.config
        out = None
        for k in range(len(self.in_tiles)):
            xt = self._tile_input(x, k)
            if c.noise_management:
                r = xt.abs().reshape(xt.shape[0], -1).amax(dim=1).clamp_min(1e-12)
            else:
                r = torch.full((xt.shape[0],), float(self.input_range), dtype=xt.dtype)
            r = r.reshape((-1,) + (1,) * (xt.dim() - 1))
            y = self._managed_tile(xt / r, k)
            factor = self._bshape(self._scale[k] * self.alpha)
            y = y * factor * r.reshape((-1,) + (1,) * (y.dim() - 1))
            out = y if out is None else out + y
        if self.bias is not None:
            out = out + self._bshape(self.bias)
        return out

    def _managed_tile(self, xn: torch.Tensor, k: int) -> torch.Tensor:
        """One tile's normalised output for normalised inputs ``xn``, with bound management."""
        c = self.config
        w, var = self._w[k][0], self._tile_var(k)[0]
        gain = torch.ones(xn.shape[0], dtype=xn.dtype)
        y = self._managed_read(xn, w, var)
        for _ in range(c.bound_management):
            clipped = (y.abs() >= c.out_bound).reshape(y.shape[0], -1).any(dim=1)
            if not clipped.any():
                break
            gain[clipped] *= 2
            y[clipped] = self._managed_read(xn[clipped] / gain[clipped].reshape(
                (-1,) + (1,) * (xn.dim() - 1)), w, var)
        return self._bound(y) * gain.reshape((-1,) + (1,) * (y.dim() - 1))

    def _managed_read(self, xn: torch.Tensor, w: torch.Tensor, var) -> torch.Tensor:
        """DAC, product and noise (before the bound) for normalised inputs."""
        c = self.config
        xq = quantize(xn.clamp(-1.0, 1.0), c.dac_bits, 1.0) if c.dac_bits else xn.clamp(-1.0, 1.0)
        return self._noisy(self._mvm(xq, w), xq, w, var)


class AnalogLinear(AnalogLayer):
    """``nn.Linear`` on analog tiles."""

    @classmethod
    def from_digital(cls, m: nn.Linear, config: CrossbarConfig) -> AnalogLinear:
        return cls(m.weight, m.bias, config, out_scale=getattr(m, "out_scale", None),
                   in_range=getattr(m, "in_range", None))

    def _tile_input(self, x, k):
        return x[..., self.in_tiles[k]]

    def _mvm(self, x, w):
        return x @ w.T

    def _sum_inputs(self, x_sq, w):
        return x_sq.sum(dim=-1, keepdim=True)


class AnalogConv2d(AnalogLayer):
    """``nn.Conv2d`` on analog tiles: kernels flattened into crossbar columns, tiles holding whole
    input channels (each tile is a convolution over a channel group)."""

    def __init__(self, weight, bias, config, stride=1, padding=0, dilation=1, out_scale=None,
                 in_range=None):
        self.stride, self.padding, self.dilation = stride, padding, dilation
        super().__init__(weight, bias, config, out_scale, in_range)

    @classmethod
    def from_digital(cls, m: nn.Conv2d, config: CrossbarConfig) -> AnalogConv2d:
        if m.groups != 1 or m.padding_mode != "zeros":
            raise DevmodelError(f"analog Conv2d supports groups=1 and zero padding, not groups={m.groups}, "
                                f"padding_mode={m.padding_mode!r}")
        return cls(m.weight, m.bias, config, m.stride, m.padding, m.dilation,
                   out_scale=getattr(m, "out_scale", None), in_range=getattr(m, "in_range", None))

    def _input_tiles(self) -> list[slice]:
        _, c_in, kh, kw = self.weight.shape
        rows = self.config.tile_rows
        per_tile = c_in if rows is None else max(1, rows // (kh * kw))
        return self._chunks(c_in, per_tile)

    def _bshape(self, v):
        return v.reshape(1, -1, 1, 1)

    def _tile_input(self, x, k):
        return x[:, self.in_tiles[k]]

    def _mvm(self, x, w):
        return F.conv2d(x, w, None, self.stride, self.padding, self.dilation)

    def _sum_inputs(self, x_sq, w):
        """Σ x² over each output's receptive field: channels summed first, then a box filter (a
        one-output-channel convolution is nearly as slow as the layer's own in oneDNN)."""
        kh, kw = w.shape[2:]
        per_pixel = x_sq.sum(dim=1, keepdim=True)
        if self.dilation in (1, (1, 1)):
            return F.avg_pool2d(per_pixel, (kh, kw), self.stride, self.padding,
                                count_include_pad=True) * (kh * kw)
        ones = torch.ones((1, 1, kh, kw), dtype=x_sq.dtype, device=x_sq.device)
        return F.conv2d(per_pixel, ones, None, self.stride, self.padding, self.dilation)
