"""How well a card predicts data it was not fitted on (``devmodel validate``).

For every level and read age of the held-out devices, the measured conductances are compared with
draws from the card at the same target and age: two-sample Kolmogorov–Smirnov statistic, ratio of
spreads (clipped standard deviations) and of means; plus the global drift factor Σ G(t) / Σ G(t0)
over all devices (what the seed's global drift compensation divides by), measured vs predicted.

Which devices are held out: if the card was fitted on this very session (same SHA-256) with a
hold-out, its held-out devices; if it was fitted on this session without one, a card is refitted on
``1 − holdout_fraction`` of the devices with the same options and validated on the rest; a card from
another session is validated on all devices. Excluded devices (not converged, outliers at t0) are
excluded on both sides, as in the fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from devmodel.fit.data import FitData, prepare, read_near, typical_ages
from devmodel.fit.session import fit_options, fit_session, holdout_split
from devmodel.fit.stats import clipped_std
from devmodel.model.card import DeviceModel
from devmodel.model.sample import sample_conductance
from devmodel.store.reader import Session, read_session
from devmodel.store.schema import sha256_of


@dataclass
class ValidationRow:
    g_us: float
    age_s: float
    n: int
    ks: float
    p_value: float  # of the KS test: small means a real difference, not sampling noise
    spread_ratio: float
    mean_measured_us: float
    mean_predicted_us: float
    gated: bool


@dataclass
class ValidationReport:
    mode: str
    n_devices: int
    rows: list[ValidationRow] = field(default_factory=list)
    drift_factor: list[tuple[float, float, float]] = field(default_factory=list)  # age, meas, pred
    max_ks: float = 0.05
    alpha: float = 0.05  # family-wise significance a failure must also reach (1: KS alone decides)
    card: DeviceModel | None = None

    @property
    def p_threshold(self) -> float:
        """Bonferroni: a row's KS test must reach alpha / (number of gated rows)."""
        return self.alpha / max(1, sum(r.gated for r in self.rows))

    def fails(self, r: ValidationRow) -> bool:
        """KS at or above the threshold *and* beyond sampling noise: with few held-out devices a
        correct model's KS exceeds any small threshold by chance (1.36/√n in 5 % of tests)."""
        return r.gated and r.ks >= self.max_ks and (self.alpha >= 1 or r.p_value < self.p_threshold)

    def unresolved(self) -> list[ValidationRow]:
        """Rows above the KS threshold whose difference is within sampling noise."""
        return [r for r in self.rows if r.gated and r.ks >= self.max_ks and not self.fails(r)]

    @property
    def passed(self) -> bool:
        return not any(self.fails(r) for r in self.rows)

    def worst(self) -> ValidationRow | None:
        gated = [r for r in self.rows if r.gated]
        return max(gated, key=lambda r: r.ks) if gated else None


def validate(card: DeviceModel, session_path, holdout_fraction: float = 0.3, seed: int = 0,
             max_ks: float = 0.05, gate_ages_s: list[float] | None = None, n_sim: int = 20_000,
             min_devices: int = 30, alpha: float = 0.05) -> ValidationReport:
    """Compare the card's predictions with held-out data (see the module docstring);
    ``session_path`` may be an already loaded Session."""
    session = (session_path if isinstance(session_path, Session)
               else read_session(session_path, with_trace=False))
    data = prepare(session)
    same = card.provenance.get("source_sha256") == sha256_of(session.path)
    fitted_holdout = card.provenance.get("holdout", {})
    if same and fitted_holdout.get("fraction", 0) > 0:
        held = holdout_split(data.n_devices, fitted_holdout["fraction"], fitted_holdout["seed"])
        mode = f"held-out devices of the card's own split ({int(held.sum())} devices)"
    elif same:
        held = holdout_split(data.n_devices, holdout_fraction, seed)
        card = fit_session(session, _options_of(card), holdout_fraction=holdout_fraction,
                           holdout_seed=seed)
        mode = (f"card refitted on {100 * (1 - holdout_fraction):.0f} % of the devices, "
                f"validated on the other {int(held.sum())}")
    else:
        held = np.ones(data.n_devices, bool)
        mode = f"card from another source, validated on all {data.n_devices} devices"
    use = data.use & held
    report = _compare(card, data, use, mode, max_ks, gate_ages_s, n_sim, min_devices, seed)
    report.alpha = alpha
    return report


def _options_of(card: DeviceModel):
    """The fit options the card records (the technology's defaults where it records none)."""
    return fit_options(card.technology, card.fit_quality.get("options") or {})


def _compare(card, data: FitData, use, mode, max_ks, gate_ages_s, n_sim, min_devices, seed):
    rng = np.random.default_rng(seed + 12345)
    sel = use[data.dev]
    ages = typical_ages(data.age_s[sel], data.dev[sel]) if sel.any() else np.empty(0)
    report = ValidationReport(mode=mode, n_devices=int(use.sum()), max_ks=max_ks, card=card)
    g_ref = read_near(data.dev, data.age_s, data.g_us, data.n_devices, card.t0_s)
    for age in ages:
        gated = gate_ages_s is None or any(abs(age - a) <= 0.1 * a for a in gate_ages_s)
        g = read_near(data.dev, data.age_s, data.g_us, data.n_devices, age)
        both = use & np.isfinite(g) & np.isfinite(g_ref)
        meas_sum, pred_sum, meas_ref, pred_ref = 0.0, 0.0, 0.0, 0.0
        for j, lv in enumerate(data.levels_us):
            m = use & (data.level == j) & np.isfinite(g)
            if m.sum() < min_devices:
                continue
            sim = sample_conductance(card, np.full(n_sim, lv), float(age), rng, extrapolate=True)
            sim_ref = sample_conductance(card, np.full(n_sim, lv), card.t0_s, rng)
            _, s_meas, _ = clipped_std(g[m])
            _, s_pred, _ = clipped_std(sim)
            ks = stats.ks_2samp(g[m], sim)
            report.rows.append(ValidationRow(
                g_us=float(lv), age_s=float(age), n=int(m.sum()),
                ks=float(ks.statistic), p_value=float(ks.pvalue),
                spread_ratio=float(s_meas / s_pred) if s_pred > 0 else float("nan"),
                mean_measured_us=float(np.mean(g[m])), mean_predicted_us=float(np.mean(sim)),
                gated=bool(gated)))
            k = both & (data.level == j)
            meas_sum += g[k].sum()
            meas_ref += g_ref[k].sum()
            pred_sum += k.sum() * sim.mean()
            pred_ref += k.sum() * sim_ref.mean()
        if meas_ref > 0 and pred_ref > 0:
            report.drift_factor.append((float(age), meas_sum / meas_ref, pred_sum / pred_ref))
    return report


def _ks_critical(p: float) -> float:
    """Asymptotic KS critical value c(p): D > c/√n_eff has probability p for a correct model."""
    return float(np.sqrt(-np.log(p / 2) / 2))


def format_report(r: ValidationReport) -> str:
    lines = [f"validation: {r.mode}",
             "  target µS    age s      n      KS  p(KS)  spread ratio   mean meas   mean pred"]
    for row in r.rows:
        flag = "" if not row.gated else (" FAIL" if r.fails(row) else
                                         " ok" if row.ks < r.max_ks else " within noise")
        lines.append(f"  {row.g_us:9.2f} {row.age_s:8.0f} {row.n:6d} {row.ks:7.4f} "
                     f"{row.p_value:6.3f}"
                     f"{row.spread_ratio:14.3f} {row.mean_measured_us:11.3f} "
                     f"{row.mean_predicted_us:11.3f}{flag}")
    if r.drift_factor:
        lines.append("  global drift factor Σ G(t) / Σ G(t0):  age s   measured   predicted")
        for age, m, p in r.drift_factor:
            lines.append(f"  {'':38}{age:7.0f} {m:10.4f} {p:11.4f}")
    w = r.worst()
    verdict = "PASSED" if r.passed else "FAILED"
    if w is not None:
        crit = 1.36 / np.sqrt(w.n)
        rule = f"KS ≥ {r.max_ks:g}" + ("" if r.alpha >= 1 else f" with p < {r.p_threshold:.2g}")
        lines.append(f"{verdict}: largest gated KS = {w.ks:.4f} (level {w.g_us:g} µS, "
                     f"age {w.age_s:.0f} s, p = {w.p_value:.3g}); fails on {rule} "
                     f"(a correct model exceeds {crit:.3f} in 5 % of tests with {w.n} devices)")
        if r.unresolved():
            n_need = int(np.ceil((_ks_critical(r.p_threshold) / r.max_ks) ** 2))
            lines.append(f"  {len(r.unresolved())} comparison(s) above KS {r.max_ks:g} are within "
                         f"sampling noise: resolving KS {r.max_ks:g} needs ≈ {n_need} held-out "
                         f"devices per level")
    else:
        lines.append("no level had enough held-out devices to compare")
    return "\n".join(lines)
