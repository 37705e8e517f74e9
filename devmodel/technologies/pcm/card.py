"""The PCM model card (docs/model-card.md; forms from docs/physics.md):

* programming noise σ_prog(x) = Σ c_i·x^i µS with x = G_T/g_ref (1/f noise accumulated until t0
  excluded and added on top); the mean programmed conductance at t0 is G_T + Σ d_i·x^i, clamped at 0;
* drift G(t) = G_prog·(t/t0)^−ν, ν = |N(μ_ν(x), σ_ν(x))| at x = G_T/g_max with μ_ν, σ_ν =
  clip(a·ln x + b, lo, hi) (σ_ν intrinsic: the estimator variance from read noise is removed), also
  kept as a table;
* optional drift–programming coupling ``verify_age_s`` = τ_v: ν already acted between the last
  verify read and t0, so G_prog ∝ (τ_v/t0)^(ν − E ν) around its mean (absent: independent, as in
  the published model);
* 1/f read noise Q_s(x) = min(amp / x^exp, max) at x = |G_prog|/g_max (aihwkit's convention),
  accumulated σ_G(t) = G·Q_s·sqrt(ln((t+t_read)/(2 t_read))), plus white read noise.

Inference times count from t0 (aihwkit and seed 000): a device read at inference time t is t0 + t old.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr  # not scipy.stats: loading a card should not import it (≈ 1 s)

from devmodel import __version__
from devmodel.forms import ClippedLog, PowerLawCap, level_residual, poly_us, sqrt_log_term
from devmodel.model.card import DeviceModel, ModelCardError
from devmodel.technologies.pcm.published import PcmStatModel


@dataclass
class ClippedLogForm:
    """``clip(a·ln x + b, lo, hi)`` with standard errors and the parameters held fixed."""

    a: float
    b: float
    lo: float
    hi: float
    stderr: dict[str, float | None] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)
    form: str = "clipped_log"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ClippedLog(self.a, self.b, self.lo, self.hi)(x)


@dataclass
class Programming:
    poly_coeffs_us: list[float]
    g_ref_us: float
    poly_coeffs_stderr_us: list[float | None] = field(default_factory=list)
    mean_offset_coeffs_us: list[float] = field(default_factory=lambda: [0.0])
    censored_levels_us: list[float] = field(default_factory=list)
    verify_age_s: float | None = None
    mean_offset_stderr_us: list[float | None] = field(default_factory=list)
    verify_age_stderr_s: float | None = None
    # the measured mean offset at t0 of every programmed level (docs/physics.md, "Mean offset at
    # t0"): the polynomial plus the interpolated residuals passes through them
    level_offsets_g_us: list[float] = field(default_factory=list)
    level_offsets_us: list[float] = field(default_factory=list)
    level_offsets_stderr_us: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        g = self.level_offsets_g_us
        if len(self.level_offsets_us) != len(g) or np.any(np.diff(g) <= 0):
            raise ModelCardError("model card: programming/level_offsets_us must have one value per "
                                 "level_offsets_g_us, and those must increase")

    def offset_residuals_us(self) -> np.ndarray:
        """Per tabulated level: measured offset minus the polynomial's."""
        g = np.asarray(self.level_offsets_g_us, dtype=float)
        return np.asarray(self.level_offsets_us, dtype=float) - poly_us(self.mean_offset_coeffs_us,
                                                                         g / self.g_ref_us)

    def offset_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """Mean programmed offset from the target at t0: the polynomial, through the measured
        levels when the card tabulates them."""
        g = np.asarray(g_target_us, dtype=float)
        out = poly_us(self.mean_offset_coeffs_us, g / self.g_ref_us)
        if self.level_offsets_g_us:
            out = out + level_residual(g, np.asarray(self.level_offsets_g_us, dtype=float),
                                       self.offset_residuals_us())
        return out

    def sigma_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """σ_prog(G_T) ≥ 0 in µS."""
        x = np.asarray(g_target_us, dtype=float) / self.g_ref_us
        return np.maximum(poly_us(self.poly_coeffs_us, x), 0.0)

    def mean_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """Mean programmed conductance at t0 (G_T plus the fitted offset)."""
        g = np.asarray(g_target_us, dtype=float)
        return g + self.offset_us(g)


@dataclass
class DriftTable:
    g_us: list[float]
    nu_mean: list[float]
    nu_std: list[float]
    nu_std_apparent: list[float] = field(default_factory=list)
    n: list[int] = field(default_factory=list)


@dataclass
class Drift:
    nu_mean: ClippedLogForm
    nu_std: ClippedLogForm
    table: DriftTable
    nu_std_convention: str = "intrinsic"
    nu_distribution: str = "folded_normal"  # ν = |N(μ_ν, σ_ν)|


@dataclass
class ReadNoise:
    q_s_amp: float
    q_s_exp: float
    q_s_max: float
    t_read_s: float
    white_noise_us: float = 0.0
    stderr: dict[str, float | None] = field(default_factory=dict)
    fixed: list[str] = field(default_factory=list)

    def q_s(self, x: np.ndarray) -> np.ndarray:
        return PowerLawCap(self.q_s_amp, self.q_s_exp, self.q_s_max)(x)

    def sqrt_log_term(self, t_s: np.ndarray) -> np.ndarray:
        return sqrt_log_term(t_s, self.t_read_s)


@dataclass(kw_only=True)
class PcmModel(DeviceModel):
    """A PCM card: programming noise, drift and 1/f read noise (module docstring)."""

    technology: str = "pcm"
    programming: Programming | None = None
    drift: Drift | None = None
    read_noise: ReadNoise | None = None


    @classmethod
    def section_from_dict(cls, d: dict) -> dict[str, Any]:
        dr = d["drift"]
        return {
            "programming": Programming(**d["programming"]),
            "drift": Drift(nu_mean=ClippedLogForm(**dr["nu_mean"]), nu_std=ClippedLogForm(**dr["nu_std"]),
                           table=DriftTable(**dr["table"]),
                           **{k: v for k, v in dr.items() if k not in ("nu_mean", "nu_std", "table")}),
            "read_noise": ReadNoise(**d["read_noise"]),
        }

    # -- what shared code asks -------------------------------------------------------------------
    def scalars(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for i, c in enumerate(self.programming.poly_coeffs_us):
            out[f"programming.c{i}"] = c
        if self.programming.verify_age_s:
            out["programming.verify_age_s"] = self.programming.verify_age_s
        for name in ("nu_mean", "nu_std"):
            f = getattr(self.drift, name)
            for k in ("a", "b", "lo", "hi"):
                if k not in f.fixed:
                    out[f"drift.{name}.{k}"] = getattr(f, k)
        rn = self.read_noise
        out |= {"read_noise.q_s_amp": rn.q_s_amp, "read_noise.q_s_exp": rn.q_s_exp,
                "read_noise.white_noise_us": rn.white_noise_us}
        return out

    def stderrs(self) -> dict[str, float | None]:
        err: dict[str, float | None] = {}
        for i, e in enumerate(self.programming.poly_coeffs_stderr_us):
            err[f"programming.c{i}"] = e
        err["programming.verify_age_s"] = self.programming.verify_age_stderr_s
        for name in ("nu_mean", "nu_std"):
            f = getattr(self.drift, name)
            for k in ("a", "b", "lo", "hi"):
                err[f"drift.{name}.{k}"] = f.stderr.get(k)
        for k, v in self.read_noise.stderr.items():
            err[f"read_noise.{k}"] = v
        return err

    def remedy(self, curve: str) -> str:
        return {"sigma_prog": "raise the σ_prog degree (devmodel fit --set prog_degree=N, N ≤ 6) or "
                              "program more devices per level",
                "mean_offset": "the card passes through every level's measured mean anyway "
                               "(level offsets); a poor polynomial only matters between levels",
                "nu_mean": "ν(G) does not follow the clipped-log form: export with the ν table "
                           "(export --to aihwkit custom_drift) and check drift reads for outliers",
                "nu_std": "ν spread does not follow the clipped-log form: check drift reads for "
                          "outliers or add levels",
                "q_s": "the burst variograms do not follow Q_s(G) = min(amp/x^exp, cap): record "
                       "longer bursts or more burst devices per level"}.get(curve, super().remedy(curve))

    def notes(self) -> list[str]:
        fixed = self.drift.nu_mean.fixed + [f"σ_ν.{k}" for k in self.drift.nu_std.fixed]
        return [f"held at the published value (not identifiable here): {fixed}"] if fixed else []

    @property
    def white_read_noise_us(self) -> float:
        return float(self.read_noise.white_noise_us or 0.0)

    def extrapolation(self) -> str:
        return "drift and 1/f noise follow their fitted laws"

    def inference_age_s(self, t_s: float) -> float:
        return float(t_s) + self.t0_s

    def age_note(self) -> str:
        return f"age t0 + t, t0 = {self.t0_s:g} s"

    def spread_at_t0_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """σ_prog ⊕ the 1/f noise accumulated until t0."""
        g = np.asarray(g_target_us, dtype=float)
        p, rn = self.programming, self.read_noise
        mean = np.maximum(p.mean_us(g), 0)
        flicker = mean * rn.q_s(mean / self.g_max_us) * rn.sqrt_log_term(self.t0_s)
        return np.hypot(p.sigma_us(g), flicker)

    def implausible(self) -> str | None:
        """Clipped drift laws need lo ≤ hi and a ν spread ≥ 0; a σ_prog polynomial negative over the
        whole range (clipped to zero everywhere) is a sign error, not a noiseless chip."""
        for name in ("nu_mean", "nu_std"):
            f = getattr(self.drift, name)
            if f.lo > f.hi:
                return f"field drift/{name}: its lower clip lo = {f.lo:g} exceeds its upper clip {f.hi:g}"
        if self.drift.nu_std.lo < 0:
            return (f"field drift/nu_std/lo: a spread of drift exponents cannot be negative "
                    f"({self.drift.nu_std.lo:g})")
        x = np.linspace(0.0, 1.0, 21) * self.g_max_us / self.programming.g_ref_us
        if np.all(poly_us(self.programming.poly_coeffs_us, x) < 0):
            return ("field programming/poly_coeffs_us: the programming spread is negative over the whole "
                    "range")
        return None

    def mean_shift_us(self) -> float:
        """The programming offset at G_T = 0; the part growing with G is a gain error, which output
        scales and drift compensation absorb."""
        return float(self.programming.mean_offset_coeffs_us[0])

    def summary(self) -> dict[str, float | str]:
        x = np.linspace(0.01, 1.0, 100)
        g = x * self.g_max_us
        p = self.programming
        out: dict[str, float | str] = {"technology": self.technology, "g_max_us": self.g_max_us}
        out["sigma_prog_rel_g_max"] = float(np.mean(p.sigma_us(g)) / self.g_max_us)
        out["nu_mean"] = float(np.mean(self.drift.nu_mean(x)))
        # the unused device of a pair: programmed to 0, clamped at 0 (half-normal mean)
        s0 = max(float(p.sigma_us(np.array([0.0]))[0]), 1e-9)
        m0 = float(p.mean_us(np.array([0.0]))[0])
        z = m0 / s0
        g_off = m0 * ndtr(z) + s0 * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)  # E[max(N(m0, s0), 0)]
        out["on_off_ratio"] = float(self.g_max_us / max(g_off, 1e-6))
        out["q_s_at_g_max"] = float(self.read_noise.q_s(np.array([1.0]))[0])
        out["t0_s"] = self.t0_s
        return out


def published(model: PcmStatModel | None = None) -> PcmModel:
    """The published PCM statistical model of docs/physics.md as a card."""
    m = model or PcmStatModel()
    table_g = [0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 25.0]
    x = np.asarray(table_g) / m.g_max_us
    return PcmModel(
        g_max_us=m.g_max_us, t0_s=m.t0_s,
        programming=Programming(list(m.prog_coeffs_us), m.g_max_us),
        drift=Drift(
            nu_mean=ClippedLogForm(**m.nu_mean.__dict__),
            nu_std=ClippedLogForm(**m.nu_std.__dict__),
            table=DriftTable(table_g, m.nu_mean(x).tolist(), m.nu_std(x).tolist()),
        ),
        read_noise=ReadNoise(m.q_s.amp, m.q_s.exp, m.q_s.cap, m.t_read_s),
        provenance={"source": "published PCM statistical model (docs/physics.md; aihwkit defaults)",
                    "toolkit_version": __version__},
    )


#: The technology's part interface (devmodel.technologies).
CARD = PcmModel
