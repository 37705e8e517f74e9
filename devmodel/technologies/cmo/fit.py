"""CMO/HfOx device model from a session (docs/physics.md, "CMO/HfOx ReRAM"; the card's forms).

1. Read noise from the bursts' variograms (:mod:`devmodel.fit.variogram`): per level the 1/f
   slope is 2·(K·log10 G)², so K² = slope / (2·log10(G)²), combined over levels by inverse variance;
   the intercepts give the white noise. Without bursts K is held at the published value (the card
   says so) and the white noise is 0.
2. Programming noise from the final verify readings: per level the spread of G_verify − G_T, with the
   noise of the verify reading added back (σ_prog² = Var(G_verify) + σ_read²: a device is accepted on
   its reading, so its true conductance lies one reading's noise away from an accepted value);
   σ_prog(G) = c0 + c1·G by weighted least squares (lmfit); the mean of G_verify − G_T per level is
   the programming offset, a polynomial in G of the lowest degree its errors allow (χ² p ≥ 0.01).
3. Relaxation: at every schedule age t and level, the mean and spread of G − G_T; the means less the
   programming offset give d0 + m·ln t (one line for all levels, weighted); the spreads minus
   σ_prog(G)², the 1/f read
   noise accumulated until t and the white noise give σ_rel(t)² per level, pooled over levels by
   inverse variance, and s0 + s1·ln t is fitted to their square roots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from lmfit.models import LinearModel

from devmodel.errors import DevmodelError
from devmodel.fit.data import FitData, read_near, require_t0, typical_ages
from devmodel.fit.lmfits import FitResult, fit_poly, fit_poly_auto
from devmodel.fit.stats import clipped_std, var_se
from devmodel.fit.variogram import equal_bursts, variogram_lines, white_noise, white_variance
from devmodel.forms import poly_us, sqrt_log_term
from devmodel.technologies.cmo.card import CmoModel, CmoProgramming, CmoReadNoise, Relaxation
from devmodel.technologies.cmo.published import CMO_G_MIN_US, CMO_READ_K, CMO_T_READ_S
from devmodel.validation import Constrained, Interval, OrNone


@dataclass(frozen=True)
class CmoFitOptions(Constrained):
    """Choices of the CMO/HfOx fit (recorded in the card's fit_quality)."""

    t_read_s: float = CMO_T_READ_S  # integration time of the 1/f accumulation formula
    acceptance: float | None = None  # default: the session's verify acceptance, else 2 %
    g_min_us: float = CMO_G_MIN_US  # the device window's floor
    min_devices: int = 10  # per level and age
    outlier_sigma: float | None = 6.0  # t0 outliers (stuck devices) screened out; None: keep all

    WHERE: ClassVar[str] = "CMO/HfOx fit"
    CONSTRAINTS: ClassVar[dict] = {"t_read_s": Interval(0.0, 1.0, "right"),
                                   "acceptance": OrNone(Interval(0.0, 0.5, "right")),
                                   "g_min_us": Interval(0.0, None),
                                   "min_devices": Interval(3, None, integer=True),
                                   "outlier_sigma": OrNone(Interval(2.0, None))}


@dataclass
class _ReadNoise:
    k: float
    k_se: float | None
    white_us: float
    white_se: float | None
    source: str
    levels: dict


def fit_cmo(data: FitData, opts: CmoFitOptions | None = None) -> CmoModel:
    """Fit the CMO/HfOx card from prepared session data (see the module docstring)."""
    opts = opts or CmoFitOptions()
    opts.check()
    s = data.session
    require_t0(data)
    rn = _read_noise(data, opts)
    prog, offset = _programming(data, rn, opts)
    relax, relax_q = _relaxation(data, prog, offset, rn, opts)
    acceptance = opts.acceptance or float((s.verify_config or {}).get("acceptance", 0.02))
    card = CmoModel(
        g_max_us=s.g_max_us, t0_s=s.t0_s, window_min_us=opts.g_min_us,
        programming=CmoProgramming([prog.values["c0"], prog.values["c1"]], acceptance,
                                   [prog.stderr["c0"], prog.stderr["c1"]],
                                   list(offset.values.values()), list(offset.stderr.values())),
        relaxation=relax,
        read_noise=CmoReadNoise(rn.k, opts.t_read_s, rn.white_us,
                                stderr={"k": rn.k_se, "white_noise_us": rn.white_se},
                                fixed=[] if rn.k_se is not None else ["k"]),
    )
    card.fit_quality = {"options": opts.__dict__, "programming": prog.quality,
                        "programming_offset": offset.quality, **relax_q,
                        "read_noise_source": rn.source, "read_noise_levels": rn.levels,
                        "excluded_devices": data.excluded}
    return card


def _read_noise(data: FitData, opts: CmoFitOptions) -> _ReadNoise:
    per_level: dict[int, list] = {}
    for G, T, _, D in equal_bursts(data.session):
        ok = data.use[D]
        if not ok.any():
            continue
        G, T, D = G[ok], T[ok], D[ok]
        slope, icpt = variogram_lines(G, float(np.median(np.diff(T, axis=1))))
        for j in np.unique(data.level[D]):
            m = data.level[D] == j
            per_level.setdefault(int(j), []).append((slope[m], icpt[m], G[m].mean()))
    k2, k2_se, w2, w2_se, g_lv = [], [], [], [], []
    for _, parts in sorted(per_level.items()):
        slope, icpt = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        g = float(np.mean([p[2] for p in parts]))
        if slope.size < 3 or g <= 1.0:
            continue
        scale = 2 * np.log10(g) ** 2
        k2.append(slope.mean() / scale)
        k2_se.append(slope.std(ddof=1) / np.sqrt(slope.size) / scale)
        white2 = white_variance(slope, icpt, opts.t_read_s)
        w2.append(white2.mean())
        w2_se.append(white2.std(ddof=1) / np.sqrt(white2.size))
        g_lv.append(g)
    if len(k2) < 2:
        return _ReadNoise(CMO_READ_K, None, 0.0, None,
                          "none: fewer than two levels with bursts; K held at the published value", {})
    wt = 1 / np.maximum(np.asarray(k2_se), 1e-30) ** 2
    k2_mean = float(np.sum(wt * k2) / wt.sum())
    k = float(np.sqrt(max(k2_mean, 0.0)))
    k_se = float(1 / np.sqrt(wt.sum()) / (2 * max(k, 1e-6)))
    white, white_se = white_noise(np.asarray(w2), np.asarray(w2_se))
    return _ReadNoise(k, k_se, white, white_se, "bursts (variogram slope)",
                      {"g_us": g_lv, "k2": k2, "k2_se": k2_se})


def _programming(data: FitData, rn: _ReadNoise, opts: CmoFitOptions) -> tuple[FitResult, FitResult]:
    """σ_prog(G) = c0 + c1·G and the mean offset polynomial, from the final verify readings."""
    d = data.session.devices
    g_v = np.asarray(d.get("g_verify_us", np.full(data.n_devices, np.nan)), dtype=float)
    cfg = data.session.verify_config or {}
    n_avg = max(int(cfg.get("n_verify_reads", 1)) - int(cfg.get("discard_reads", 0)), 1)
    # the verify reading's own noise: white noise averaged over its reads, 1/f noise (not averaged)
    # accumulated over the milliseconds to a second between a pulse and its verify reads
    var_e_white = rn.white_us**2 / n_avg
    g, sig, se, mean, mean_se = [], [], [], [], []
    for j, lv in enumerate(data.levels_us):
        e = (g_v - data.target_us)[data.use & (data.level == j) & np.isfinite(g_v)]
        if e.size < opts.min_devices:
            continue
        m, sd, _ = clipped_std(e)
        mean.append(m)
        mean_se.append(sd / np.sqrt(e.size))
        var_e = var_e_white + (rn.k * np.log10(lv)) ** 2 * np.log(0.1 / (2 * opts.t_read_s))
        g.append(lv)
        sig.append(np.sqrt(sd**2 + var_e))
        se.append(var_se(e) / (2 * max(sig[-1], 1e-6)))
    if len(g) < 3:
        raise DevmodelError(f"{data.session.path}: fewer than three levels have final verify readings of "
                            f"≥ {opts.min_devices} devices; the CMO/HfOx fit reads programming noise "
                            "from them")
    g = np.asarray(g)
    return (fit_poly(g, np.asarray(sig), np.asarray(se), 1),
            fit_poly_auto(g, np.asarray(mean), np.maximum(mean_se, 1e-6), 0, max_degree=4))


def _relaxation(data: FitData, prog: FitResult, offset: FitResult, rn: _ReadNoise,
                opts: CmoFitOptions) -> tuple[Relaxation, dict]:
    sel = data.use[data.dev]
    ages = typical_ages(data.age_s[sel], data.dev[sel])
    ages = ages[ages >= data.session.t0_s * 0.9]
    means, rows = [], []  # (ln t, mean, se); (age, σ_rel², se) per level
    c0, c1 = prog.values["c0"], prog.values["c1"]
    for age in ages:
        g = read_near(data.dev, data.age_s, data.g_us, data.n_devices, age)
        for j, lv in enumerate(data.levels_us):
            e = (g - data.target_us)[data.use & (data.level == j) & np.isfinite(g)]
            if e.size < opts.min_devices:
                continue
            m, sd, _ = clipped_std(e)
            m -= float(poly_us(list(offset.values.values()), lv))
            means.append((np.log(age), m, sd / np.sqrt(e.size)))
            rest = ((c0 + c1 * lv) ** 2 + (rn.k * np.log10(lv) * sqrt_log_term(age, opts.t_read_s)) ** 2
                    + rn.white_us**2)
            rows.append((age, sd**2 - rest, var_se(e)))
    if len({r[0] for r in rows}) < 3:
        raise DevmodelError(f"{data.session.path}: fewer than three read ages at or after t0 have "
                            f"≥ {opts.min_devices} devices per level; the relaxation law needs three")
    ln_t, mu, mu_se = (np.array(c) for c in zip(*means, strict=True))
    line = LinearModel().fit(mu, x=ln_t, weights=1 / np.maximum(mu_se, 1e-9), slope=0.0, intercept=0.0)
    # σ_rel² per age: the levels' estimates combined by inverse variance
    per_age = {}
    for age, v, v_se in rows:
        per_age.setdefault(age, []).append((v, max(v_se, 1e-12)))
    t_k, sig_k, sig_se = [], [], []
    for age, vals in sorted(per_age.items()):
        v, v_se = np.array(vals).T
        w = 1 / v_se**2
        var = float(np.sum(w * v) / w.sum())
        sd = np.sqrt(max(var, 1e-12))
        t_k.append(age)
        sig_k.append(sd)
        sig_se.append(float(1 / np.sqrt(w.sum())) / (2 * sd))
    std_fit = fit_poly(np.log(t_k), np.asarray(sig_k), np.asarray(sig_se), 1)
    p = line.params
    relax = Relaxation(
        mean_slope_us=float(p["slope"].value), std_coeffs_us=[std_fit.values["c0"], std_fit.values["c1"]],
        mean_offset_us=float(p["intercept"].value), mean_slope_stderr_us=_se(p["slope"]),
        std_coeffs_stderr_us=[std_fit.stderr["c0"], std_fit.stderr["c1"]],
        mean_offset_stderr_us=_se(p["intercept"]))
    quality = {"relaxation_mean": {"redchi": float(line.redchi), "n_points": int(mu.size),
                                   "x": ln_t.tolist(), "y": mu.tolist()},
               "relaxation_std": std_fit.quality}
    return relax, quality


def _se(param) -> float | None:
    return float(param.stderr) if param.stderr is not None and np.isfinite(param.stderr) else None


#: The technology's part interface (devmodel.technologies).
OPTIONS = CmoFitOptions
fit = fit_cmo
