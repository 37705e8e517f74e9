"""The ReRAM model card (docs/model-card.md; forms from docs/physics.md, "ReRAM"):

σ(x, t) = Σ c_i(t)·x^i at snapshot times t (x = G_T/g_max), a mean shift per snapshot, and a
conductance-independent short-term read noise. Between snapshots the coefficients and the shift are
interpolated linearly in ln t; beyond them the nearest snapshot is used, only when extrapolation is
allowed. Times count from programming (the Wan 2022 convention aihwkit uses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from devmodel import __version__
from devmodel.forms import poly_us
from devmodel.model.card import DeviceModel, ModelCardError
from devmodel.technologies.reram.published import (
    RERAM_G_MAX_US,
    RERAM_READ_NOISE_REL,
    RERAM_WAN2022_COEFFS_US,
)


@dataclass
class Snapshot:
    t_s: float
    poly_coeffs_us: list[float]
    mean_shift_us: float = 0.0
    poly_coeffs_stderr_us: list[float | None] = field(default_factory=list)
    mean_shift_stderr_us: float | None = None


@dataclass(kw_only=True)
class ReramModel(DeviceModel):
    """A ReRAM card: error snapshots σ(x, t) and mean shifts, read noise (module docstring)."""

    technology: str = "reram"
    snapshots: list[Snapshot] = field(default_factory=list)
    read_noise_us: float | None = None
    read_noise_stderr_us: float | None = None

    EXTRAPOLATION: ClassVar[str] = "the nearest fitted snapshot is used"

    @classmethod
    def section_from_dict(cls, d: dict) -> dict[str, Any]:
        return {"snapshots": [Snapshot(**s) for s in d.get("snapshots", [])],
                "read_noise_us": d.get("read_noise_us"),
                "read_noise_stderr_us": d.get("read_noise_stderr_us")}

    def snapshot_coeffs(self, t_s: float, extrapolate: bool = False) -> tuple[np.ndarray, float]:
        """σ(x) coefficients and mean shift at ``t_s``, interpolated linearly in ln t.

        Outside the fitted snapshot range the nearest snapshot is used only when ``extrapolate``.
        """
        snaps = sorted(self.snapshots, key=lambda s: s.t_s)
        ts = np.array([s.t_s for s in snaps])
        if not snaps:
            raise ModelCardError("this card has no ReRAM snapshots")
        if (t_s < ts[0] * (1 - 1e-9) or t_s > ts[-1] * (1 + 1e-9)) and not extrapolate:
            raise ModelCardError(
                f"t = {t_s:g} s is outside the fitted snapshots {ts[0]:g}–{ts[-1]:g} s; "
                "allow extrapolation explicitly"
            )
        width = max(len(s.poly_coeffs_us) for s in snaps)
        c = np.array([np.pad(s.poly_coeffs_us, (0, width - len(s.poly_coeffs_us))) for s in snaps])
        shift = np.array([s.mean_shift_us for s in snaps])
        if len(snaps) == 1:
            return c[0], float(shift[0])
        u = np.clip(np.log(t_s), np.log(ts[0]), np.log(ts[-1]))
        j = int(np.clip(np.searchsorted(np.log(ts), u) - 1, 0, len(ts) - 2))
        w = (u - np.log(ts[j])) / (np.log(ts[j + 1]) - np.log(ts[j]))
        return (1 - w) * c[j] + w * c[j + 1], float((1 - w) * shift[j] + w * shift[j + 1])

    def sample(self, g_target_us, t_s, rng, extrapolate=False, read_noise=True) -> np.ndarray:
        """G(t) = G_T + shift(t) + σ(x, t)·z + read noise."""
        g = np.asarray(g_target_us, dtype=float)
        c, shift = self.snapshot_coeffs(t_s, extrapolate)
        sigma = np.maximum(poly_us(c, g / self.g_max_us), 0.0)
        out = g + shift + sigma * rng.standard_normal(g.shape)
        if read_noise and self.read_noise_us:
            out += self.read_noise_us * rng.standard_normal(g.shape)
        return out

    def scalars(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.snapshots:
            for i, c in enumerate(s.poly_coeffs_us):
                out[f"snapshot.{s.t_s:g}.c{i}"] = c
            out[f"snapshot.{s.t_s:g}.mean_shift_us"] = s.mean_shift_us
        if self.read_noise_us is not None:
            out["read_noise_us"] = self.read_noise_us
        return out

    def stderrs(self) -> dict[str, float | None]:
        err: dict[str, float | None] = {}
        for s in self.snapshots:
            for i, e in enumerate(s.poly_coeffs_stderr_us):
                err[f"snapshot.{s.t_s:g}.c{i}"] = e
            err[f"snapshot.{s.t_s:g}.mean_shift_us"] = s.mean_shift_stderr_us
        err["read_noise_us"] = self.read_noise_stderr_us
        return err

    @property
    def white_read_noise_us(self) -> float:
        return float(self.read_noise_us or 0.0)

    def fitted_time_range(self) -> tuple[float | None, float | None]:
        ts = [s.t_s for s in self.snapshots]
        return min(ts), max(ts)

    def spread_at_t0_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """The first snapshot's σ."""
        c, _ = self.snapshot_coeffs(self.snapshots[0].t_s)
        return np.maximum(poly_us(c, np.asarray(g_target_us, dtype=float) / self.g_max_us), 0)

    def mean_shift_us(self) -> float:
        return float(self.snapshots[0].mean_shift_us)

    def summary(self) -> dict[str, float | str]:
        x = np.linspace(0.01, 1.0, 100)
        out: dict[str, float | str] = {"technology": self.technology, "g_max_us": self.g_max_us}
        for s in self.snapshots:
            sig = poly_us(s.poly_coeffs_us, x)
            out[f"sigma_rel_g_max_at_{s.t_s:g}s"] = float(np.mean(sig) / self.g_max_us)
        sig0 = poly_us(self.snapshots[0].poly_coeffs_us, 0.0)
        out["on_off_ratio"] = float(self.g_max_us / max(sig0 * np.sqrt(2 / np.pi), 1e-6))
        out["read_noise_rel_g_max"] = float((self.read_noise_us or 0.0) / self.g_max_us)
        return out


def published() -> ReramModel:
    """The NeuRRAM table (Wan 2022, seed 000 supplement) as a card."""
    return ReramModel(
        g_max_us=RERAM_G_MAX_US, t0_s=1.0,
        snapshots=[Snapshot(t, list(c)) for t, c in sorted(RERAM_WAN2022_COEFFS_US.items())],
        read_noise_us=RERAM_READ_NOISE_REL * RERAM_G_MAX_US,
        provenance={"source": "NeuRRAM table (Wan 2022, seed 000 supplement)",
                    "toolkit_version": __version__},
    )


#: The technology's part interface (devmodel.technologies).
CARD = ReramModel
