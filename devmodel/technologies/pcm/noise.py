"""The PCM card as a torch noise model (docs/export.md): ``drift_coefficients`` draws ν =
|N(μ_ν(x), σ_ν(x))| at x = G_T/g_max; ``program`` draws G_prog = max(μ_prog + σ_prog·z, 0) (coupled
to ν when the card has a verify age); ``at_time`` gives G_prog·(t/t0)^−ν·(1 + Q_s(|G_prog|/g_max)·
sqrt(ln((t + t_read)/(2 t_read)))·z), clamped at 0; ``read_series`` draws reads at several ages
correlated as the card's 1/f process (Cov η(s), η(t) = ln((s + t)/|s − t|), Var η(t) =
ln((t + t_read)/(2 t_read))), for synthetic sessions and round trips."""

from __future__ import annotations

import math

import torch

from devmodel.forms import level_residual
from devmodel.model.noise import NativeNoiseModel, as_float, chunked, poly


class PcmNoiseModel(NativeNoiseModel):
    """Programming noise, drift and accumulated 1/f noise of a PCM card, in torch."""

    @property
    def coupled(self) -> bool:
        return bool(self.card.programming.verify_age_s)

    def drift_coefficients(self, g_target_us: torch.Tensor) -> torch.Tensor:
        """ν per device, fixed per programmed device."""
        g_target_us = as_float(g_target_us).contiguous()
        d = self.card.drift
        fold = d.nu_distribution == "folded_normal"

        def kernel(out, g):
            ln_x = g.abs().div_(self.g_max_us).clamp_(min=1e-7).log_()
            sd = ln_x.mul(d.nu_std.a).add_(d.nu_std.b).clamp_(d.nu_std.lo, d.nu_std.hi)
            mu = ln_x.mul_(d.nu_mean.a).add_(d.nu_mean.b).clamp_(d.nu_mean.lo, d.nu_mean.hi)
            self._normal_(out).mul_(sd).add_(mu)
            if fold:
                out.abs_()

        return chunked(kernel, torch.empty_like(g_target_us), g_target_us)

    def program(self, g_target_us: torch.Tensor, nu: torch.Tensor | None = None) -> torch.Tensor:
        """Programmed conductance at t0. With a coupled card (verify age) pass the devices' ν."""
        p = self.card.programming
        g = as_float(g_target_us).contiguous()
        if not (p.verify_age_s and nu is not None):
            offset = any(c != 0 for c in p.mean_offset_coeffs_us) or bool(p.level_offsets_g_us)

            def kernel(out, gc):
                sigma = poly(p.poly_coeffs_us, gc / p.g_ref_us).clamp_(min=0.0)
                mean = self._offset(gc).add_(gc) if offset else gc
                self._normal_(out).mul_(sigma).add_(mean).clamp_(min=0.0)

            return chunked(kernel, torch.empty_like(g), g)
        x = g / p.g_ref_us
        mean = g + self._offset(g)
        sigma = poly(p.poly_coeffs_us, x).clamp_min(0.0)
        # G_prog = G_base·e^(−L(ν − μ_ν)), mean and spread at t0 kept (as the card's NumPy sampler)
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
        """Conductance ``t_s`` seconds after programming: drift and accumulated 1/f noise."""
        self._check_time(t_s)
        rn = self.card.read_noise
        ln_ratio = math.log(t_s / self.card.t0_s)
        s = math.sqrt(self.accumulated_log(t_s, rn.t_read_s))

        def kernel(out, gp, nu_c):
            g = nu_c.mul(-ln_ratio).exp_().mul_(gp)  # G_prog·(t/t0)^−ν
            noise = gp.abs().div_(self.g_max_us).clamp_(min=1e-12).pow_(-rn.q_s_exp)
            noise.mul_(rn.q_s_amp).clamp_(max=rn.q_s_max).mul_(s).mul_(g.abs())  # Q_s·√ln·|G|
            self._normal_(out).mul_(noise).add_(g).clamp_(min=0.0)

        gp = g_prog_us.contiguous()
        return chunked(kernel, torch.empty_like(gp), gp, nu.expand_as(gp).contiguous())

    def short_term_std_us(self, g_us: torch.Tensor) -> torch.Tensor:
        """|G|·Q_s(|G|/g_max)·sqrt(ln(τ/(2 t_read))) with the white read noise in quadrature: the
        1/f power between 1/τ and 1/(2 t_read), re-drawn at every read (docs/physics.md)."""
        rn = self.card.read_noise
        flicker = g_us.abs() * self._q_s(g_us) * math.sqrt(self.short_term_log(rn.t_read_s))
        return flicker.square_().add_(self.card.white_read_noise_us ** 2).sqrt_()

    def read_series(self, g_prog_us: torch.Tensor, nu: torch.Tensor,
                    ages_s: torch.Tensor | list[float]) -> torch.Tensor:
        """Reads at several ages (n, k), correlated as the card's 1/f process, plus white noise."""
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

    def _offset(self, g: torch.Tensor) -> torch.Tensor:
        """Mean offset at t0 (the card's ``Programming.offset_us``)."""
        p = self.card.programming
        out = poly(p.mean_offset_coeffs_us, g / p.g_ref_us)
        if p.level_offsets_g_us:
            kw = {"dtype": g.dtype, "device": g.device}
            out = out + level_residual(g, torch.as_tensor(p.level_offsets_g_us, **kw),
                                       torch.as_tensor(p.offset_residuals_us(), **kw), xp=torch)
        return out

    def _q_s(self, g_prog_us: torch.Tensor) -> torch.Tensor:
        rn = self.card.read_noise
        x = (g_prog_us.abs() / self.g_max_us).clamp_min(1e-12)
        return (rn.q_s_amp / x**rn.q_s_exp).clamp_max(rn.q_s_max)


#: The technology's part interface (devmodel.technologies).
NOISE_MODEL = PcmNoiseModel
