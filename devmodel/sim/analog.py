"""Convert a PyTorch network to analog tiles and run it at any time after programming.

``convert(net, card, config)`` deep-copies ``net`` and replaces every ``nn.Linear`` and ``nn.Conv2d``
by its analog counterpart (batch norms, activations and pooling stay digital). Then:

* ``calibrate(x)`` sets each layer's static input range (a high percentile of |input| on data);
* ``program(seed)`` programs all devices once (programming noise, ν per device), as one trial;
* ``set_time(t_s)`` moves every device to ``t_s`` seconds of inference time — the card says what
  device age that is (``DeviceModel.inference_age_s``: from t0 for PCM as in aihwkit and seed 000,
  device age t0 + t; from programming for ReRAM) — with drift,
  accumulated 1/f noise and, if configured, global drift compensation per layer (the ratio of the
  summed outputs for an all-ones calibration input at t0 and at t, seed 001).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from devmodel.errors import DevmodelError
from devmodel.model.card import DeviceModel
from devmodel.model.noise import NativeNoiseModel
from devmodel.sim.config import CrossbarConfig
from devmodel.sim.layers import AnalogConv2d, AnalogLayer, AnalogLinear


class AnalogNet(nn.Module):
    """A network whose linear and convolution layers run on analog tiles."""

    def __init__(self, net: nn.Module, card: DeviceModel | None, config: CrossbarConfig,
                 extrapolate: bool = False) -> None:
        super().__init__()
        self.net = net
        self.card = card
        self.config = config
        self.extrapolate = extrapolate
        self.native: NativeNoiseModel | None = None
        self.eval()  # inference: batch norms use their running statistics

    @property
    def layers(self) -> list[AnalogLayer]:
        return [m for m in self.net.modules() if isinstance(m, AnalogLayer)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def reads_per_inference(self, x: torch.Tensor) -> int:
        """Device reads for one input sample shaped like ``x``'s: Σ over layers of devices × products
        (the output positions of a convolution) × reads per product (devmodel.sim.energy)."""
        from devmodel.sim.energy import network_energy

        return sum(r.cells * r.array_reads for r in network_energy(self, x[:1]))

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, batch: int = 512, max_samples: int = 512) -> None:
        """Static input range per layer: the configured percentile of |input| over ``x``, enlarged
        when needed so that the ``output_percentile`` of the normalised tile outputs stays within
        ±out_bound (a static form of the seed's bound management: an FP network mapped directly
        would otherwise clip most outputs of a wide layer). Uses the devices' current state: call
        it after ``program`` (and ``set_time(0)``) to calibrate on the programmed chip, as a lab
        would, or before programming for the ideal weights. The recording pass runs with the
        periphery off (the ranges being set must not clip what later layers see). Learned input
        ranges (``input_range="learned"``) are kept: nothing to do."""
        if self.config.input_range == "learned":
            return
        seen: dict[AnalogLayer, list[torch.Tensor]] = {m: [] for m in self.layers}
        hooks = [m.register_forward_pre_hook(lambda m, a: seen[m].append(a[0].detach()))
                 for m in self.layers]
        saved = {m: m.config for m in self.layers}  # a layer may have its own (004's noise ∝ 1/ρ)
        for m in self.layers:
            m.config = m.config.with_(w_noise=0.0, out_noise=0.0, dac_bits=None, adc_bits=None,
                                      bit_serial=False, out_bound=None)
        was_training = self.training
        self.eval()
        try:
            for i in range(0, min(x.shape[0], max_samples), batch):
                self.net(x[i:min(i + batch, max_samples)])
            for m, inputs in seen.items():
                m.input_range.fill_(self._range_for(m, torch.cat(inputs), saved[m].out_bound))
        finally:
            for h in hooks:
                h.remove()
            for m in self.layers:
                m.config = saved[m]
            self.train(was_training)

    def _range_for(self, m: AnalogLayer, x: torch.Tensor, bound: float | None) -> float:
        v = x.abs().reshape(-1).float()
        if v.numel() > 1_000_000:  # quantile needs a bounded sample
            v = v[torch.randperm(v.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]]
        r = quantile(v, self.config.input_percentile / 100.0) if v.numel() else 1.0
        r = r if r > 0 else 1.0
        if bound is not None:
            worst = 0.0
            for k in range(len(m.in_tiles)):
                xk = (m._tile_input(x, k) / r).clamp(-1.0, 1.0)
                for w in m._w[k]:
                    y = m._mvm(xk, w).abs().reshape(-1).float()
                    if y.numel() > 1_000_000:
                        y = y[:1_000_000]
                    worst = max(worst, quantile(y, self.config.output_percentile / 100))
            if worst > bound:
                r *= worst / bound
        return r

    @torch.no_grad()
    def program(self, seed: int, g_min_us: float | None = None) -> None:
        """Program all devices (one programming trial); ``g_min_us`` replaces the lowest conductance
        used (a deployment's, so the prediction maps the weights as the chip was programmed)."""
        gen = torch.Generator().manual_seed(int(seed))
        for m in self.layers:
            m.generator = gen
        if not self.config.device_noise or self.card is None:
            for m in self.layers:
                m.set_ideal()
            return
        self.native = self.card.noise_model(gen, self.extrapolate)
        if self.config.read_noise == "card":  # the fast 1/f part is drawn at every read instead
            self.native.short_term_window_s = self.config.read_window_s
        # the lowest conductance used: the device window's floor, raised by a finite on/off ratio
        g_min = max(self.card.g_min_us,
                    self.card.g_max_us / self.config.on_off_ratio if self.config.on_off_ratio else 0.0)
        if g_min_us is not None:
            g_min = float(g_min_us)
        t0_age = self._age(0.0) if self.drift_compensation else None
        for m in self.layers:
            m.program(self.native, g_min, t0_age)

    @torch.no_grad()
    def set_time(self, t_s: float) -> None:
        """Move the programmed devices to inference time ``t_s``."""
        if self.native is None:
            return
        age = self._age(t_s)
        for m in self.layers:
            m.set_time(self.native, age)

    @property
    def drift_compensation(self) -> bool:
        """The configured global drift compensation, or (None) the card technology's default."""
        if self.config.drift_compensation is None:
            return self.card is not None and type(self.card).MEAN_DRIFT
        return self.config.drift_compensation

    def _age(self, t_s: float) -> float:
        return self.card.inference_age_s(t_s)


def convert(net: nn.Module, card: DeviceModel | None, config: CrossbarConfig | None = None,
            extrapolate: bool = False) -> AnalogNet:
    """A deep copy of ``net`` with its Linear and Conv2d layers on analog tiles; a layer that holds
    weights but has no analog counterpart here (a grouped or depthwise convolution — MobileNet, seed
    004 — a recurrent layer — LSTM, seed 000) is refused in one sentence naming it, rather than left
    digital unnoticed."""
    config = config or CrossbarConfig()
    check_convertible(net)

    def analog(m: nn.Module) -> AnalogLayer | None:
        if isinstance(m, nn.Linear):
            return AnalogLinear.from_digital(m, config)
        return AnalogConv2d.from_digital(m, config) if isinstance(m, nn.Conv2d) else None

    net = replace_modules(net, analog)
    return AnalogNet(net, card, config, extrapolate)


#: Layers with weights that stay unconverted: they would silently run in floating point.
_NO_ANALOG = (nn.RNNBase, nn.RNNCellBase, nn.Conv1d, nn.Conv3d, nn.ConvTranspose2d, nn.Bilinear,
              nn.MultiheadAttention, nn.Embedding)


def check_convertible(net: nn.Module) -> None:
    """Refuse, naming the layer, a network with weights that would not run on analog tiles."""
    for name, m in net.named_modules():
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            kind = "depthwise" if m.groups == m.in_channels else "grouped"
            raise DevmodelError(f"layer {name} is a {kind} convolution (groups={m.groups}): it has no analog "
                                "counterpart here (each group would be its own small crossbar); replace it "
                                "with a groups=1 convolution or keep that network digital")
        if isinstance(m, _NO_ANALOG):
            raise DevmodelError(f"layer {name} ({type(m).__name__}) has weights but no analog counterpart "
                                "here: only Linear and Conv2d layers are mapped to crossbars")


def replace_modules(net: nn.Module, fn) -> nn.Module:
    """A deep copy of ``net`` where every module for which ``fn`` returns a replacement is replaced
    (its children are not visited); the others are searched recursively."""
    net = copy.deepcopy(net)

    def swap(module: nn.Module) -> None:
        for name, child in module.named_children():
            new = fn(child)
            if new is not None:
                setattr(module, name, new)
            else:
                swap(child)

    swap(net)
    return net


def quantile(v: torch.Tensor, q: float) -> float:
    """torch.quantile(v, q) of a 1-D tensor (linear interpolation) by two selections instead of a
    full sort: calibration (and tile-003's bound-aware range) spent most of its time sorting."""
    pos = q * (v.numel() - 1)
    lo = int(pos)
    a = float(torch.kthvalue(v, lo + 1).values)
    if pos == lo:
        return a
    b = float(torch.kthvalue(v, lo + 2).values)
    return a + (pos - lo) * (b - a)


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1024) -> float:
    """Top-1 accuracy."""
    net.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            correct += int((net(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / x.shape[0]


def evaluate_over_time(anet: AnalogNet, x: torch.Tensor, y: torch.Tensor, times_s: list[float],
                       trials: int, seed: int = 0, calibration: torch.Tensor | None = None,
                       progress=None) -> np.ndarray:
    """Accuracy (trials × times): each trial programs the devices once, calibrates the static input
    ranges on the programmed chip at t = 0 (when ``calibration`` data are given), then reads at
    every time."""
    acc = np.zeros((trials, len(times_s)))
    for i in range(trials):
        anet.program(seed + i)
        if calibration is not None:
            anet.set_time(0.0)
            anet.calibrate(calibration)
        for j, t in enumerate(times_s):
            anet.set_time(t)
            acc[i, j] = accuracy(anet, x, y)
        if progress:
            progress(i + 1, trials)
    return acc
