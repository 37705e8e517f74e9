"""The ReRAM card as a torch noise model (docs/export.md), in the card's form:

* relaxation law: ``drift_coefficients`` draws each device's rank u ~ U(0, 1) once at programming
  (a device keeps its place in the distribution as it relaxes), ``program`` returns the targets (the
  law holds every deviation from them) and ``at_time`` gives G_T + q(u; G_T, t), the law's quantile
  function at the device's target and age, clamped at 0;
* snapshots (Wan 2022): ``drift_coefficients`` returns the targets (as aihwkit's model);
  ``program`` and ``at_time`` draw G_T + shift(t) + σ(x, t)·z, clamped at 0, the snapshots
  interpolated linearly in ln t (``program`` at the first snapshot).
"""

from __future__ import annotations

import torch

from devmodel.model.noise import NativeNoiseModel, as_float, poly
from devmodel.technologies.reram.card import interpolate_quantiles


class ReramNoiseModel(NativeNoiseModel):
    """The relaxation law or the snapshot errors of a ReRAM card, in torch."""

    def drift_coefficients(self, g_target_us: torch.Tensor) -> torch.Tensor:
        g = as_float(g_target_us).contiguous()
        if self.card.relaxation is None:
            return g  # each snapshot's error is drawn around the target
        u = torch.rand(g.shape, generator=self.generator, dtype=g.dtype)
        return u.to(g.device)

    def program(self, g_target_us: torch.Tensor, coefficients: torch.Tensor | None = None
                ) -> torch.Tensor:
        g = as_float(g_target_us)
        if self.card.relaxation is not None:
            return g
        return self._draw(g, self.card.snapshots[0].t_s)

    def at_time(self, g_prog_us: torch.Tensor, coefficients: torch.Tensor, t_s: float) -> torch.Tensor:
        """The conductance at ``t_s``: the law at the device's rank (``coefficients`` = u, ``g_prog_us``
        = the targets), or a snapshot draw around the targets (``coefficients`` = the targets)."""
        self._check_time(t_s)
        law = self.card.relaxation
        if law is None:
            return self._draw(coefficients, t_s)
        g = g_prog_us
        kw = {"dtype": g.dtype, "device": g.device}
        table = torch.as_tensor(law.table(t_s), **kw)
        delta = interpolate_quantiles(table, torch.as_tensor(law.levels_us, **kw),
                                      torch.as_tensor(law.probabilities, **kw), g, coefficients, xp=torch)
        return (g + delta).clamp_min(0.0)

    def _draw(self, g_target_us: torch.Tensor, t_s: float) -> torch.Tensor:
        c, shift = self.card.snapshot_coeffs(t_s, extrapolate=True)
        sigma = poly([float(v) for v in c], g_target_us / self.g_max_us).clamp_min(0.0)
        return (g_target_us + float(shift) + sigma * self._randn(g_target_us)).clamp_min(0.0)


#: The technology's part interface (devmodel.technologies).
NOISE_MODEL = ReramNoiseModel
