"""Hardware-aware training methods of the five seeds, each driven by a fitted device model card.

Every method wraps the network's ``Linear``/``Conv2d`` layers in :class:`HWALayer` (trainable
weights) and perturbs them in the forward pass only (noise enters as a constant, so gradients are the
straight-through ones of the clean weights):

* ``noise-001`` (seed 001, Joshi et al.): Gaussian weight noise σ = η·max|W| per layer, recomputed
  every step; weights clipped to ±α·σ_W after each update (α = 2); starts from the FP model. η is
  the card's representative spread at t0 relative to g_max (the seed used 0.94/25 = 3.8 %).
* ``device-000`` (seed 000, Rasch et al.): noise shaped like the card's spread at t0 as a function
  of conductance, scaled by a factor and ramped up over the first batches; drop-connect (devices stuck
  at g_min); learned per-column output scales with periodic remapping of the weights to them.
* ``hasgd-002`` (seed 002, Wan et al.): the gradient averaged over L independent perturbations per
  step; analog floating point (perturbations relative to each filter's own range, the per-filter
  mapping coefficient), the bias stored as b/s against a dummy input s ≥ 1 so it uses the full range;
  the device mean shift μ_DS injected as prior knowledge.
* ``tile-003`` (seed 003): three pipelines fine-tuned in turn — 1: quantised weights and inputs;
  2: + signed weights on two cells with a finite on/off ratio; 3: + tile size, ADC precision and a
  trainable multiplier per array — with variation injected per minibatch.
* ``fluct-004`` (seed 004): read fluctuation re-drawn per sample and per read (the device-enhanced
  dataset), the energy regulariser λ·Σ α_t·ρ·|w| with a trainable energy coefficient ρ (fluctuation
  ∝ 1/ρ), and bit-serial inputs (each input bit read separately; α_t = reads per product).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from devmodel.errors import ConfigError
from devmodel.model.card import DeviceModel
from devmodel.sim.analog import quantile
from devmodel.sim.config import CrossbarConfig
from devmodel.sim.layers import bit_planes, quantize
from devmodel.train.fluctuation import multistate_noise
from devmodel.train.periphery import add_input_range, periphery_forward
from devmodel.validation import Constrained, Each, Flag, Interval, OneOf, OrNone


# -- what the card says, in the units training uses ------------------------------------------------
def spread_at_t0_rel(card: DeviceModel, x: np.ndarray) -> np.ndarray:
    """Spread of G at t0 relative to g_max vs x = G_T/g_max (the card's ``spread_at_t0_us``)."""
    return card.spread_at_t0_us(np.asarray(x, dtype=float) * card.g_max_us) / card.g_max_us


def representative_eta(card: DeviceModel) -> float:
    """Median over x ∈ (0, 1] of the relative spread at t0 (seed 001 used the median level)."""
    return float(np.median(spread_at_t0_rel(card, np.linspace(0.02, 1, 50))))


def mean_shift_rel(card: DeviceModel) -> float:
    """μ_DS of seed 002: the card's constant device shift relative to g_max."""
    return float(card.mean_shift_us() / card.g_max_us)


def read_noise_rel(card: DeviceModel) -> float:
    """Per-read fluctuation relative to g_max: the card's white read noise, at least the standard
    crossbar's short-term weight noise (000 Supplementary Table 1)."""
    return max(card.white_read_noise_us / card.g_max_us, CrossbarConfig.standard().w_noise)


def _percentile(v: torch.Tensor, q: float) -> float:
    return quantile(v.reshape(-1)[:1_000_000].float(), q / 100.0)


def _noise(like: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    return torch.empty_like(like).normal_(generator=gen)


_POS = Interval(0.0, None, "neither")
_OPT_POS = OrNone(_POS)


@dataclass(frozen=True)
class TrainOptions(Constrained):
    """What every method's training loop takes."""

    epochs: int = 60
    lr: float = 1e-3
    batch: int = 64
    seed: int = 0
    # the seeds' recipes train ResNets with SGD, momentum 0.9, weight decay 5e-4 and a learning rate
    # divided by 10 at 50 % and 75 % of the epochs (001, 000); Adam at a constant rate suits digits
    optimizer: str = "adam"
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | step (÷10 at 50 % and 75 %) | cosine

    WHERE: ClassVar[str] = "train-hwa"
    CONSTRAINTS: ClassVar[dict] = {"epochs": Interval(1, 100_000, integer=True),
                                   "lr": Interval(0.0, 10.0, "right"),
                                   "batch": Interval(1, 1 << 20, integer=True),
                                   "seed": Interval(0, 2**63 - 1, integer=True),
                                   "optimizer": OneOf(("adam", "sgd")),
                                   "momentum": Interval(0.0, 1.0, "left"),
                                   "weight_decay": Interval(0.0, 1.0),
                                   "schedule": OneOf(("constant", "step", "cosine"))}

    def to_dict(self) -> dict:
        return asdict(self)

    def make_optimizer(self, params) -> torch.optim.Optimizer:
        """The optimizer these options name (weight decay on every parameter, as the seeds)."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum,
                                   weight_decay=self.weight_decay)
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (0-based): a pure function of the epoch, so a resumed run
        continues the schedule exactly."""
        if self.schedule == "step":
            return self.lr * 0.1 ** sum(epoch >= m * self.epochs for m in (0.5, 0.75))
        if self.schedule == "cosine":
            return self.lr * 0.5 * (1.0 + float(np.cos(np.pi * epoch / self.epochs)))
        return self.lr


@dataclass(frozen=True)
class MethodOptions(Constrained):
    """A method's own hyper-parameters; ``None`` means "from the card" where a card quantity exists."""

    WHERE: ClassVar[str] = "train-hwa method option"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class NoiseOptions(MethodOptions):
    """noise-001: η [noise_scale (2) × the card's spread at t0], clip at ±clip_alpha·σ_W."""

    noise_scale: float | None = None
    eta: float | None = None
    clip_alpha: float = 2.0

    # η = 0 is seed 001's η_train = 0 (clipping without noise), the first row of its Fig. 2
    CONSTRAINTS: ClassVar[dict] = {"noise_scale": OrNone(Interval(0.0, 100.0)),
                                   "eta": OrNone(Interval(0.0, None)), "clip_alpha": _POS}


@dataclass(frozen=True)
class DeviceOptions(MethodOptions):
    """device-000: noise_scale (3) × the card's spread at t0, ramped over ramp_batches; drop-connect
    fraction; steps between remappings to the learned scales; periphery: the training forward runs
    through the standard crossbar's periphery with learned input ranges (devmodel.train.periphery)."""

    noise_scale: float | None = None
    ramp_batches: int = 100
    drop_connect: float = 0.01
    remap_every: int = 50
    periphery: bool = True

    CONSTRAINTS: ClassVar[dict] = {"noise_scale": OrNone(Interval(0.0, 100.0)),
                                   "ramp_batches": Interval(1, None, integer=True),
                                   "drop_connect": Interval(0.0, 1.0, "left"),
                                   "remap_every": Interval(1, None, integer=True),
                                   "periphery": Flag()}


@dataclass(frozen=True)
class HasgdOptions(MethodOptions):
    """hasgd-002: L perturbations per step of relative size sigma_dn [noise_scale (2) × the card's
    spread at t0], mean shift mu_ds [the card's]."""

    noise_scale: float | None = None
    n_perturb: int = 4
    sigma_dn: float | None = None
    mu_ds: float | None = None

    CONSTRAINTS: ClassVar[dict] = {"noise_scale": OrNone(Interval(0.0, 100.0)),
                                   "n_perturb": Interval(1, 1000, integer=True),
                                   "sigma_dn": OrNone(Interval(0.0, None)), "mu_ds": OrNone(Interval())}


@dataclass(frozen=True)
class TileOptions(MethodOptions):
    """tile-003: pipeline levels trained in turn, precision, on/off ratio, array size, variation per
    minibatch (relative to the cell range) [the card's spread at t0]."""

    levels: tuple[int, ...] = (1, 2, 3)
    bits: int = 8
    on_off_ratio: float = 10.0  # 10 vs 1000 studied
    tile_rows: int = 256  # array 256 × 64
    tile_cols: int = 64
    variation: float | None = None

    CONSTRAINTS: ClassVar[dict] = {"levels": Each(OneOf((1, 2, 3)), min_len=1),
                                   "bits": Interval(2, 16, integer=True),
                                   "on_off_ratio": Interval(1.0, None, "neither"),
                                   "tile_rows": Interval(1, None, integer=True),
                                   "tile_cols": Interval(1, None, integer=True),
                                   "variation": OrNone(Interval(0.0, None))}


@dataclass(frozen=True)
class FluctOptions(MethodOptions):
    """fluct-004: energy regulariser λ, per-read fluctuation at ρ = 1 [the card's read noise],
    bit-serial inputs of ``bits`` bits."""

    energy_lambda: float = 1e-4
    read_noise: float | None = None
    bit_serial: bool = True
    bits: int = 8
    # "gaussian", or seed 004's multi-state cells (Eq. 7–11) with `states` equally likely states
    fluctuation: str = "gaussian"
    states: int = 2

    CONSTRAINTS: ClassVar[dict] = {"energy_lambda": Interval(0.0, None),
                                   "read_noise": OrNone(Interval(0.0, None)),
                                   "bit_serial": Flag(), "bits": Interval(2, 16, integer=True),
                                   "fluctuation": OneOf(("gaussian", "multistate")),
                                   "states": Interval(2, 64, integer=True)}


class HWALayer(nn.Module):
    """A trainable Linear/Conv2d whose forward pass the method perturbs."""

    def __init__(self, module: nn.Module, method: Method) -> None:
        super().__init__()
        self.is_conv = isinstance(module, nn.Conv2d)
        if self.is_conv:
            self.conv_args = (module.stride, module.padding, module.dilation)
        self.weight = nn.Parameter(module.weight.detach().clone())
        self.bias = None if module.bias is None else nn.Parameter(module.bias.detach().clone())
        self.method = method
        method.init_layer(self)

    def _shape(self, v: torch.Tensor) -> torch.Tensor:
        """Per-output vector shaped against the weight."""
        return v.reshape((-1,) + (1,) * (self.weight.dim() - 1))

    def _out(self, v: torch.Tensor) -> torch.Tensor:
        """Per-output vector shaped against the layer's output."""
        return v.reshape(1, -1, 1, 1) if self.is_conv else v

    def op(self, x, w, b=None):
        if self.is_conv:
            return F.conv2d(x, w, b, *self.conv_args)
        return F.linear(x, w, b)

    def clean_weight(self) -> torch.Tensor:
        """The weights as they will be programmed (after learned scales)."""
        return self.method.clean_weight(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.op(x, self.clean_weight(), self.bias)
        return self.method.forward(self, x)

    def to_digital(self) -> nn.Module:
        """A plain Linear/Conv2d with the programmed weights; a learned per-output scale travels as
        its ``out_scale`` buffer (used by ``CrossbarConfig(scales="learned")``)."""
        w = self.clean_weight().detach()
        if self.is_conv:
            m = nn.Conv2d(w.shape[1], w.shape[0], tuple(w.shape[2:]), *self.conv_args,
                          bias=self.bias is not None)
        else:
            m = nn.Linear(w.shape[1], w.shape[0], bias=self.bias is not None)
        with torch.no_grad():
            m.weight.copy_(w)
            if self.bias is not None:
                m.bias.copy_(self.bias.detach())
        gamma = getattr(self, "gamma", None)
        if gamma is not None:
            m.register_buffer("out_scale", gamma.detach().abs().clone())
        r = getattr(self, "in_range", None)
        if isinstance(r, nn.Parameter):  # a learned input range (CrossbarConfig(input_range="learned"))
            m.register_buffer("in_range", r.detach().abs().clone())
        return m


class Method:
    """Base: no perturbation (plain fine-tuning). ``Options`` is the method's options class."""

    name = "none"
    seed = ""
    samples_per_step = 1
    Options: ClassVar[type[MethodOptions]] = MethodOptions

    def __init__(self, card: DeviceModel, opts: TrainOptions, options: MethodOptions | None = None) -> None:
        self.card, self.opts = card, opts
        self.options = options if options is not None else self.Options()
        self.step = 0
        self.gen = torch.Generator().manual_seed(opts.seed + 1)

    def pipeline_levels(self) -> tuple:
        """Levels trained in turn, each fine-tuning the previous (tile-003); one otherwise."""
        return (None,)

    def init_layer(self, layer: HWALayer) -> None:
        pass

    def clean_weight(self, layer: HWALayer) -> torch.Tensor:
        return layer.weight

    def forward(self, layer: HWALayer, x: torch.Tensor) -> torch.Tensor:
        return layer.op(x, self.clean_weight(layer), layer.bias)

    def regularizer(self, net: nn.Module) -> torch.Tensor | float:
        return 0.0

    @torch.no_grad()
    def after_step(self, net: nn.Module) -> None:
        self.step += 1

    def eval_config(self) -> CrossbarConfig:
        return CrossbarConfig.standard()

    def report(self, net: nn.Module) -> dict:
        return {}


class NoiseInjection001(Method):
    name, seed = "noise-001", "001 (Joshi et al.), section III"
    Options = NoiseOptions

    def __init__(self, card, opts, options=None):
        super().__init__(card, opts, options)
        o = self.options
        # the seed found training noise at or somewhat above the inference noise best; at 1 day the
        # device also carries drift spread and accumulated 1/f noise beyond the spread at t0
        scale = 2.0 if o.noise_scale is None else o.noise_scale
        self.eta = o.eta if o.eta is not None else scale * representative_eta(card)

    def forward(self, layer, x):
        w = layer.weight
        sigma = self.eta * w.detach().abs().max()  # recomputed every step
        return layer.op(x, w + sigma * _noise(w, self.gen), layer.bias)

    @torch.no_grad()
    def after_step(self, net):
        super().after_step(net)
        for m in net.modules():
            if isinstance(m, HWALayer):
                lim = self.options.clip_alpha * m.weight.std()
                m.weight.clamp_(-lim, lim)

    def report(self, net):
        return {"eta": self.eta, "clip_alpha": self.options.clip_alpha}


class DeviceShaped000(Method):
    name, seed = "device-000", "000 (Rasch et al.), AIMC hardware-aware training"
    Options = DeviceOptions

    def __init__(self, card, opts, options=None):
        super().__init__(card, opts, options)
        grid = np.linspace(0, 1, 101)
        self._grid = torch.tensor(grid, dtype=torch.float32)
        self._sigma = torch.tensor(spread_at_t0_rel(card, grid), dtype=torch.float32)
        self.scale = 3.0 if self.options.noise_scale is None else self.options.noise_scale
        self._crossbar = self.eval_config()

    def init_layer(self, layer):
        # learned per-column output scales; the weights become normalised codes in [−1, 1]
        w = layer.weight.detach()
        scale = w.abs().reshape(w.shape[0], -1).amax(1).clamp_min(1e-8)
        layer.gamma = nn.Parameter(scale)
        with torch.no_grad():
            layer.weight.div_(layer._shape(scale))
        if self.options.periphery:
            add_input_range(layer)

    def clean_weight(self, layer):
        return layer.weight * layer._shape(layer.gamma)

    def _sigma_of(self, x_abs: torch.Tensor) -> torch.Tensor:
        idx = (x_abs.clamp(0, 1) * (self._grid.numel() - 1)).round().long()
        return self._sigma.to(x_abs.dtype)[idx]

    def forward(self, layer, x):
        w_n = layer.weight
        ramp = min(1.0, (self.step + 1) / max(self.options.ramp_batches, 1))
        sigma = self.scale * ramp * self._sigma_of(w_n.detach().abs())
        noisy = w_n + sigma * _noise(w_n, self.gen)
        if self.options.drop_connect:
            keep = torch.rand(w_n.shape, generator=self.gen) >= self.options.drop_connect
            noisy = noisy * keep  # the active device stuck at g_min: the weight reads 0
        if self.options.periphery:
            return periphery_forward(layer, x, noisy, layer.gamma, self._crossbar, self.gen)
        return layer.op(x, noisy * layer._shape(layer.gamma), layer.bias)

    def eval_config(self):
        """The standard crossbar with the learned scales (and input ranges, when learned)."""
        base = CrossbarConfig.standard().with_(scales="learned")
        return base.with_(input_range="learned") if self.options.periphery else base

    @torch.no_grad()
    def after_step(self, net):
        super().after_step(net)
        remap = self.step % max(self.options.remap_every, 1) == 0
        for m in net.modules():
            if not isinstance(m, HWALayer):
                continue
            m.weight.clamp_(-1.0, 1.0)  # codes are conductances: never beyond g_max (seed 000)
            if remap:  # periodic remapping: max |code| per column back to 1
                peak = m.weight.abs().reshape(m.weight.shape[0], -1).amax(1).clamp_min(1e-8)
                m.weight.div_(m._shape(peak))
                m.gamma.mul_(peak)

    def report(self, net):
        o = self.options
        return {"noise_scale": self.scale, "drop_connect": o.drop_connect,
                "ramp_batches": o.ramp_batches, "remap_every": o.remap_every}


class HASGD002(Method):
    name, seed = "hasgd-002", "002 (Wan et al.), HA-SGD and analog floating point"
    Options = HasgdOptions

    def __init__(self, card, opts, options=None):
        super().__init__(card, opts, options)
        o = self.options
        self.samples_per_step = max(1, o.n_perturb)
        # the seed: training noise best close to the device noise expected at test; this card's
        # spread at 1 day after drift compensation is ≈ 1.5× its spread at t0 (docs/hwa-training.md)
        scale = 2.0 if o.noise_scale is None else o.noise_scale
        self.sigma = o.sigma_dn if o.sigma_dn is not None else scale * representative_eta(card)
        self.mu = o.mu_ds if o.mu_ds is not None else mean_shift_rel(card)

    def forward(self, layer, x):
        w, b = layer.weight, layer.bias
        # analog floating point: each filter's range R_j maps onto the device window
        r = w.detach().abs().reshape(w.shape[0], -1).amax(1).clamp_min(1e-8)
        dw = (self.mu + self.sigma * _noise(w, self.gen)) * layer._shape(r)
        if b is None:
            return layer.op(x, w + dw, None)
        # the bias is stored as b/s on a device of the same range, read with a dummy input s ≥ 1
        s = torch.clamp((b.detach().abs() / r).max(), min=1.0)
        db = (self.mu + self.sigma * _noise(b, self.gen)) * r * s
        return layer.op(x, w + dw, b + db)

    def report(self, net):
        return {"L": self.samples_per_step, "sigma_dn": self.sigma, "mu_ds": self.mu}


class TileAware003(Method):
    name, seed = "tile-003", "003 (tile-aware training, three pipelines)"
    Options = TileOptions

    def __init__(self, card, opts, options=None):
        super().__init__(card, opts, options)
        o = self.options
        self.level = o.levels[0]
        self.variation = o.variation if o.variation is not None else representative_eta(card)

    def pipeline_levels(self) -> tuple:
        return tuple(self.options.levels)

    def init_layer(self, layer):
        layer.register_buffer("in_range", torch.tensor(0.0))
        # inputs scaled down further where needed so the column outputs fit the ADC range
        layer.register_buffer("out_scale", torch.tensor(1.0))
        layer.multiplier = nn.Parameter(torch.ones(len(self._tile_rows(layer))))

    def clean_weight(self, layer):
        """Level 3: the trained multiplier of each array folded into its rows (what the digital
        network programs); levels 1–2 have none."""
        w = layer.weight
        if self.level < 3:
            return w
        parts = []
        for k, (start, stop) in enumerate(self._tile_rows(layer)):
            parts.append(layer.multiplier[k].expand(stop - start))
        return (w.reshape(w.shape[0], -1) * torch.cat(parts)).reshape(w.shape)

    def _tile_rows(self, layer) -> list[tuple[int, int]]:
        """Flattened input rows of each array: whole channels for convolutions (as the crossbar
        simulator tiles them), else blocks of tile_rows."""
        flat_in = layer.weight[0].numel()
        per_ch = layer.weight[0, 0].numel() if layer.is_conv else 1
        step = max(1, self.options.tile_rows // per_ch) * per_ch
        return [(start, min(start + step, flat_in)) for start in range(0, flat_in, step)]

    def _quantise_input(self, layer, x):
        with torch.no_grad():  # static range: running maximum of |input|
            layer.in_range.copy_(torch.maximum(layer.in_range, x.detach().abs().max()))
        r = layer.in_range.clamp_min(1e-8)
        return quantize((x / r).clamp(-1, 1), self.options.bits, 1.0) * r

    def forward(self, layer, x):
        w = layer.weight
        o = self.options
        rng = w.detach().abs().max().clamp_min(1e-8)
        xq = self._quantise_input(layer, x)
        if self.level == 1:  # fake-quantised weights + per-minibatch variation
            wq = quantize(w / rng, o.bits, 1.0)
            wq = wq + self.variation * _noise(wq, self.gen)
            return layer.op(xq, wq * rng, layer.bias)
        # two cells in two columns, g_min = 1/on_off of the window, each cell quantised and varied
        g_min = 1.0 / o.on_off_ratio
        wn = w / rng
        cells = []
        for part in (wn.clamp_min(0), (-wn).clamp_min(0)):
            g = g_min + (1 - g_min) * part
            g = quantize(g, o.bits, 1.0) + self.variation * _noise(g, self.gen)
            cells.append(g)
        if self.level == 2:
            return layer.op(xq, (cells[0] - cells[1]) / (1 - g_min) * rng, layer.bias)
        return self._tiled(layer, xq, cells, g_min, rng)

    def _tiled(self, layer, xq, cells, g_min, rng):
        """Level 3: tiles of tile_rows inputs; each column digitised by an ADC over ±bound; a
        trainable multiplier per array."""
        o = self.options
        r = layer.in_range.clamp_min(1e-8)
        bound = CrossbarConfig.standard().out_bound  # 000 Suppl. Table 1
        raw = [[layer.op(*self._tile(layer, g, xq / r, start, stop)) for g in cells]
               for start, stop in self._tile_rows(layer)]
        with torch.no_grad():  # bound-aware input range, as the simulator calibrates it
            need = max(_percentile(y.detach().abs(), 99.9) for ys in raw for y in ys) / bound
            layer.out_scale.copy_(torch.clamp(layer.out_scale, min=need))
        s = layer.out_scale
        out = 0
        for k, (y_pos, y_neg) in enumerate(raw):
            y = sum(sign * quantize((yk / s).clamp(-bound, bound), o.bits, bound)
                    for sign, yk in ((1, y_pos), (-1, y_neg)))
            out = out + y * layer.multiplier[k]
        out = out * s * r * rng / (1 - g_min)
        if layer.bias is not None:
            out = out + layer._out(layer.bias)
        return out

    def _tile(self, layer, g, x, start, stop):
        """(tile input, tile conductances) of the rows start:stop."""
        if layer.is_conv:  # whole channels per tile
            per_ch = g[0, 0].numel()
            return x[:, start // per_ch:stop // per_ch], g[:, start // per_ch:stop // per_ch]
        return x[..., start:stop], g[:, start:stop]

    def eval_config(self):
        o = self.options
        # one digital multiplier per array, as the seed's hardware (not per column)
        base = CrossbarConfig.standard().with_(dac_bits=o.bits, adc_bits=o.bits, scales="tile")
        if self.level == 1:
            return base
        base = base.with_(differential="two_columns", on_off_ratio=o.on_off_ratio)
        if self.level == 2:
            return base
        return base.with_(tile_rows=o.tile_rows, tile_cols=o.tile_cols)

    def report(self, net):
        return {"level": self.level, "variation": self.variation, "on_off_ratio": self.options.on_off_ratio}


class Fluctuation004(Method):
    name, seed = "fluct-004", "004 (device-enhanced dataset, energy regularisation, bit-serial)"
    Options = FluctOptions

    def __init__(self, card, opts, options=None):
        super().__init__(card, opts, options)
        o = self.options
        self.read_noise = o.read_noise if o.read_noise is not None else read_noise_rel(card)
        self.bits = o.bits

    @property
    def reads(self) -> int:
        return self.bits - 1 if self.options.bit_serial else 1

    def init_layer(self, layer):
        layer.log_rho = nn.Parameter(torch.zeros(()))  # energy coefficient ρ = e^log_rho
        layer.register_buffer("in_range", torch.tensor(0.0))

    def forward(self, layer, x):
        w = layer.weight
        y = layer.op(x, w, layer.bias)
        # products per sample: a convolution reads every kernel once per output position
        layer.products = int(y.shape[-2] * y.shape[-1]) if layer.is_conv else 1
        with torch.no_grad():
            layer.in_range.copy_(torch.maximum(layer.in_range, x.detach().abs().max()))
        sigma_w = self.read_noise / torch.exp(layer.log_rho) * w.detach().abs().max()
        if self.options.fluctuation == "multistate":
            return y + sigma_w * multistate_noise(layer, self._reads(layer, x), self.options.states, self.gen)
        with torch.no_grad():  # Σ over reads of factor²·x²: bit-serial, Σ_p 4^p δ_p² per input
            eff = sum(f * f * xr * xr for f, xr in self._reads(layer, x))
            sum_sq = layer.op(eff, torch.ones_like(w[:1]))
        # per-sample, per-read fluctuation of relative size read_noise/ρ (device-enhanced data)
        std = sigma_w * sum_sq.clamp_min(0).sqrt()
        return y + std * _noise(y, self.gen)

    @torch.no_grad()
    def _reads(self, layer, x) -> list[tuple[float, torch.Tensor]]:
        """(factor, input) of each read of a product: the DAC code, or bit-serial its bit planes δ_p
        with factors 2^p (all in units of the input range / steps)."""
        s_in = 2 ** (self.bits - 1) - 1
        r = float(layer.in_range.clamp_min(1e-8))
        code = torch.round((x / r).clamp(-1, 1) * s_in)
        if not self.options.bit_serial:
            return [(r / s_in, code)]
        return [(r / s_in * 2**p, plane) for p, plane in enumerate(bit_planes(code, self.bits - 1))]

    def alpha_t(self, layer: HWALayer) -> int:
        """α_t of seed 004's Eq. 13: reads of each of the layer's cells per inference = products per
        sample (output positions of a convolution) × reads per product (bit-serial: bits − 1), as
        devmodel.sim.energy counts them (1 product until the layer's first forward pass)."""
        return getattr(layer, "products", 1) * self.reads

    def regularizer(self, net):
        total = 0.0
        for m in net.modules():
            if isinstance(m, HWALayer):
                total = total + self.alpha_t(m) * torch.exp(m.log_rho) * m.weight.abs().sum()
        return self.options.energy_lambda * total

    def eval_config(self):
        return CrossbarConfig.standard().with_(bit_serial=self.options.bit_serial,
                                               dac_bits=self.bits)

    def report(self, net):
        layers = [m for m in net.modules() if isinstance(m, HWALayer)]
        rho = [float(torch.exp(m.log_rho.detach())) for m in layers]
        energy = sum(r * float(m.weight.detach().abs().sum()) * self.alpha_t(m)
                     for r, m in zip(rho, layers, strict=True))
        return {"reads_per_mvm": self.reads, "alpha_t": [self.alpha_t(m) for m in layers], "rho": rho,
                "energy": energy, "read_noise": self.read_noise}


def method_options(name: str, given: MethodOptions | dict | None = None) -> MethodOptions:
    """The options object of method ``name``: ``given`` itself, or its defaults with the fields of a
    dict replaced; unknown fields refused with one sentence (checked)."""
    from devmodel.train.registry import METHODS

    cls = METHODS[name].Options
    if isinstance(given, cls):
        opts = given
    else:
        given = dict(given or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(given) - known)
        if unknown:
            raise ConfigError(f"method {name} has no option {unknown[0]!r}; its options: "
                              f"{', '.join(sorted(known)) or 'none'}")
        opts = cls(**given)
    opts.check()
    return opts
