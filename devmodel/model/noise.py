"""The card as a PyTorch noise model: what analog inference, training and the aihwkit export draw
conductances from (docs/export.md).

Everything stays in torch (no NumPy round trips), on whatever device the input tensors are on, with
an explicit ``torch.Generator``. :class:`NativeNoiseModel` holds what every technology shares (random
numbers from the generator, the time check against the card's fitted ages, weights ↔ differential
pairs, stuck devices, the white read noise); each technology's ``noise`` part implements the three
hooks aihwkit's noise models have too:

* ``drift_coefficients(g_target)``: the per-device state drawn once at programming (PCM: ν);
* ``program(g_target, coefficients)``: the programmed conductance;
* ``at_time(g_prog, coefficients, age_s)``: the conductance ``age_s`` seconds after programming.

``NativeNoiseModel(card, …)`` builds the card's technology's class. Conventions are the card's
(docs/model-card.md) and, where aihwkit has one, aihwkit's, so an exported aihwkit model and this
one give the same distributions. Weights map onto a differential pair (G⁺ − G⁻, the unused device at
0) with per-output-channel or per-tile scales; global drift compensation follows seed 001: the ratio
of the summed outputs for a fixed calibration input at t0 and at t.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from devmodel.errors import DevmodelError
from devmodel.model.card import DeviceModel
from devmodel.technologies import technology


class ExtrapolationWarning(UserWarning):
    """A time outside the card's fitted ages, used because extrapolation was allowed."""


class ExtrapolationError(DevmodelError):
    """A time outside the range the card was fitted on, without explicit permission."""


def as_float(t: torch.Tensor) -> torch.Tensor:
    """Conductances are real numbers: integer tensors become the default float dtype."""
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def poly(coeffs: list[float], x: torch.Tensor) -> torch.Tensor:
    """Σ c_i·x^i (c0 first) by Horner, in place on a new tensor."""
    out = torch.full_like(x, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        out.mul_(x).add_(c)
    return out


# Elementwise work runs in chunks of this many elements, in place: 25M-element temporaries cost
# more in fresh pages than in arithmetic (an out-of-place multiply-add took 9× its in-place time).
_CHUNK = 1 << 18


def chunked(kernel, out: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
    """Apply ``kernel(out_chunk, *input_chunks)`` over flattened, contiguous chunks."""
    flat_out = out.view(-1)
    flat_in = [t.reshape(-1) for t in inputs]
    for i in range(0, flat_out.numel(), _CHUNK):
        kernel(flat_out[i:i + _CHUNK], *(t[i:i + _CHUNK] for t in flat_in))
    return out


@dataclass
class NativeNoiseModel:
    """Device noise of a fitted (or published) card, in torch (module docstring)."""

    card: DeviceModel
    generator: torch.Generator | None = None
    extrapolate: bool = False
    #: τ (s): with it set, the 1/f fluctuations faster than 1/τ are re-drawn at every read
    #: (``short_term_std_us``) and left out of the noise ``at_time`` accumulates, so the two add up
    #: to the card's total (docs/physics.md, "Short-term read noise at the inference read")
    short_term_window_s: float | None = None

    def __new__(cls, *args, **kwargs):
        # NativeNoiseModel(card, …) builds the card's technology's class
        if cls is NativeNoiseModel:
            card = args[0] if args else kwargs["card"]
            cls = technology(card.technology).part("noise").NOISE_MODEL
        return super().__new__(cls)

    def __post_init__(self) -> None:
        self.g_max_us = float(self.card.g_max_us)

    #: True when programming noise and the drift coefficients are drawn together (a card that
    #: couples them); aihwkit's hooks then hand the coefficients from one call to the next.
    @property
    def coupled(self) -> bool:
        return False

    # -- random numbers -------------------------------------------------------------------------
    def _randn(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normals shaped like ``like``, from the explicit generator on its device."""
        return self._normal_(torch.empty_like(like))

    def _normal_(self, out: torch.Tensor) -> torch.Tensor:
        """Fill ``out`` with standard normals from the generator (drawn where it lives)."""
        if self.generator is None or out.device == self.generator.device:
            return out.normal_(generator=self.generator)
        return out.copy_(torch.randn(out.shape, generator=self.generator, dtype=out.dtype))

    # -- the technology's hooks ------------------------------------------------------------------
    def drift_coefficients(self, g_target_us: torch.Tensor) -> torch.Tensor:
        """The per-device state drawn once when a device is programmed."""
        raise NotImplementedError

    def program(self, g_target_us: torch.Tensor, coefficients: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Programmed conductance (at t0); a coupled card needs the devices' coefficients."""
        raise NotImplementedError

    def at_time(self, g_prog_us: torch.Tensor, coefficients: torch.Tensor, t_s: float) -> torch.Tensor:
        """Conductance ``t_s`` seconds after programming."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------
    def read(self, g_us: torch.Tensor) -> torch.Tensor:
        """One read: the short-term (white) read noise, re-drawn at every read."""
        w = self.card.white_read_noise_us
        return g_us + w * self._randn(g_us) if w else g_us

    def short_term_std_us(self, g_us: torch.Tensor) -> torch.Tensor:
        """Per-device standard deviation of the noise re-drawn at every read of conductance ``g_us``:
        the card's white read noise here; a technology with a 1/f law adds the part of it faster
        than 1/``short_term_window_s``."""
        return torch.full_like(g_us, self.card.white_read_noise_us)

    def accumulated_log(self, t_s: float, t_read_s: float) -> float:
        """The variance factor of the 1/f noise accumulated from programming to ``t_s``,
        ln((t + t_read)/(2 t_read)), less the short-term part ln(τ/(2 t_read)) when a window τ is set
        (never below 0)."""
        full = math.log((t_s + t_read_s) / (2 * t_read_s))
        return max(full - self.short_term_log(t_read_s), 0.0)

    def short_term_log(self, t_read_s: float) -> float:
        """ln(τ/(2 t_read)): the variance factor of the 1/f noise within one short-term window."""
        tau = self.short_term_window_s
        return max(math.log(tau / (2 * t_read_s)), 0.0) if tau else 0.0

    def weights_to_conductances(self, weights: torch.Tensor, per_channel: bool = True):
        """(G⁺, G⁻, scale): weights on a differential pair in [0, g_max], the unused device at 0;
        ``scale`` is max|W| per output channel (first dimension) or one per tile."""
        if per_channel:
            scale = weights.abs().reshape(weights.shape[0], -1).amax(dim=1)
            scale = scale.reshape((-1,) + (1,) * (weights.dim() - 1))
        else:
            scale = weights.abs().amax()
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        g = weights / scale * self.g_max_us
        return g.clamp_min(0.0), (-g).clamp_min(0.0), scale

    def conductances_to_weights(self, g_plus: torch.Tensor, g_minus: torch.Tensor,
                                scale: torch.Tensor) -> torch.Tensor:
        return (g_plus - g_minus) * scale / self.g_max_us

    def stuck_at(self, g_us: torch.Tensor, p_low: float = 0.0, p_high: float = 0.0) -> torch.Tensor:
        """Optional stuck-at faults: each device stuck at 0 with ``p_low``, at g_max with
        ``p_high``."""
        u = torch.rand(g_us.shape, generator=self.generator, dtype=g_us.dtype).to(g_us.device)
        out = torch.where(u < p_low, torch.zeros_like(g_us), g_us)
        return torch.where((u >= p_low) & (u < p_low + p_high), torch.full_like(g_us, self.g_max_us),
                           out)

    def _check_time(self, t_s: float) -> None:
        if t_s <= 0:
            raise ExtrapolationError(f"time {t_s} s: ages are counted from programming and must "
                                     "be positive")
        if self.card.outside_fitted_ages(t_s):
            lo, hi = self.card.fitted_time_range()
            msg = (f"t = {t_s:g} s is outside the ages this card was fitted on "
                   f"({lo:g}–{hi:g} s)")
            if not self.extrapolate:
                raise ExtrapolationError(msg + "; allow extrapolation explicitly")
            warnings.warn(msg + ": extrapolating", ExtrapolationWarning, stacklevel=3)


def global_drift_compensation(w_t0: torch.Tensor, w_t: torch.Tensor,
                              x_cal: torch.Tensor | None = None) -> torch.Tensor:
    """α = Σ|y(t0)| / Σ|y(t)| for a calibration input (default all ones), y = W x; multiply the
    crossbar outputs at t by α. Seed 001 divides the summed current of the columns at a constant
    voltage at t0 by that at t (what ``devmodel.sim`` does with Σ G of every device); this is the
    same ratio taken on the signed outputs of a chosen input, aihwkit's form."""
    if x_cal is None:
        x_cal = torch.ones(w_t0.shape[-1], dtype=w_t0.dtype, device=w_t0.device)
    ref = (w_t0.reshape(w_t0.shape[0], -1) @ x_cal).abs().sum()
    now = (w_t.reshape(w_t.shape[0], -1) @ x_cal).abs().sum()
    return ref / now.clamp_min(1e-12)
