"""Population-level fits with lmfit: every card parameter gets a value, a standard error, fit
statistics, and a flag when it could not be identified from the data and was held at its default."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from lmfit import Model, Parameters, minimize
from lmfit.models import PolynomialModel
from scipy import stats

from devmodel.forms import ClippedLog, PowerLawCap


@dataclass
class FitResult:
    values: dict[str, float]
    stderr: dict[str, float | None]
    fixed: list[str] = field(default_factory=list)
    quality: dict = field(default_factory=dict)


def _quality(res, x, y) -> dict:
    return {
        "redchi": float(res.redchi) if np.isfinite(res.redchi) else None,
        "rsquared": float(res.rsquared) if np.isfinite(res.rsquared) else None,
        "n_points": int(np.size(y)),
        "n_free": int(res.nvarys),
        "chi2_p": (float(stats.chi2.sf(res.chisqr, res.nfree)) if res.nfree > 0
                   and np.isfinite(res.chisqr) else None),
        "x": np.asarray(x).tolist(),
        "y": np.asarray(y).tolist(),
        "residual": (np.asarray(y) - res.best_fit).tolist(),
        "covar": res.covar.tolist() if getattr(res, "covar", None) is not None else None,
    }


def _finish(res, names, x, y, fixed) -> FitResult:
    vals = {k: float(res.params[k].value) for k in names}
    errs = {k: (float(res.params[k].stderr) if res.params[k].stderr is not None
                and np.isfinite(res.params[k].stderr) else None) for k in names}
    for k in fixed:
        errs[k] = None
    return FitResult(vals, errs, list(fixed), _quality(res, x, y))


def fit_poly(x: np.ndarray, y: np.ndarray, se: np.ndarray, degree: int) -> FitResult:
    """Weighted polynomial Σ c_i x^i (c0 first) — σ_prog(x), its mean offset, ReRAM σ(x)."""
    model = PolynomialModel(degree=degree)
    params = model.guess(y, x=x)
    res = model.fit(y, params, x=x, weights=1.0 / np.asarray(se))
    return _finish(res, [f"c{i}" for i in range(degree + 1)], x, y, [])


def fit_poly_auto(x: np.ndarray, y: np.ndarray, se: np.ndarray, min_degree: int,
                  max_degree: int = 6, p_min: float = 0.01) -> FitResult:
    """The lowest-degree polynomial whose residuals are consistent with the points' errors (χ²
    p-value ≥ ``p_min``), from ``min_degree`` up to ``max_degree`` with at least three degrees of
    freedom left; if none is, the highest tried. Used for the mean offset at t0, which follows the
    verify loop's level-to-level behaviour rather than a published form (on the simulated chip a
    quadratic left 5σ residuals at the lowest PCM level)."""
    top = max(min(max_degree, np.size(x) - 4), min_degree)
    for degree in range(min_degree, top + 1):
        f = fit_poly(x, y, se, degree)
        p = f.quality["chi2_p"]
        if p is None or p >= p_min:
            break
    f.quality["degree"] = degree
    return f


def _clipped_log(x, a, b, lo, hi):
    return np.clip(a * np.log(x) + b, lo, hi)


def fit_clipped_log(x: np.ndarray, y: np.ndarray, se: np.ndarray, init: ClippedLog) -> FitResult:
    """clip(a·ln x + b, lo, hi); a plateau with fewer than two points on it, or a slope with fewer
    than two points off the plateaus, is not identifiable and is held at ``init``. With every point
    on one plateau the intercept is not identifiable either (any b beyond the levels fits alike;
    the optimiser wandered to b = −248 on a wafer's bad chip): it is put where the line meets that
    plateau at the outermost level (:func:`_edge_intercept`) and listed as fixed."""
    model = Model(_clipped_log)
    fixed: list[str] = []
    res = None
    for _ in range(3):
        p = model.make_params(a=init.a, b=init.b, lo=init.lo, hi=init.hi)
        if res is not None:
            for k in ("a", "b", "lo", "hi"):
                if k not in fixed:
                    p[k].set(value=res.params[k].value)
        for k in fixed:
            p[k].set(vary=False, value=getattr(init, k))
        p["lo"].set(max=p["hi"].value)
        res = model.fit(y, p, x=x, weights=1.0 / np.asarray(se))
        v = res.params
        line = v["a"].value * np.log(x) + v["b"].value
        on_lo, on_hi = int(np.sum(line <= v["lo"].value)), int(np.sum(line >= v["hi"].value))
        more = [k for k, n_on in (("lo", on_lo), ("hi", on_hi)) if n_on < 2 and k not in fixed]
        if x.size - on_lo - on_hi < 2:
            more += [k for k in ("a",) if k not in fixed]
        if not more:
            break
        fixed += more
    if "b" not in fixed and _edge_intercept(res.params, x) is not None:
        res.params["b"].set(value=_edge_intercept(res.params, x))
        fixed.append("b")
    return _finish(res, ["a", "b", "lo", "hi"], x, y, fixed)


def _edge_intercept(v, x: np.ndarray) -> float | None:
    """The intercept when every point lies on one plateau of clip(a·ln x + b, lo, hi): the line
    then meets that plateau at the outermost point (the values at every point are unchanged);
    None when some point lies on the slope or points lie on both plateaus."""
    a, b, lo, hi = (v[k].value for k in ("a", "b", "lo", "hi"))
    line = a * np.log(x) + b
    if np.all(line <= lo):
        return float(lo - np.max(a * np.log(x)))
    if np.all(line >= hi):
        return float(hi - np.min(a * np.log(x)))
    return None


def fit_power_law_cap_levels(x_dev: list[np.ndarray], q: np.ndarray, se: np.ndarray,
                             init: PowerLawCap) -> FitResult:
    """Q_s(x) = min(amp/x^exp, cap) fitted to per-level values that are, as the burst variogram
    estimates them, q_j² = Σ_i Q_s(x_i)²·x_i² / Σ_i x_i² over the level's devices (x_i their
    programmed conductance / g_max) — exact when Q_s varies inside a level. The cap is held at
    ``init`` unless ≥ 2 levels have a median device on it."""
    x_dev = [np.maximum(np.asarray(v, float), 1e-6) for v in x_dev]
    w = [v**2 / np.sum(v**2) for v in x_dev]
    x_med = np.array([np.median(v) for v in x_dev])

    def model(p):
        a, b, c = p["amp"].value, p["exp"].value, p["cap"].value
        return np.array([np.sqrt(np.sum(wi * np.minimum(a / v**b, c) ** 2))
                         for v, wi in zip(x_dev, w, strict=True)])

    p = Parameters()
    p.add("amp", value=init.amp, min=1e-9)
    p.add("exp", value=init.exp)
    p.add("cap", value=init.cap, min=1e-6, vary=False)
    res = minimize(lambda pp: (q - model(pp)) / se, p)
    fixed = ["cap"]
    if np.sum(res.params["amp"].value / x_med ** res.params["exp"].value >= init.cap) >= 2:
        p["cap"].set(vary=True)
        res = minimize(lambda pp: (q - model(pp)) / se, p)
        fixed = []
    names = ["amp", "exp", "cap"]
    best = model(res.params)
    ss_res, ss_tot = np.sum((q - best) ** 2), np.sum((q - q.mean()) ** 2)
    quality = {"redchi": float(res.redchi), "rsquared": float(1 - ss_res / ss_tot),
               "n_points": int(q.size), "n_free": int(res.nvarys), "x": x_med.tolist(),
               "y": q.tolist(), "residual": (q - best).tolist()}
    vals = {k: float(res.params[k].value) for k in names}
    errs = {k: (float(res.params[k].stderr) if res.params[k].stderr is not None
                and k not in fixed else None) for k in names}
    return FitResult(vals, errs, fixed, quality)
