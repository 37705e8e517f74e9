"""Read noise from the power spectral density of read traces (docs/physics.md, "Read noise from
traces").

A trace is many equally spaced reads of one device (a long burst, or a recorded time series). Its
relative fluctuation ε = G/Ḡ − 1, linearly detrended (relaxation or drift during the trace), has the
one-sided spectrum

    S_ε(f) = Q² / f^α + W

with Q the 1/f amplitude — for α = 1 the Q_s of the PCM model, whose variogram slope is 2·Q² — and
W the white floor, σ_w = Ḡ·sqrt(W·f_s / 2) in µS. Welch averages of each trace (Hann window, 50 %
overlap) are averaged over a level's traces and over log-spaced frequency bins; each bin's ln S has
variance ≈ 1/n_eff (n_eff: the independent periodogram values it averages), so a weighted fit of
ln S gives Q, α, W with standard errors (lmfit, covariance scaled by the reduced χ² when above 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from lmfit import Parameters, minimize
from scipy import signal, stats

from devmodel.errors import DevmodelError

#: Hann windows with 50 % overlap: consecutive segments share information; Welch's equivalent number
#: of independent segments is ≈ 0.95 of the count for this window (Harris 1978 / Welch 1967).
_OVERLAP_EFFICIENCY = 0.95


@dataclass
class Spectrum:
    f_hz: np.ndarray  # bin centres (geometric)
    s_per_hz: np.ndarray  # one-sided PSD of ε (1/Hz)
    n_eff: np.ndarray  # independent periodogram values averaged in each bin
    fs_hz: float
    mean_us: float
    n_traces: int
    n_samples: int


@dataclass
class PsdFit:
    q: float  # 1/f amplitude (relative, S = Q²/f^α)
    q_se: float | None
    alpha: float
    alpha_se: float | None
    white_us: float  # σ of the white floor per read (µS)
    white_se_us: float | None
    redchi: float | None
    chi2_p: float | None
    f_range_hz: tuple[float, float]
    fixed: list[str] = field(default_factory=list)


def spectrum(traces_us: np.ndarray, fs_hz: float, segment: int | None = None,
             bins_per_decade: int = 10) -> Spectrum:
    """Welch PSD of the relative fluctuation, averaged over the rows of ``traces_us`` (traces ×
    samples, one device each) and log-binned; ``segment`` samples per Welch segment (default: an
    eighth of a trace, a power of two, at least 64)."""
    traces = np.atleast_2d(np.asarray(traces_us, dtype=float))
    n = traces.shape[1]
    if n < 128:
        raise DevmodelError(f"a read trace needs at least 128 samples for a spectrum, not {n}")
    mean = traces.mean(axis=1, keepdims=True)
    if np.any(mean <= 0):
        raise DevmodelError("a read trace's mean conductance is ≤ 0: no relative spectrum")
    seg = segment or max(64, 2 ** int(np.floor(np.log2(n / 8))))
    f, p = signal.welch(traces / mean - 1.0, fs=fs_hz, window="hann", nperseg=seg,
                        detrend="linear", axis=1)
    n_seg = (n - seg) // (seg // 2) + 1
    f, p = f[2:], p.mean(axis=0)[2:]  # 0 and the first bin carry the detrending's leakage
    edges = np.logspace(np.log10(f[0]), np.log10(f[-1] * 1.0001), int(np.log10(f[-1] / f[0])
                                                                        * bins_per_decade) + 2)
    which = np.digitize(f, edges) - 1
    used = np.unique(which)
    counts = np.array([np.sum(which == b) for b in used])
    s = np.array([p[which == b].mean() for b in used])
    fc = np.array([np.exp(np.log(f[which == b]).mean()) for b in used])
    n_eff = counts * n_seg * traces.shape[0] * _OVERLAP_EFFICIENCY
    return Spectrum(fc, s, n_eff, fs_hz, float(mean.mean()), traces.shape[0], n)


def fit_spectrum(sp: Spectrum, alpha: float | None = None) -> PsdFit:
    """Fit S = Q²/f^α + W to a spectrum (``alpha`` None: free in [0.2, 2.5]; a number: held)."""
    if sp.f_hz.size < 4:
        raise DevmodelError("the spectrum has fewer than 4 frequency bins: the traces are too short")
    params = Parameters()
    k = max(1, sp.f_hz.size // 4)  # initial guesses from the lowest and highest quarter
    params.add("ln_q2", value=float(np.log(np.median(sp.s_per_hz[:k] * sp.f_hz[:k]))))
    params.add("alpha", value=1.0 if alpha is None else alpha, min=0.2, max=2.5, vary=alpha is None)
    params.add("ln_w", value=float(np.log(np.median(sp.s_per_hz[-k:]) / 10 + 1e-300)), min=-120)
    ln_f, ln_s = np.log(sp.f_hz), np.log(sp.s_per_hz)
    # E[ln of a mean of n χ²₂/2 values] = ln S + ψ(n) − ln n ≈ ln S − 1/(2n); var ≈ 1/n
    target = ln_s + 1 / (2 * sp.n_eff)
    w = np.sqrt(sp.n_eff)

    def residual(p):
        model = np.logaddexp(p["ln_q2"] - p["alpha"] * ln_f, p["ln_w"])
        return (target - model) * w

    res = minimize(residual, params, method="leastsq")
    dof = max(res.nfree, 1)
    q = float(np.exp(res.params["ln_q2"].value / 2))
    wv = float(np.exp(res.params["ln_w"].value))
    white = sp.mean_us * np.sqrt(wv * sp.fs_hz / 2)

    def se(name):
        e = res.params[name].stderr
        return None if e is None or not np.isfinite(e) else float(e)

    q_se = se("ln_q2")
    w_se = se("ln_w")
    return PsdFit(q=q, q_se=q * q_se / 2 if q_se is not None else None,
                  alpha=float(res.params["alpha"].value), alpha_se=se("alpha"),
                  white_us=float(white), white_se_us=white * w_se / 2 if w_se is not None else None,
                  redchi=float(res.chisqr / dof), chi2_p=float(stats.chi2.sf(res.chisqr, dof)),
                  f_range_hz=(float(sp.f_hz[0]), float(sp.f_hz[-1])),
                  fixed=[] if alpha is None else ["alpha"])


def variogram_q(traces_us: np.ndarray, dt_s: float) -> float:
    """The burst estimator on the same traces, for comparison: Q from the slope 2Q² of the
    variogram of ε on ln τ (lags 1, 2, 4, … reads, as the fitters use)."""
    from devmodel.fit.variogram import variogram_lines

    traces = np.atleast_2d(np.asarray(traces_us, dtype=float))
    eps = traces / traces.mean(axis=1, keepdims=True) - 1.0
    slope, _ = variogram_lines(eps, dt_s)
    return float(np.sqrt(max(np.mean(slope), 0.0) / 2))


@dataclass
class LevelNoise:
    """Read noise of one level's traces: the PSD fits and the variogram estimator side by side."""

    level_us: float
    n_traces: int
    n_samples: int
    fs_hz: float
    spectrum: Spectrum
    fit_1f: PsdFit  # α held at 1: the PCM model's Q_s
    fit_free: PsdFit  # α free: is it 1/f at all?
    q_variogram: float
    q_true: float | None  # RMS of the traced devices' ground-truth Q_s (simulated chips)


def traces_by_level(session, min_samples: int = 128) -> list[LevelNoise]:
    """PSD read-noise fits per level of the session's bursts of at least ``min_samples`` reads."""
    from devmodel.fit.variogram import equal_bursts

    truth = (session.ground_truth or {}).get("devices", {}).get("q_s")
    out = []
    for g, t, _, dev in equal_bursts(session, min_reads=min_samples):
        dt = float(np.median(np.diff(t[0])))
        if dt <= 0:
            continue  # back-to-back reads have no time axis
        level = np.asarray(session.devices["level"])[dev]
        for j in np.unique(level):
            m = level == j
            sp = spectrum(g[m], 1 / dt)
            out.append(LevelNoise(
                level_us=float(session.levels_us[j]), n_traces=int(m.sum()), n_samples=g.shape[1],
                fs_hz=1 / dt, spectrum=sp, fit_1f=fit_spectrum(sp, 1.0), fit_free=fit_spectrum(sp),
                q_variogram=variogram_q(g[m], dt),
                q_true=float(np.sqrt(np.mean(np.asarray(truth)[dev[m]] ** 2))) if truth is not None
                else None))
    if not out:
        raise DevmodelError(f"{session.path} has no read traces (bursts of ≥ {min_samples} equally "
                            "spaced reads) to take a spectrum of")
    return sorted(out, key=lambda r: r.level_us)


def format_levels(rows: list[LevelNoise]) -> str:
    """The table ``devmodel read-noise`` prints."""
    lines = ["read noise from trace spectra: S(f) = Q²/f^α + W of ε = G/Ḡ − 1 (Welch, linear detrend)",
             "  level µS  traces  samples   f_s Hz   Q (α=1)      ± se   α free   ± se   white µS"
             "   Q variogram" + ("   Q true" if any(r.q_true is not None for r in rows) else "")]
    for r in rows:
        f1, ff = r.fit_1f, r.fit_free
        lines.append(f"  {r.level_us:8.3g} {r.n_traces:7d} {r.n_samples:8d} {r.fs_hz:8.4g} {f1.q:10.4g} "
                     f"{f1.q_se or float('nan'):9.2g} {ff.alpha:8.3f} {ff.alpha_se or float('nan'):6.3f} "
                     f"{f1.white_us:10.4g} {r.q_variogram:13.4g}"
                     + (f" {r.q_true:8.4g}" if r.q_true is not None else ""))
    lines.append("  white: the floor above the 1/f part — white read noise plus 1/f power aliased from "
                 "above the Nyquist frequency")
    return "\n".join(lines)
