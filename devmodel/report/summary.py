"""The text summary of a session (``devmodel info``): what a lab engineer checks first — what the file
holds and what it does not (columns an imported table lacked are "not recorded"), convergence, the
read ages and how many devices each holds, per-level deviation and spread at t0, and what a fit would
leave out, by reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from devmodel.errors import DevmodelError
from devmodel.stats import robust_sigma
from devmodel.store.reader import Session


@dataclass
class LevelRow:
    target_us: float
    n: int
    converged: float
    mean_dev_t0_us: float  # mean of G − G_T at t0 (each device against its own target)
    spread_t0_us: float  # robust (MAD × 1.4826) among converged devices
    n_t0: int


@dataclass
class SessionInfo:
    path: str
    technology: str
    status: str
    n_devices: int
    converged_fraction: float | None  # None: not recorded
    median_iterations: float | None  # None: not recorded
    t0_s: float
    ages: list[tuple[float, int]]  # (age, devices with a read there)
    n_reads: int
    n_bursts: int
    late_reads: int
    levels: list[LevelRow]
    losses: dict[str, int] = field(default_factory=dict)
    not_recorded: list[str] = field(default_factory=list)

    @property
    def median_spread_us(self) -> float:
        spreads = np.array([r.spread_t0_us for r in self.levels], dtype=float)
        finite = spreads[np.isfinite(spreads)]  # one device per level has no spread
        return float(np.median(finite)) if finite.size else float("nan")


def summarize(session: Session) -> SessionInfo:
    """Per-level convergence and deviation at t0, read ages, losses."""
    from devmodel.fit.session import screened

    d = session.devices
    if not d or "target_us" not in d or "iterations" not in d:
        hint = (f"; devmodel characterize --resume {session.path} continues it"
                if session.status != "complete" else "")
        raise DevmodelError(f"{session.path} holds no programmed devices yet (status {session.status}: "
                            f"the session stopped before its first level was written){hint}")
    imported = session.config.get("import") if isinstance(session.config, dict) else None
    conv_known = not imported or imported.get("convergence_recorded", True)
    verify_known = bool(d["iterations"].size and (d["iterations"] >= 0).any())
    target, conv = d["target_us"], d["converged"].astype(bool)
    try:
        data = screened(session)  # screened as the technology's default fit would
    except DevmodelError:  # nothing a fit could use: the table alone
        data = None
    ages, losses = [], {}
    g_t0 = np.full(target.size, np.nan)
    if data is not None:
        schedule = data.schedule_ages(np.ones(data.n_devices, bool))
        for a in schedule:
            ages.append((float(a), int(np.isfinite(data.at_age(a)).sum())))
        g_t0 = data.g_t0
        losses = {k: v for k, v in (data.excluded | data.losses(schedule)).items() if v}
    if imported:
        losses |= {k: v for k, v in (imported.get("left_out") or {}).items() if v}
    nz = target > 0
    rows = []
    for j, lv in enumerate(session.levels_us):
        at = d["level"] == j
        ok = at & conv & np.isfinite(g_t0)
        dev = (g_t0 - target)[ok]
        rows.append(LevelRow(
            target_us=float(lv), n=int(at.sum()),
            converged=float(conv[at].mean()) if at.any() else float("nan"),
            mean_dev_t0_us=float(np.mean(dev)) if dev.size else float("nan"),
            spread_t0_us=float(robust_sigma(dev)) if dev.size > 2 else float("nan"),
            n_t0=int(ok.sum())))
    not_recorded = ([] if conv_known else ["convergence"]) + ([] if verify_known else ["verify iterations"])
    if imported and not imported.get("verify_recorded", False):
        not_recorded.append("verify readings")
    return SessionInfo(
        path=str(session.path), technology=session.technology, status=session.status,
        n_devices=session.n_devices,
        converged_fraction=float(conv[nz].mean()) if conv_known and nz.any() else None,
        median_iterations=float(np.median(d["iterations"])) if verify_known else None,
        t0_s=session.t0_s, ages=ages, n_reads=int(session.reads["g_us"].size),
        n_bursts=int(session.bursts.get("burst", np.empty(0)).size),
        late_reads=int(session.attrs.get("late_reads", 0)), levels=rows, losses=losses,
        not_recorded=not_recorded)


def format_summary(info: SessionInfo) -> str:
    conv = ("convergence not recorded" if info.converged_fraction is None
            else f"converged {100 * info.converged_fraction:.2f} % of non-zero targets")
    it = ("" if info.median_iterations is None
          else f", median {info.median_iterations:.0f} verify iterations")
    shown = ", ".join(f"{a:g} s ({n})" for a, n in info.ages) or "none"
    lines = [
        f"session   {info.path}  ({info.technology}, {info.status})",
        f"devices   {info.n_devices}, {conv}{it}",
        f"ages      {shown}  (devices with a read there)",
        f"reads     {info.n_reads}, {info.n_bursts} read-noise bursts, {info.late_reads} late reads",
    ]
    if info.not_recorded:
        lines.append(f"not recorded: {', '.join(info.not_recorded)}")
    if info.losses:
        lines.append("a fit leaves out: " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                                       for k, v in info.losses.items()))
    lines += [f"at t0 = {info.t0_s:g} s, G − G_T of each device (robust σ = 1.4826·MAD, converged devices):",
              "  target µS      n   conv %   mean µS   spread µS"]
    for r in info.levels:
        lines.append(f"  {r.target_us:9.2f} {r.n:6d} {100 * r.converged:8.2f} {r.mean_dev_t0_us:9.3f} "
                     f"{r.spread_t0_us:11.3f}")
    lines.append(f"  median spread over levels: {info.median_spread_us:.3f} µS")
    return "\n".join(lines)
