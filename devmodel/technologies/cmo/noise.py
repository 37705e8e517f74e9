"""The CMO/HfOx card as a torch noise model (docs/export.md): ``drift_coefficients`` draws each
device's relaxation z once at programming; ``program`` adds the mean offset and σ_prog(G_T)·z;
``at_time`` moves the
device along d0 + m·ln t + σ_rel(t)·z, adds the accumulated 1/f read noise K·log10(G)·
sqrt(ln((t + t_read)/(2 t_read)))·z', as aihwkit's ``ReRamCMONoiseModel``, and clamps at 0 (where
aihwkit clamps to the window: docs/export.md)."""

from __future__ import annotations

import math

import torch

from devmodel.model.noise import NativeNoiseModel, as_float, poly


class CmoNoiseModel(NativeNoiseModel):
    """Programming noise, relaxation and read noise of a CMO/HfOx card, in torch."""

    def drift_coefficients(self, g_target_us: torch.Tensor) -> torch.Tensor:
        """Each device's relaxation draw z ~ N(0, 1)."""
        return self._randn(as_float(g_target_us))

    def program(self, g_target_us: torch.Tensor, coefficients: torch.Tensor | None = None
                ) -> torch.Tensor:
        g = as_float(g_target_us)
        p = self.card.programming
        sigma = poly(p.poly_coeffs_us, g).clamp_min(0.0)
        return g + poly(p.mean_offset_coeffs_us, g) + sigma * self._randn(g)

    def at_time(self, g_prog_us: torch.Tensor, z: torch.Tensor, t_s: float) -> torch.Tensor:
        self._check_time(t_s)
        t_s = self.card.inference_age_s(t_s)  # the law starts at t0
        r, rn = self.card.relaxation, self.card.read_noise
        ln_t = math.log(t_s)
        s0, s1 = r.std_coeffs_us
        g = g_prog_us + (r.mean_offset_us + r.mean_slope_us * ln_t) + abs(s0 + s1 * ln_t) * z
        accumulated = math.sqrt(self.accumulated_log(t_s, rn.t_read_s))
        g = g + rn.k * g.clamp_min(1e-12).log10() * accumulated * self._randn(g)
        return g.clamp_min(0.0)

    def short_term_std_us(self, g_us: torch.Tensor) -> torch.Tensor:
        """K·log10(G)·sqrt(ln(τ/(2 t_read))) with the white read noise in quadrature (the part of the
        1/f law faster than 1/τ, re-drawn at every read; docs/physics.md)."""
        rn = self.card.read_noise
        flicker = rn.k * g_us.clamp_min(1e-12).log10() * math.sqrt(self.short_term_log(rn.t_read_s))
        return flicker.square_().add_(self.card.white_read_noise_us ** 2).sqrt_()


#: The technology's part interface (devmodel.technologies).
NOISE_MODEL = CmoNoiseModel
