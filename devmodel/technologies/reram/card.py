"""The ReRAM model card (docs/model-card.md; forms from docs/physics.md, "ReRAM"). A card holds one
of two forms of G − G_T, and a conductance-independent short-term read noise:

* ``relaxation`` — the relaxation law: at every level, each quantile of G − G_T (a fixed grid of
  probabilities) is a polynomial in ln(t / 1 s), degree 1 to 3 (at a level no such polynomial
  follows within the quantiles' errors: the measured quantiles, linear in ln t between the measured
  ages); between levels the quantile
  functions are interpolated linearly in G_T; after the last measured age the law continues
  linearly in ln t (the slope at the edge), before the first it holds the first age's quantiles.
  It keeps what real chips show — a mean that depends on the level (cells
  relax towards the middle), spreads growing in ln t, heavy tails and skew — without forcing a
  Gaussian on them (docs/physics.md, "ReRAM relaxation on real chips").
* ``snapshots`` — the published form (Wan 2022): σ(x, t) = Σ c_i(t)·x^i at snapshot times t
  (x = G_T/g_max) and one mean shift per snapshot, Gaussian; between snapshots the coefficients and
  the shift are interpolated linearly in ln t, beyond them the nearest snapshot is used.

Times count from programming (the Wan 2022 convention aihwkit uses); conductances are clamped at 0.
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


@dataclass
class RelaxationLaw:
    """Quantiles of G − G_T per level in L = ln(t / t_ref): a polynomial in L, or — at a level whose
    quantiles no polynomial of degree ≤ 3 follows within their errors — the measured quantiles at
    the measured ages ("knots"), linear in L between them (module docstring)."""

    probabilities: list[float]
    levels_us: list[float]  # the session's levels (an imported level: its devices' mean target)
    coeffs_us: list[list[list[float]]]  # [level][probability][power of L]
    ages_s: list[list[float]]  # per level: the first and last age its data covered
    t_ref_s: float = 1.0
    coeffs_stderr_us: list[list[list[float | None]]] = field(default_factory=list)
    n_devices: list[int] = field(default_factory=list)
    form: str = "quantile_log_time"
    # per level: [] (polynomial) or the measured ages; and [age][probability] quantiles there
    knot_ages_s: list[list[float]] = field(default_factory=list)
    knot_quantiles_us: list[list[list[float]]] = field(default_factory=list)
    # per level, [age][probability]: standard errors of the law's quantiles at its measured ages
    age_stderr_us: list[list[list[float]]] = field(default_factory=list)
    fitted_ages_s: list[list[float]] = field(default_factory=list)  # per level: those ages

    def _knots(self, j: int) -> tuple[np.ndarray, np.ndarray] | None:
        if j < len(self.knot_ages_s) and self.knot_ages_s[j]:
            return (np.log(np.asarray(self.knot_ages_s[j]) / self.t_ref_s),
                    np.asarray(self.knot_quantiles_us[j], dtype=float))
        return None

    def table(self, t_s: float) -> np.ndarray:
        """(levels, probabilities) quantiles at ``t_s``: inside each level's measured ages its
        polynomial (or its knots, linear in ln t), held at its first age before it (no extrapolation
        back towards programming) and continued linearly in ln t after its last (the slope at the
        edge); sorted along the probabilities."""
        out = np.empty((len(self.levels_us), len(self.probabilities)))
        lt = np.log(t_s / self.t_ref_s)
        for j, (c, span) in enumerate(zip(self.coeffs_us, self.ages_s, strict=True)):
            knots = self._knots(j)
            if knots is not None:
                x, v = knots
                xe = min(max(lt, x[0]), x[-1])
                k = int(np.clip(np.searchsorted(x, xe) - 1, 0, x.size - 2))
                slope = (v[k + 1] - v[k]) / (x[k + 1] - x[k])
                last = (v[-1] - v[-2]) / (x[-1] - x[-2])
                out[j] = v[k] + slope * (xe - x[k]) + last * max(lt - x[-1], 0.0)
                continue
            c = np.asarray(c, dtype=float)  # (P, degree + 1)
            lo, hi = np.log(np.asarray(span) / self.t_ref_s)
            edge = min(max(lt, lo), hi)
            powers = edge ** np.arange(c.shape[1])
            slope = c[:, 1:] @ (np.arange(1, c.shape[1]) * edge ** np.arange(c.shape[1] - 1))
            out[j] = c @ powers + slope * max(lt - hi, 0.0)
        return np.sort(out, axis=1)  # quantile curves of a polynomial law may cross: rearranged

    def span_s(self) -> tuple[float, float]:
        ages = np.asarray(self.ages_s, dtype=float)
        return float(ages[:, 0].min()), float(ages[:, 1].max())

    def n_knot_levels(self) -> int:
        return sum(bool(k) for k in self.knot_ages_s)


def interpolate_quantiles(table, levels, probabilities, g_target, u, xp=np):
    """Per device the quantile ``u`` of the law at its target: linear in the probability within a
    level's quantile function (held at the grid's ends), then linear in G_T between the two levels
    around it (the nearest level beyond them). ``xp`` is numpy or torch; all arrays of that kind."""
    n_lv, n_p = table.shape
    idx = xp.searchsorted(probabilities, u).clamp(1, n_p - 1) if xp is not np else \
        np.clip(np.searchsorted(probabilities, u), 1, n_p - 1)
    p0, p1 = probabilities[idx - 1], probabilities[idx]
    wp = ((u - p0) / (p1 - p0)).clip(0.0, 1.0)
    if n_lv == 1:
        return table[0, idx - 1] * (1 - wp) + table[0, idx] * wp
    jl = xp.searchsorted(levels, g_target).clamp(1, n_lv - 1) if xp is not np else \
        np.clip(np.searchsorted(levels, g_target), 1, n_lv - 1)
    g0, g1 = levels[jl - 1], levels[jl]
    wg = ((g_target - g0) / (g1 - g0)).clip(0.0, 1.0)
    lower = table[jl - 1, idx - 1] * (1 - wp) + table[jl - 1, idx] * wp
    upper = table[jl, idx - 1] * (1 - wp) + table[jl, idx] * wp
    return lower * (1 - wg) + upper * wg


@dataclass(kw_only=True)
class ReramModel(DeviceModel):
    """A ReRAM card: the relaxation law or error snapshots, and read noise (module docstring)."""

    technology: str = "reram"
    MEAN_DRIFT: ClassVar[bool] = False  # seed 000, B.2: no mean drift expected, no compensation
    relaxation: RelaxationLaw | None = None
    snapshots: list[Snapshot] = field(default_factory=list)
    read_noise_us: float | None = None
    read_noise_stderr_us: float | None = None

    def extrapolation(self) -> str:
        return ("the relaxation law is continued linearly in ln t after its last age and held at its "
                "first age before it" if self.relaxation is not None
                else "the nearest fitted snapshot is used")

    @property
    def form(self) -> str:
        """Which form the card holds: "relaxation" (the law) or "snapshots" (Wan 2022)."""
        return "relaxation" if self.relaxation is not None else "snapshots"

    @classmethod
    def section_from_dict(cls, d: dict) -> dict[str, Any]:
        law = d.get("relaxation")
        return {"relaxation": RelaxationLaw(**law) if law else None,
                "snapshots": [Snapshot(**s) for s in d.get("snapshots", [])],
                "read_noise_us": d.get("read_noise_us"),
                "read_noise_stderr_us": d.get("read_noise_stderr_us")}

    def law_quantiles(self, g_target_us: np.ndarray, t_s: float, p: np.ndarray) -> np.ndarray:
        """Quantiles ``p`` of G − G_T at the targets and age ``t_s`` under the relaxation law."""
        law = self.relaxation
        g = np.broadcast_to(np.asarray(g_target_us, dtype=float), np.shape(p))
        return interpolate_quantiles(law.table(t_s), np.asarray(law.levels_us),
                                     np.asarray(law.probabilities), g, np.asarray(p, dtype=float))

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

    QUANTILE_SCALARS = (("q16", 0.16), ("q50", 0.5), ("q84", 0.84))

    def _law_points(self):
        """(name, level, age, probability index, age index) of the law's reported scalars: its 16, 50
        and 84 % quantiles at each level's first and last fitted age."""
        law, probs = self.relaxation, list(self.relaxation.probabilities)
        for j, (g, span) in enumerate(zip(law.levels_us, law.ages_s, strict=True)):
            for name, p in self.QUANTILE_SCALARS:
                for a, t in zip((0, -1), span, strict=True):
                    yield f"level.{g:.4g}.{name}.at.{t:g}s", j, t, probs.index(p), a

    def scalars(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.relaxation is not None:
            law = self.relaxation
            for key, j, t, k, _ in self._law_points():
                out[key] = float(law.table(t)[j, k])
        for s in self.snapshots:
            for i, c in enumerate(s.poly_coeffs_us):
                out[f"snapshot.{s.t_s:g}.c{i}"] = c
            out[f"snapshot.{s.t_s:g}.mean_shift_us"] = s.mean_shift_us
        if self.read_noise_us is not None:
            out["read_noise_us"] = self.read_noise_us
        return out

    def remedy(self, curve: str) -> str:
        if curve == "law_levels":
            forced = (self.fit_quality.get("options") or {}).get("time_degree")
            if forced and forced < 3:
                return f"time_degree={forced} was asked for: raise it (≤ 3) or leave it to the fit"
            kept = ("the card keeps the measured quantiles at the measured ages there (knots)"
                    if self.relaxation is not None and self.relaxation.n_knot_levels()
                    else "fit --set time_form=knots keeps the measured quantiles there")
            return ("quantiles do not follow a polynomial in ln t of degree ≤ 3 within their errors; "
                    f"{kept}; look for mixed populations at those levels (e.g. devices whose first "
                    "read fell outside their intended level)")
        if curve == "snapshots":
            return "raise the σ(x) degree (devmodel fit --set degree=N, N ≤ 6) or use the law (form=law)"
        return super().remedy(curve)

    def notes(self) -> list[str]:
        if str(self.fit_quality.get("read_noise_source", "")).startswith("none"):
            return ["read noise: not measured (the session has no read-noise bursts); read_noise_us "
                    "0 means it stays inside the fitted distributions, not that it is zero"]
        return []

    def parameter_lines(self, intervals: dict[str, list[float]]) -> list[str]:
        """The law as a table (per level: median and half 16–84 % range of G − G_T at the first and
        last fitted age, with standard errors); the scalar listing for snapshot cards."""
        law = self.relaxation
        if law is None:
            return super().parameter_lines(intervals)
        lo, hi = law.span_s()
        err = self.stderrs()
        lines = [f"  relaxation law, quantiles of G − G_T in ln t (µS), at {lo:g} s and {hi:g} s "
                 f"({law.n_knot_levels()} of {len(law.levels_us)} levels by their measured ages):",
                 "    level µS      n   median t1     ± se   median t2     ± se   spread t1   spread t2"]
        for j, (g, n) in enumerate(zip(law.levels_us, law.n_devices or [0] * len(law.levels_us),
                                       strict=True)):
            t1, t2 = law.ages_s[j]
            med = [float(self.law_quantiles(np.array([g]), t, np.array([0.5]))[0]) for t in (lo, hi)]
            spr = [float(self.spread_at(np.array([g]), t)[0]) for t in (lo, hi)]
            se = [err.get(f"level.{g:.4g}.q50.at.{t:g}s") or float("nan") for t in (t1, t2)]
            b = intervals.get(f"level.{g:.4g}.q50.at.{t2:g}s")
            lines.append(f"    {g:8.3g} {n:6d} {med[0]:11.3f} {se[0]:8.3f} {med[1]:11.3f} {se[1]:8.3f} "
                         f"{spr[0]:11.3f} {spr[1]:11.3f}"
                         + (f"   median at {t2:g} s 95 % bootstrap [{b[0]:.3f}, {b[1]:.3f}]" if b else ""))
        if self.read_noise_us is not None:
            e = self.read_noise_stderr_us
            lines.append(f"  read_noise_us {self.read_noise_us:.4g}" + (f" ± {e:.2g}" if e else ""))
        return lines

    def stderrs(self) -> dict[str, float | None]:
        err: dict[str, float | None] = {}
        law = self.relaxation
        if law is not None and law.age_stderr_us:
            for key, j, _, k, a in self._law_points():
                err[key] = float(law.age_stderr_us[j][a][k])
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
        if self.relaxation is not None:
            return self.relaxation.span_s()
        ts = [s.t_s for s in self.snapshots]
        return min(ts), max(ts)

    def spread_at_t0_us(self, g_target_us: np.ndarray) -> np.ndarray:
        """The first snapshot's σ, or half the 16–84 % range of the law at t0."""
        g = np.asarray(g_target_us, dtype=float)
        if self.relaxation is not None:
            q16 = self.law_quantiles(g, self.t0_s, np.full(g.shape, 0.16))
            q84 = self.law_quantiles(g, self.t0_s, np.full(g.shape, 0.84))
            return np.maximum((q84 - q16) / 2, 0.0)
        c, _ = self.snapshot_coeffs(self.snapshots[0].t_s)
        return np.maximum(poly_us(c, g / self.g_max_us), 0)

    def mean_shift_us(self) -> float:
        """The first snapshot's mean shift, or the law's median shift at t0 over the levels."""
        if self.relaxation is not None:
            g = np.asarray(self.relaxation.levels_us)
            return float(np.median(self.law_quantiles(g, self.t0_s, np.full(g.shape, 0.5))))
        return float(self.snapshots[0].mean_shift_us)

    def summary(self) -> dict[str, float | str]:
        x = np.linspace(0.01, 1.0, 100)
        out: dict[str, float | str] = {"technology": self.technology, "g_max_us": self.g_max_us,
                                       "form": self.form}
        if self.relaxation is not None:
            g = x * self.g_max_us
            for t in self.relaxation.span_s():
                out[f"sigma_rel_g_max_at_{t:g}s"] = float(np.mean(self.spread_at(g, t)) / self.g_max_us)
        for s in self.snapshots:
            sig = poly_us(s.poly_coeffs_us, x)
            out[f"sigma_rel_g_max_at_{s.t_s:g}s"] = float(np.mean(sig) / self.g_max_us)
        sig0 = float(self.spread_at_t0_us(np.array([0.0]))[0])
        out["on_off_ratio"] = float(self.g_max_us / max(sig0 * np.sqrt(2 / np.pi), 1e-6))
        out["read_noise_rel_g_max"] = float((self.read_noise_us or 0.0) / self.g_max_us)
        return out

    def spread_at(self, g_target_us: np.ndarray, t_s: float) -> np.ndarray:
        """Half the 16–84 % range of G − G_T under the law at ``t_s``."""
        g = np.asarray(g_target_us, dtype=float)
        q = [self.law_quantiles(g, t_s, np.full(g.shape, p)) for p in (0.16, 0.84)]
        return np.maximum((q[1] - q[0]) / 2, 0.0)


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
