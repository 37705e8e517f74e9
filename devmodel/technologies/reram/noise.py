"""The ReRAM card as a torch noise model (docs/export.md): ``drift_coefficients`` returns the targets
(as aihwkit's Wan 2022 model); ``program`` and ``at_time`` draw G_T + shift(t) + σ(x, t)·z, clamped
at 0, with the card's snapshots interpolated linearly in ln t (``program`` at the first snapshot)."""

from __future__ import annotations

import torch

from devmodel.model.noise import NativeNoiseModel, as_float, poly


class ReramNoiseModel(NativeNoiseModel):
    """The snapshot errors of a ReRAM card, in torch."""

    def drift_coefficients(self, g_target_us: torch.Tensor) -> torch.Tensor:
        """The targets themselves: each snapshot's error is drawn around its target."""
        return as_float(g_target_us).contiguous()

    def program(self, g_target_us: torch.Tensor, coefficients: torch.Tensor | None = None
                ) -> torch.Tensor:
        return self._draw(as_float(g_target_us), self.card.snapshots[0].t_s)

    def at_time(self, g_prog_us: torch.Tensor, g_target_us: torch.Tensor, t_s: float) -> torch.Tensor:
        """The error at ``t_s`` around the target (``g_target_us`` from drift_coefficients)."""
        self._check_time(t_s)
        return self._draw(g_target_us, t_s)

    def _draw(self, g_target_us: torch.Tensor, t_s: float) -> torch.Tensor:
        c, shift = self.card.snapshot_coeffs(t_s, extrapolate=True)
        sigma = poly([float(v) for v in c], g_target_us / self.g_max_us).clamp_min(0.0)
        return (g_target_us + float(shift) + sigma * self._randn(g_target_us)).clamp_min(0.0)


#: The technology's part interface (devmodel.technologies).
NOISE_MODEL = ReramNoiseModel
