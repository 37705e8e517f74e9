"""A native PyTorch noise model built from a device model card (export issue, part 1).

Everything stays in torch (no NumPy round trips), on whatever device the input tensors are on, with
an explicit ``torch.Generator``. Conventions are the card's (docs/model-card.md) and, where aihwkit
has one, aihwkit's, so an exported aihwkit model and this one give the same distributions:

* times are ages since the end of programming; the card's reference t0 is where G_prog is defined
  (aihwkit's ``t_inference`` = age − t0 for PCM);
* PCM: ``program`` draws G_prog = max(μ_prog + σ_prog·z, 0) (coupled to ν when the card has a verify
  age), ``drift_coefficients`` ν = |N(μ_ν(x), σ_ν(x))| at x = G_T/g_max, ``at_time`` gives
  G_prog·(t/t0)^−ν·(1 + Q_s(|G_prog|/g_max)·sqrt(ln((t + t_read)/(2 t_read)))·z), clamped at 0;
  ``read`` adds the short-term white read noise re-drawn at every read;
* ReRAM: ``drift_coefficients`` returns the targets (as aihwkit), ``at_time`` draws G_T + shift(t) +
  σ(x, t)·z, clamped at 0, with the card's snapshots interpolated linearly in ln t; a time outside
  the fitted snapshots is refused unless ``extrapolate=True`` (then the nearest snapshot, with a
  warning);
* ``read_series`` draws reads at several ages that are correlated as the 1/f process of the card
  (Cov η(s), η(t) = ln((s + t)/|s − t|), Var η(t) = ln((t + t_read)/(2 t_read))), for synthetic
  sessions and round trips.

Weights map onto a differential pair (G⁺ − G⁻, the unused device at 0) with per-output-channel or
per-tile scales; global drift compensation follows seed 001_…: the ratio of the summed outputs for
a fixed calibration input at t0 and at t.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

from devmodel.errors import DevmodelError
from devmodel.model.card import DeviceModel


class ExtrapolationWarning(UserWarning):
    """A time outside the card's fitted ages, used because extrapolation was allowed."""


class ExtrapolationError(DevmodelError):
    """A time outside the range the card was fitted on, without explicit permission."""


def _float(t: torch.Tensor) -> torch.Tensor:
    """Conductances are real numbers: integer tensors become the default float dtype."""
    return t if t.is_floating_point() else t.to(torch.get_default_dtype())


def _poly(coeffs: list[float], x: torch.Tensor) -> torch.Tensor:
    out = torch.full_like(x, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        out.mul_(x).add_(c)
    return out


# Elementwise work runs in chunks of this many elements, in place: 25M-element temporaries cost
# more in fresh pages than in arithmetic (an out-of-place multiply-add took 9× its in-place time).
_CHUNK = 1 << 18


def _chunked(kernel, out: torch.Tensor, *inputs: torch.Tensor) -> torch.Tensor:
    """Apply ``kernel(out_chunk, *input_chunks)`` over flattened, contiguous chunks."""
    flat_out = out.view(-1)
    flat_in = [t.reshape(-1) for t in inputs]
    for i in range(0, flat_out.numel(), _CHUNK):
        kernel(flat_out[i:i + _CHUNK], *(t[i:i + _CHUNK] for t in flat_in))
    return out


@dataclass
class NativeNoiseModel:
    """Device noise of a fitted (or published) card, in torch."""

    card: DeviceModel
    generator: torch.Generator | None = None
    extrapolate: bool = False

    def __post_init__(self) -> None:
        if self.card.technology not in ("pcm", "reram"):
            raise DevmodelError(f"no native model for technology {self.card.technology!r}")
        self.g_max_us = float(self.card.g_max_us)

    # -- random numbers -------------------------------------------------------------------------
    def _randn(self, like: torch.Tensor) -> torch.Tensor:
        """Standard normals shaped like ``like``, from the explicit generator on its device."""
        return self._normal_(torch.empty_like(like))

    def _normal_(self, out: torch.Tensor) -> torch.Tensor:
        """Fill ``out`` with standard normals from the generator (drawn where it lives)."""
        if self.generator is None or out.device == self.generator.device:
            return out.normal_(generator=self.generator)
        return out.copy_(torch.randn(out.shape, generator=self.generator, dtype=out.dtype))

    # -- programming and drift -------------------------------------------------------------------
    def drift_coefficients(self, g_target_us: torch.Tensor) -> torch.Tensor:
        """ν per device (PCM), fixed per programmed device; the targets themselves for ReRAM."""
        g_target_us = _float(g_target_us).contiguous()
        if self.card.technology == "reram":
            return g_target_us
        d = self.card.drift
        fold = d.nu_distribution == "folded_normal"

        def kernel(out, g):
            ln_x = g.abs().div_(self.g_max_us).clamp_(min=1e-7).log_()
            sd = ln_x.mul(d.nu_std.a).add_(d.nu_std.b).clamp_(d.nu_std.lo, d.nu_std.hi)
            mu = ln_x.mul_(d.nu_mean.a).add_(d.nu_mean.b).clamp_(d.nu_mean.lo, d.nu_mean.hi)
            self._normal_(out).mul_(sd).add_(mu)
            if fold:
                out.abs_()

        return _chunked(kernel, torch.empty_like(g_target_us), g_target_us)

    def program(self, g_target_us: torch.Tensor, nu: torch.Tensor | None = None) -> torch.Tensor:
        """Programmed conductance at t0. With a coupled card (verify age) pass the devices' ν."""
        g_target_us = _float(g_target_us)
        if self.card.technology == "reram":
            c, shift = self._snapshot(self.card.snapshots[0].t_s)
            return self._reram_draw(g_target_us, c, shift)
        p = self.card.programming
        g = g_target_us.contiguous()
        if not (p.verify_age_s and nu is not None):
            offset = any(c != 0 for c in p.mean_offset_coeffs_us)

            def kernel(out, gc):
                x = gc / p.g_ref_us
                sigma = _poly(p.poly_coeffs_us, x).clamp_(min=0.0)
                mean = _poly(p.mean_offset_coeffs_us, x).add_(gc) if offset else gc
                self._normal_(out).mul_(sigma).add_(mean).clamp_(min=0.0)

            return _chunked(kernel, torch.empty_like(g), g)
        x = g / p.g_ref_us
        mean = g + _poly(p.mean_offset_coeffs_us, x)
        sigma = _poly(p.poly_coeffs_us, x).clamp_min(0.0)
        # G_prog = G_base·e^(−L(ν − μ_ν)), mean and spread at t0 kept (devmodel.model.sample)
        d = self.card.drift
        ln_x = torch.log((g.abs() / self.g_max_us).clamp_min(1e-7))
        mu_nu = (d.nu_mean.a * ln_x + d.nu_mean.b).clamp(d.nu_mean.lo, d.nu_mean.hi)
        sd_nu = (d.nu_std.a * ln_x + d.nu_std.b).clamp(d.nu_std.lo, d.nu_std.hi)
        L = math.log(self.card.t0_s / p.verify_age_s)
        k1, k2 = torch.exp((L * sd_nu) ** 2 / 2), torch.exp(2 * (L * sd_nu) ** 2)
        base_mean = mean / k1
        base_sd = ((sigma**2 + mean**2) / k2 - base_mean**2).clamp_min(0.0).sqrt()
        base = (base_mean + base_sd * self._randn(g)).clamp_min(0.0)
        return base * torch.exp(-L * (nu - mu_nu))

    def at_time(self, g_prog_us: torch.Tensor, nu: torch.Tensor, t_s: float) -> torch.Tensor:
        """Conductance ``t_s`` seconds after programming: drift and accumulated 1/f noise (PCM) or
        the ReRAM error at that time (``nu`` is then the target, from drift_coefficients)."""
        self._check_time(t_s)
        if self.card.technology == "reram":
            c, shift = self._snapshot(t_s)
            return self._reram_draw(nu, c, shift)
        rn = self.card.read_noise
        ln_ratio = math.log(t_s / self.card.t0_s)
        s = math.sqrt(math.log((t_s + rn.t_read_s) / (2 * rn.t_read_s)))

        def kernel(out, gp, nu_c):
            g = nu_c.mul(-ln_ratio).exp_().mul_(gp)  # G_prog·(t/t0)^−ν
            noise = gp.abs().div_(self.g_max_us).clamp_(min=1e-12).pow_(-rn.q_s_exp)
            noise.mul_(rn.q_s_amp).clamp_(max=rn.q_s_max).mul_(s).mul_(g.abs())  # Q_s·√ln·|G|
            self._normal_(out).mul_(noise).add_(g).clamp_(min=0.0)

        gp = g_prog_us.contiguous()
        return _chunked(kernel, torch.empty_like(gp), gp, nu.expand_as(gp).contiguous())

    def read(self, g_us: torch.Tensor) -> torch.Tensor:
        """One read: the short-term (white) read noise, re-drawn at every read."""
        w = (self.card.read_noise.white_noise_us if self.card.technology == "pcm"
             else self.card.read_noise_us) or 0.0
        return g_us + w * self._randn(g_us) if w else g_us

    def read_series(self, g_prog_us: torch.Tensor, nu: torch.Tensor,
                    ages_s: torch.Tensor | list[float]) -> torch.Tensor:
        """PCM reads at several ages (n, k), correlated as the card's 1/f process, plus white
        noise; for synthetic sessions (schedules, bursts) and round trips."""
        if self.card.technology != "pcm":
            raise DevmodelError("read_series is defined for PCM cards (ReRAM snapshots are "
                                "independent)")
        t = torch.as_tensor(ages_s, dtype=torch.float64, device=g_prog_us.device)
        for a in (float(t.min()), float(t.max())):
            self._check_time(a)
        rn = self.card.read_noise
        s, u = torch.meshgrid(t, t, indexing="ij")
        diff = (s - u).abs()
        cov = torch.log((s + u) / torch.where(diff > 0, diff, torch.ones_like(diff)))
        cov.diagonal().copy_(torch.log((t + rn.t_read_s) / (2 * rn.t_read_s)))
        chol = torch.linalg.cholesky(cov + 1e-9 * torch.eye(t.numel(), dtype=cov.dtype,
                                                            device=cov.device))
        z = self._randn(torch.empty((g_prog_us.numel(), t.numel()), dtype=torch.float64,
                                    device=g_prog_us.device))
        eta = (z @ chol.T).to(g_prog_us.dtype)
        drift = (t.to(g_prog_us.dtype) / self.card.t0_s)[None, :] ** (-nu[:, None])
        g = g_prog_us[:, None] * drift
        g = g * (1 + self._q_s(g_prog_us)[:, None] * eta)
        return self.read(g)

    # -- weights ↔ conductances ------------------------------------------------------------------
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

    # -- internals -------------------------------------------------------------------------------
    def _q_s(self, g_prog_us: torch.Tensor) -> torch.Tensor:
        rn = self.card.read_noise
        x = (g_prog_us.abs() / self.g_max_us).clamp_min(1e-12)
        return (rn.q_s_amp / x**rn.q_s_exp).clamp_max(rn.q_s_max)

    def _snapshot(self, t_s: float):
        c, shift = self.card.snapshot_coeffs(t_s, extrapolate=True)
        return [float(v) for v in c], float(shift)

    def _reram_draw(self, g_target_us, coeffs, shift) -> torch.Tensor:
        x = g_target_us / self.g_max_us
        sigma = _poly(coeffs, x).clamp_min(0.0)
        return (g_target_us + shift + sigma * self._randn(g_target_us)).clamp_min(0.0)

    def _check_time(self, t_s: float) -> None:
        if t_s <= 0:
            raise ExtrapolationError(f"time {t_s} s: ages are counted from programming and must "
                                     "be positive")
        if self.outside_fitted_ages(t_s):
            lo, hi = self.fitted_time_range()
            msg = (f"t = {t_s:g} s is outside the ages this card was fitted on "
                   f"({lo:g}–{hi:g} s)")
            if not self.extrapolate:
                raise ExtrapolationError(msg + "; allow extrapolation explicitly")
            warnings.warn(msg + ": extrapolating", ExtrapolationWarning, stacklevel=3)

    def outside_fitted_ages(self, age_s: float) -> bool:
        """True for an age beyond the card's data (0.1 % slack for the reads' own timing)."""
        lo, hi = self.fitted_time_range()
        return lo is not None and not (lo * 0.999 <= age_s <= hi * 1.001)

    def fitted_time_range(self) -> tuple[float | None, float | None]:
        """Ages the card's data covered (None: a published card, no limit recorded)."""
        if self.card.technology == "reram":
            ts = [s.t_s for s in self.card.snapshots]
            return min(ts), max(ts)
        rng = self.card.provenance.get("age_range_s")
        return (rng[0], rng[1]) if rng else (None, None)


def global_drift_compensation(w_t0: torch.Tensor, w_t: torch.Tensor,
                              x_cal: torch.Tensor | None = None) -> torch.Tensor:
    """α = Σ|y(t0)| / Σ|y(t)| for a calibration input (default all ones), y = W x; multiply the
    crossbar outputs at t by α. Seed 001_… divides the summed current of the columns at a constant
    voltage at t0 by that at t (what ``devmodel.sim`` does with Σ G of every device); this is the
    same ratio taken on the signed outputs of a chosen input, aihwkit's form."""
    if x_cal is None:
        x_cal = torch.ones(w_t0.shape[-1], dtype=w_t0.dtype, device=w_t0.device)
    ref = (w_t0.reshape(w_t0.shape[0], -1) @ x_cal).abs().sum()
    now = (w_t.reshape(w_t.shape[0], -1) @ x_cal).abs().sum()
    return ref / now.clamp_min(1e-12)
