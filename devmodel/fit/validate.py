"""How well a card predicts data it was not fitted on (``devmodel validate``).

For every level and read age of the held-out devices, the measured deviations G − G_T are compared
with draws from the card at the same targets and age: two-sample Kolmogorov–Smirnov statistic,
spreads (clipped standard deviations) and means; plus the global drift factor Σ G(t) / Σ G(t0)
over all devices (what the seed's global drift compensation divides by), measured vs predicted.

Which devices are held out: if the card was fitted on this very session (same SHA-256) with a
hold-out, its held-out devices; if it was fitted on this session without one, a card is refitted on
``1 − holdout_fraction`` of the devices with the same options and validated on the rest; a card from
another session is validated on all devices. Excluded devices (not converged, outliers at t0) are
excluded on both sides, as in the fit.

A comparison fails when its KS statistic reaches ``max_ks`` and its p-value is below the
Bonferroni-corrected ``alpha``. The p-value counts every source of sampling noise a correct card
has: the held-out devices, the draws, and — for a card fitted on this session — the devices it was
fitted on, whose own sampling error the card carries (docs/physics.md, "Validation").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from devmodel import htmltable as ht
from devmodel.fit.data import FitData
from devmodel.fit.session import (
    check_card_matches,
    fit_options,
    fit_session,
    holdout_split,
    screened,
    session_holdout,
)
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
    spread_measured_us: float = float("nan")  # clipped standard deviations
    spread_predicted_us: float = float("nan")
    mean_dev_measured_us: float = float("nan")  # mean of G − G_T, each device its own target
    mean_dev_predicted_us: float = float("nan")
    n_fit: int | None = None  # devices of this level and age the card was fitted on (None: unknown)

    @property
    def n_eff(self) -> float:
        """Held-out and fitted devices as one sample's worth (:func:`ks_p_value`)."""
        return 1 / (1 / self.n + (1 / self.n_fit if self.n_fit else 0.0))


@dataclass
class ValidationReport:
    mode: str
    n_devices: int
    rows: list[ValidationRow] = field(default_factory=list)
    drift_factor: list[tuple[float, float, float]] = field(default_factory=list)  # age, meas, pred
    max_ks: float = 0.05
    alpha: float = 0.05  # family-wise significance a failure must also reach (1: KS alone decides)
    card: DeviceModel | None = None
    min_devices: int = 30  # held-out devices a level needs at an age to be compared

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

    def _repr_html_(self) -> str:  # a notebook's summary (docs/notebook.md)
        return _STYLE + validation_html(self)


_HEADER = ["target µS", "age s", "n", "KS", "p(KS)", "mean meas µS", "mean pred µS", "spread meas µS",
           "spread pred µS", "verdict"]
_STYLE = ("<style>table.validation tr.fail{background:#fdd}tr.fail td.mark{color:#a00;font-weight:bold}"
          "tr.noise{background:#fff6d6}tr.ungated td{color:#888}</style>")


def validation_html(r: ValidationReport) -> str:
    """The validation as HTML — the report page's section body and a notebook's summary: every
    comparison (rows ``class="fail"`` marked "✗ FAIL", "noise" within sampling noise, "ungated"),
    the global drift factor, and the verdict lines as ``devmodel validate`` prints them."""
    return "\n".join([
        f"<p>{ht.esc(r.mode)}. Per level and age, G − G_T of each device: mean and spread (clipped σ), "
        "measured vs predicted.</p>",
        ht.table(_HEADER, [_row_html(r, row_) for row_ in r.rows], "validation"),
        _drift_factor_html(r), _verdict_html(r)])


def _row_html(r: ValidationReport, c: ValidationRow) -> str:
    if not c.gated:
        cls, mark = "ungated", "not gated"
    elif r.fails(c):
        cls, mark = "fail", "✗ FAIL"
    else:
        cls, mark = ("ok", "✓ ok") if c.ks < r.max_ks else ("noise", "within noise")
    nums = [(c.g_us, ".4g"), (c.age_s, "g"), (c.n, "d"), (c.ks, ".4f"), (c.p_value, ".3g"),
            (c.mean_dev_measured_us, ".3f"), (c.mean_dev_predicted_us, ".3f"),
            (c.spread_measured_us, ".3f"), (c.spread_predicted_us, ".3f")]
    return ht.row([(ht.num(v, f), "num") for v, f in nums] + [(ht.esc(mark), "mark")], cls)


def _drift_factor_html(r: ValidationReport) -> str:
    if not r.drift_factor:
        return ""
    rows = [ht.row([(ht.num(a, "g"), "num"), (ht.num(m, ".4f"), "num"), (ht.num(p, ".4f"), "num")])
            for a, m, p in r.drift_factor]
    return ("<h3>Global drift factor Σ G(t) / Σ G(t0)</h3>\n"
            + ht.table(["age s", "measured", "predicted"], rows, "drift-factor"))


def _verdict_html(r: ValidationReport) -> str:
    lines = format_report(r).splitlines()
    start = next((i for i, line in enumerate(lines)
                  if line.startswith(("PASSED", "FAILED", "no level had"))), len(lines))
    cls = "pass" if r.passed and r.worst() is not None else "failed"
    out = [f'<p class="verdict {cls}">{ht.esc(lines[start])}</p>'] if start < len(lines) else []
    return "\n".join(out + [f"<p>{ht.esc(line.strip())}</p>" for line in lines[start + 1:]])


def validate(card: DeviceModel, session_path, holdout_fraction: float = 0.3, seed: int = 0,
             max_ks: float = 0.05, gate_ages_s: list[float] | None = None, n_sim: int = 20_000,
             min_devices: int = 30, alpha: float = 0.05, progress=None) -> ValidationReport:
    """Compare the card's predictions with held-out data (see the module docstring);
    ``session_path`` may be an already loaded Session."""
    session = (session_path if isinstance(session_path, Session)
               else read_session(session_path, with_trace=False))
    check_card_matches(card, session)
    data = screened(session, _options_of(card))
    same = card.provenance.get("source_sha256") == sha256_of(session.path)
    fitted_holdout = card.provenance.get("holdout", {})
    own = session_holdout(session, fitted_holdout) if same else None
    if own is not None and own.any():
        held = own
        split = fitted_holdout.get("split", "random")
        mode = f"held-out devices of the card's own split ({split}, {int(held.sum())} devices)"
    elif same:
        held = holdout_split(data.n_devices, holdout_fraction, seed)
        card = fit_session(session, _options_of(card), holdout_fraction=holdout_fraction,
                           holdout_seed=seed, progress=progress)
        mode = (f"card refitted on {100 * (1 - holdout_fraction):.0f} % of the devices, "
                f"validated on the other {int(held.sum())}")
    else:
        held = np.ones(data.n_devices, bool)
        mode = f"card from another source, validated on all {data.n_devices} devices"
    use = data.use & held
    # the devices the card was fitted on, when they are in this session (None: a card from elsewhere)
    fitted = data.use & ~held if same else None
    report = _compare(card, data, use, fitted, mode, max_ks, gate_ages_s, n_sim, min_devices, seed,
                      progress or (lambda phase, done, total: None))
    report.alpha = alpha
    return report


def _options_of(card: DeviceModel):
    """The fit options the card records (the technology's defaults where it records none)."""
    return fit_options(card.technology, card.fit_quality.get("options") or {})


def _compare(card, data: FitData, use, fitted, mode, max_ks, gate_ages_s, n_sim, min_devices, seed, step):
    rng = np.random.default_rng(seed + 12345)
    ages = data.schedule_ages(use)
    report = ValidationReport(mode=mode, n_devices=int(use.sum()), max_ks=max_ks, card=card,
                              min_devices=min_devices)
    g_ref = data.at_age(card.t0_s)  # the card's t0, so measured and predicted share a reference
    if not np.isfinite(g_ref[use]).any():
        g_ref = data.g_t0
    ref_cache: dict[int, float] = {}  # per level: mean predicted G(t0) of its held-out devices
    for k, age in enumerate(ages):
        step("comparing ages", k, len(ages))
        gated = gate_ages_s is None or any(abs(age - a) <= 0.1 * a for a in gate_ages_s)
        g = data.at_age(float(age))
        sums = np.zeros(4)  # measured Σ G(t), Σ G(t0); predicted Σ G(t), Σ G(t0)
        for j, lv in enumerate(data.levels_us):
            m = use & (data.level == j) & np.isfinite(g)
            if m.sum() < min_devices:
                continue
            # each held-out device's own target, repeated: the prediction is the same mixture
            targets = np.repeat(data.target_us[m], int(np.ceil(n_sim / m.sum())))
            sim = sample_conductance(card, targets, float(age), rng, extrapolate=True)
            n_fit = (int(np.sum(fitted & (data.level == j) & np.isfinite(g))) if fitted is not None
                     else None)
            report.rows.append(_row(g[m], sim, data.target_us[m], targets, lv, age, gated, n_fit))
            k = m & np.isfinite(g_ref)
            if j not in ref_cache:
                ref_cache[j] = float(sample_conductance(card, targets, card.t0_s, rng).mean())
            sums += [g[k].sum(), g_ref[k].sum(), k.sum() * sim.mean(), k.sum() * ref_cache[j]]
        if sums[1] > 0 and sums[3] > 0:
            report.drift_factor.append((float(age), sums[0] / sums[1], sums[2] / sums[3]))
    return report


def ks_p_value(d: float, n_held: int, n_fit: int | None, n_sim: int) -> float:
    """P(KS ≥ d) for a correct card: the held-out devices, the devices the card was fitted on (its
    own sampling error; None: a card from elsewhere, taken as exact) and the draws are three
    independent samples of one population, so D is that of one sample of
    n_eff = 1 / (1/n_held + 1/n_fit + 1/n_sim) (docs/physics.md, "Validation")."""
    inv = 1 / n_held + 1 / n_sim + (1 / n_fit if n_fit else 0.0)
    return float(stats.kstwo.sf(d, max(1, int(round(1 / inv)))))


def _row(measured, predicted, t_meas, t_pred, level_us, age_s, gated, n_fit) -> ValidationRow:
    """One comparison, on G − G_T (each device against its own target: a level of per-device
    targets is compared as the law it is, not diluted by its spread of targets)."""
    dev_meas, dev_pred = measured - t_meas, predicted - t_pred
    _, s_meas, _ = clipped_std(dev_meas)
    _, s_pred, _ = clipped_std(dev_pred)
    d = float(stats.ks_2samp(dev_meas, dev_pred).statistic)
    return ValidationRow(
        g_us=float(level_us), age_s=float(age_s), n=int(measured.size),
        ks=d, p_value=ks_p_value(d, measured.size, n_fit, predicted.size),
        spread_ratio=float(s_meas / s_pred) if s_pred > 0 else float("nan"),
        mean_measured_us=float(np.mean(measured)), mean_predicted_us=float(np.mean(predicted)),
        gated=bool(gated), spread_measured_us=float(s_meas), spread_predicted_us=float(s_pred),
        mean_dev_measured_us=float(np.mean(dev_meas)), mean_dev_predicted_us=float(np.mean(dev_pred)),
        n_fit=n_fit)


def _ks_critical(p: float) -> float:
    """Asymptotic KS critical value c(p): D > c/√n_eff has probability p for a correct model."""
    return float(np.sqrt(-np.log(p / 2) / 2))


def format_report(r: ValidationReport) -> str:
    lines = [f"validation: {r.mode}",
             "  G − G_T of each device: mean and spread (clipped σ), measured vs predicted (µS)",
             "  target µS    age s      n      KS  p(KS)  mean meas  mean pred  spread meas  spread pred"]
    for row in r.rows:
        flag = "" if not row.gated else (" FAIL" if r.fails(row) else
                                         " ok" if row.ks < r.max_ks else " within noise")
        lines.append(f"  {row.g_us:9.2f} {row.age_s:8g} {row.n:6d} {row.ks:7.4f} "
                     f"{row.p_value:6.3f} {row.mean_dev_measured_us:10.3f} "
                     f"{row.mean_dev_predicted_us:10.3f} {row.spread_measured_us:12.3f} "
                     f"{row.spread_predicted_us:12.3f}{flag}")
    if r.drift_factor:
        lines.append("  global drift factor Σ G(t) / Σ G(t0):  age s   measured   predicted")
        for age, m, p in r.drift_factor:
            lines.append(f"  {'':38}{age:7g} {m:10.4f} {p:11.4f}")
    w = r.worst()
    verdict = "PASSED" if r.passed else "FAILED"
    if w is not None:
        crit = 1.36 / np.sqrt(w.n_eff)
        rule = f"KS ≥ {r.max_ks:g}" + ("" if r.alpha >= 1 else f" with p < {r.p_threshold:.2g}")
        lines.append(f"{verdict}: largest gated KS = {w.ks:.4f} (level {w.g_us:g} µS, "
                     f"age {w.age_s:g} s, p = {w.p_value:.3g}); fails on {rule} "
                     f"(a correct model exceeds {crit:.3f} in 5 % of tests with {w.n} held-out devices"
                     + (f" and a card fitted on {w.n_fit})" if w.n_fit else ")"))
        if r.unresolved():
            n_need = int(np.ceil((_ks_critical(r.p_threshold) / r.max_ks) ** 2))
            lines.append(f"  {len(r.unresolved())} comparison(s) above KS {r.max_ks:g} are within "
                         f"sampling noise: resolving KS {r.max_ks:g} needs ≈ {n_need} held-out "
                         f"devices per level")
    else:
        lines.append("no level had enough held-out devices to compare")
    return "\n".join(lines)
