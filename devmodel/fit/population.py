"""The population card: a device-model parameter's distribution across the chips of a wafer
(docs/scale.md, "The population card").

Per scalar parameter of the per-chip cards (``DeviceModel.scalars``):

* **outlier chips** by the modified z-score of Iglewicz & Hoaglin (1993, *How to Detect and Handle
  Outliers*, ASQC): M = 0.6745·(x − median)/MAD, flagged when |M| > 3.5 (their recommended cut);
  robust, so one bad chip cannot hide itself by inflating the spread it is judged against. With
  MAD = 0 (every chip equal) nothing is flagged.
* over the chips not flagged for that parameter: the **mean**, the **observed spread** (sample SD
  across chips), the chips' **mean squared standard error** (each card's own fit uncertainty), and
  the **chip-to-chip spread** σ_c = √max(SD² − mean SE², 0): the observed spread with the part the
  per-chip fit errors alone would give removed (the method of moments of a random-effects model);
  its standard error SD²/(σ_c·√(2(n − 1))) (delta method on the sample variance of a normal
  sample), reported only when σ_c > 0.
"""

from __future__ import annotations

import numpy as np

#: Iglewicz & Hoaglin (1993): 0.6745 = Φ⁻¹(0.75) makes the MAD a σ for normal data; 3.5 their cut.
MODIFIED_Z_SCALE = 0.6745
MODIFIED_Z_CUT = 3.5
RULE = ("modified z-score M = 0.6745·(x − median)/MAD across chips, |M| > 3.5 flags an outlier "
        "(Iglewicz & Hoaglin 1993), when |x − median| also exceeds 3.5 of the chip's own standard "
        "errors")


def modified_z(x: np.ndarray) -> np.ndarray:
    """M = 0.6745·(x − median)/MAD (0 everywhere when MAD = 0)."""
    x = np.asarray(x, float)
    med = np.median(x)
    mad = np.median(np.abs(x - med))
    return np.zeros_like(x) if mad == 0 else MODIFIED_Z_SCALE * (x - med) / mad


def parameter_summary(values: np.ndarray, stderrs: np.ndarray) -> dict:
    """One parameter across chips: the outlier flags and the statistics of the chips not flagged."""
    x, se = np.asarray(values, float), np.asarray(stderrs, float)
    z = modified_z(x)
    beyond_fit_error = ~(np.abs(x - np.median(x)) <= MODIFIED_Z_CUT * se)  # NaN SE: M decides
    out = (np.abs(z) > MODIFIED_Z_CUT) & beyond_fit_error
    keep, n = x[~out], int((~out).sum())
    sd = float(np.std(keep, ddof=1)) if n > 1 else float("nan")
    se_k = se[~out]
    mse = float(np.mean(se_k[np.isfinite(se_k)] ** 2)) if np.isfinite(se_k).any() else 0.0
    chip = float(np.sqrt(max(sd**2 - mse, 0.0))) if n > 1 else float("nan")
    chip_se = (float(sd**2 / (chip * np.sqrt(2 * (n - 1)))) if n > 1 and chip > 0 else None)
    return {"n_chips": n, "mean": _number(np.mean(keep)) if n else None,
            "median": _number(np.median(x)), "sd_observed": _number(sd),
            "rms_fit_stderr": _number(np.sqrt(mse)), "chip_to_chip_sd": _number(chip),
            "chip_to_chip_sd_stderr": chip_se, "modified_z": z.round(3).tolist(), "outlier": out.tolist()}


def _number(v) -> float | None:
    """A JSON number, or None where there is none (one chip has no spread)."""
    return float(v) if np.isfinite(v) else None


def population_card(chips: list[dict], technology_name: str) -> dict:
    """The population card from per-chip results ``{"chip", "session", "card"?, "reason"?}``
    (``card``: the fitted DeviceModel; ``reason``: why the chip's fit failed)."""
    fitted = [c for c in chips if c.get("card") is not None]
    names = sorted(set.intersection(*(set(c["card"].scalars()) for c in fitted))) if fitted else []
    params, flagged = {}, {}
    for name in names:
        x = np.array([c["card"].scalars()[name] for c in fitted])
        se = np.array([c["card"].stderrs().get(name) or np.nan for c in fitted], float)
        p = parameter_summary(x, se)
        p["chips"] = [c["chip"] for c in fitted]
        p["values"] = x.tolist()
        params[name] = p
        for c, o, z in zip(fitted, p["outlier"], p["modified_z"], strict=True):
            if o:
                flagged.setdefault(c["chip"], []).append({"parameter": name, "modified_z": z})
    return {
        "schema": "devmodel.population", "schema_version": 1, "technology": technology_name,
        "n_chips": len(chips), "n_fitted": len(fitted), "outlier_rule": RULE,
        "spread_method": "chip-to-chip SD = sqrt(max(SD_observed² − mean per-chip SE², 0)) over the "
                         "chips not flagged for that parameter",
        "parameters": params,
        "outlier_chips": flagged,
        "failed_chips": [{"chip": c["chip"], "session": c["session"], "reason": c["reason"]}
                         for c in chips if c.get("card") is None],
        "chips": [{"chip": c["chip"], "session": c["session"], "card": c.get("card_path")}
                  for c in chips],
    }
