"""The CMO/HfOx model card (docs/model-card.md; forms from docs/physics.md, "CMO/HfOx ReRAM"):

* programming noise σ_prog(G_T) = c0 + c1·G_T (µS, G_T in µS) for the card's acceptance range, and
  the programmed conductances' mean offset from their targets, Σ d_i·G_T^i (0 in the published model);
* relaxation, the same at every level: mean shift d0 + m·ln t, spread σ_rel(t) = s0 + s1·ln t
  (t in s from programming; ``d0`` is 0 in the published model);
* read noise K·log10(G)·sqrt(ln((t + t_read)/(2 t_read))) (1/f, accumulated since programming) and
  white noise redrawn at every read;
* targets within the device window [g_min, g_max] (weights map onto it).

G(t) = max(G_T + offset(G_T) + σ_prog·z1 + d0 + m·ln t + σ_rel(t)·z2 + σ_read(t)·z3, 0) for
t ≥ t0 = 1 s, where the law starts (an earlier inference time is read at t0). aihwkit 1.2's
``ReRamCMONoiseModel`` is this card without the two offsets and clamped to the window: a device
programmed near its floor relaxes below it (the simulated chip's floor is ~5 µS below the window's
9 µS), and a clamp at g_min made the card's spread there too small by a third at one day.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devmodel import __version__
from devmodel.forms import poly_us, sqrt_log_term
from devmodel.model.card import DeviceModel
from devmodel.technologies.cmo.published import (
    CMO_G_MAX_US,
    CMO_G_MIN_US,
    CMO_PROG_COEFFS_US,
    CMO_READ_K,
    CMO_RELAX_MEAN_SLOPE_US,
    CMO_RELAX_STD_US,
    CMO_T_READ_S,
)


@dataclass
class CmoProgramming:
    poly_coeffs_us: list[float]  # σ_prog = c0 + c1·G_T (µS)
    acceptance: float  # the program-and-verify acceptance range, a fraction of G_T
    poly_coeffs_stderr_us: list[float | None] = field(default_factory=list)
    mean_offset_coeffs_us: list[float] = field(default_factory=lambda: [0.0])  # Σ d_i·G_T^i
    mean_offset_stderr_us: list[float | None] = field(default_factory=list)

    def sigma_us(self, g_target_us: np.ndarray) -> np.ndarray:
        return np.maximum(poly_us(self.poly_coeffs_us, np.asarray(g_target_us, dtype=float)), 0.0)

    def mean_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """Mean programmed conductance: the target plus the fitted offset."""
        g = np.asarray(g_target_us, dtype=float)
        return g + poly_us(self.mean_offset_coeffs_us, g)


@dataclass
class Relaxation:
    mean_slope_us: float  # m
    std_coeffs_us: list[float]  # [s0, s1]
    mean_offset_us: float = 0.0  # d0
    mean_slope_stderr_us: float | None = None
    std_coeffs_stderr_us: list[float | None] = field(default_factory=list)
    mean_offset_stderr_us: float | None = None

    def mean_us(self, t_s) -> np.ndarray:
        return self.mean_offset_us + self.mean_slope_us * np.log(np.asarray(t_s, dtype=float))

    def std_us(self, t_s) -> np.ndarray:
        return np.abs(poly_us(self.std_coeffs_us, np.log(np.asarray(t_s, dtype=float))))


@dataclass
class CmoReadNoise:
    k: float
    t_read_s: float
    white_noise_us: float = 0.0
    stderr: dict[str, float | None] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def sigma_us(self, g_us: np.ndarray, t_s: float) -> np.ndarray:
        """Accumulated 1/f read noise at conductance ``g_us`` and age ``t_s``."""
        g = np.maximum(np.asarray(g_us, dtype=float), 1e-12)
        return self.k * np.log10(g) * sqrt_log_term(t_s, self.t_read_s)


@dataclass(kw_only=True)
class CmoModel(DeviceModel):
    """A CMO/HfOx card (module docstring)."""

    technology: str = "cmo"
    programming: CmoProgramming | None = None
    relaxation: Relaxation | None = None
    read_noise: CmoReadNoise | None = None
    window_min_us: float = CMO_G_MIN_US

    @classmethod
    def section_from_dict(cls, d: dict) -> dict[str, Any]:
        return {"programming": CmoProgramming(**d["programming"]),
                "relaxation": Relaxation(**d["relaxation"]),
                "read_noise": CmoReadNoise(**d["read_noise"]),
                "window_min_us": float(d["window_min_us"])}

    @property
    def g_min_us(self) -> float:
        return self.window_min_us

    def scalars(self) -> dict[str, float]:
        p, r, rn = self.programming, self.relaxation, self.read_noise
        out = {f"programming.c{i}": c for i, c in enumerate(p.poly_coeffs_us)}
        out |= {f"programming.d{i}": c for i, c in enumerate(p.mean_offset_coeffs_us)}
        out |= {"relaxation.mean_offset_us": r.mean_offset_us, "relaxation.mean_slope_us": r.mean_slope_us,
                "relaxation.s0_us": r.std_coeffs_us[0], "relaxation.s1_us": r.std_coeffs_us[1]}
        out |= {"read_noise.k": rn.k, "read_noise.white_noise_us": rn.white_noise_us}
        return out

    def stderrs(self) -> dict[str, float | None]:
        p, r, rn = self.programming, self.relaxation, self.read_noise
        err = {f"programming.c{i}": e for i, e in enumerate(p.poly_coeffs_stderr_us)}
        err |= {f"programming.d{i}": e for i, e in enumerate(p.mean_offset_stderr_us)}
        se = r.std_coeffs_stderr_us + [None, None]
        err |= {"relaxation.mean_offset_us": r.mean_offset_stderr_us,
                "relaxation.mean_slope_us": r.mean_slope_stderr_us,
                "relaxation.s0_us": se[0], "relaxation.s1_us": se[1]}
        err |= {f"read_noise.{k}": v for k, v in rn.stderr.items()}
        return err

    def notes(self) -> list[str]:
        return ([f"held at the published value (not identifiable here): {self.read_noise.fixed}"]
                if self.read_noise.fixed else [])

    @property
    def white_read_noise_us(self) -> float:
        return float(self.read_noise.white_noise_us or 0.0)

    def inference_age_s(self, t_s: float) -> float:
        return max(float(t_s), self.t0_s)

    def age_note(self) -> str:
        return f"ages before t0 = {self.t0_s:g} s are read at t0"

    def spread_at_t0_us(self, g_target_us: np.ndarray) -> np.ndarray:
        g = np.asarray(g_target_us, dtype=float)
        return np.sqrt(self.programming.sigma_us(g) ** 2 + self.relaxation.std_us(self.t0_s) ** 2
                       + self.read_noise.sigma_us(g, self.t0_s) ** 2)

    def mean_shift_us(self) -> float:
        """The constant part of the shift at t0: the offset at G_T = 0 and the relaxation's."""
        return float(self.programming.mean_offset_coeffs_us[0] + self.relaxation.mean_us(self.t0_s))

    def summary(self) -> dict[str, float | str]:
        g = np.linspace(self.window_min_us, self.g_max_us, 100)
        span = self.g_max_us - self.window_min_us
        return {"technology": self.technology, "g_max_us": self.g_max_us, "g_min_us": self.window_min_us,
                "sigma_prog_rel_window": float(np.mean(self.programming.sigma_us(g)) / span),
                "relaxation_shift_1d_us": float(self.relaxation.mean_us(86400.0)),
                "relaxation_std_1d_rel_window": float(self.relaxation.std_us(86400.0) / span),
                "on_off_ratio": float(self.g_max_us / self.window_min_us),
                "read_noise_rel_window": float(self.white_read_noise_us / span)}


def published(acceptance: float = 0.02) -> CmoModel:
    """aihwkit 1.2's ReRamCMONoiseModel defaults (Falcone et al.) as a card."""
    return CmoModel(
        g_max_us=CMO_G_MAX_US, t0_s=1.0, window_min_us=CMO_G_MIN_US,
        programming=CmoProgramming(list(CMO_PROG_COEFFS_US[acceptance]), acceptance),
        relaxation=Relaxation(CMO_RELAX_MEAN_SLOPE_US, list(CMO_RELAX_STD_US)),
        read_noise=CmoReadNoise(CMO_READ_K, CMO_T_READ_S),
        provenance={"source": "aihwkit 1.2 ReRamCMONoiseModel defaults (Falcone et al.; docs/physics.md)",
                    "toolkit_version": __version__},
    )


#: The technology's part interface (devmodel.technologies).
CARD = CmoModel
