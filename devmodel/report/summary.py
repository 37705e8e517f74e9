"""The text summary of a session (``devmodel info``): what a lab engineer checks first."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devmodel.stats import robust_sigma
from devmodel.store.reader import Session


@dataclass
class LevelRow:
    target_us: float
    n: int
    converged: float
    mean_t0_us: float
    spread_t0_us: float  # robust (MAD × 1.4826) among converged devices
    n_t0: int


@dataclass
class SessionInfo:
    path: str
    technology: str
    status: str
    n_devices: int
    converged_fraction: float
    median_iterations: float
    t0_s: float
    schedule_s: list[float]
    n_reads: int
    n_bursts: int
    late_reads: int
    levels: list[LevelRow]

    @property
    def median_spread_us(self) -> float:
        spreads = np.array([r.spread_t0_us for r in self.levels], dtype=float)
        finite = spreads[np.isfinite(spreads)]  # one device per level has no spread
        return float(np.median(finite)) if finite.size else float("nan")


def first_read_near(session: Session, age_s: float, rel_tol: float = 0.1) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """(g_us, has_read) per device: its schedule read closest to ``age_s`` (within ``rel_tol``)."""
    from devmodel.fit.data import read_near

    r = session.reads
    sch = r["burst"] < 0
    out = read_near(r["device"][sch], r["age_s"][sch], r["g_us"][sch], session.n_devices, age_s,
                    rel_tol)
    return out, np.isfinite(out)


def summarize(session: Session) -> SessionInfo:
    """Per-level convergence and spread at t0, schedule and read counts."""
    d = session.devices
    target, conv = d["target_us"], d["converged"].astype(bool)
    g_t0, has = first_read_near(session, session.t0_s)
    rows = []
    for lv in session.levels_us:
        at = target == lv
        ok = at & conv & has
        rows.append(LevelRow(
            target_us=float(lv), n=int(at.sum()), converged=float(conv[at].mean()),
            mean_t0_us=float(np.mean(g_t0[ok])) if ok.any() else float("nan"),
            spread_t0_us=float(robust_sigma(g_t0[ok])) if ok.sum() > 2 else float("nan"),
            n_t0=int(ok.sum()),
        ))
    sweep = session.config.get("sweep", {})
    schedule = list(sweep.get("schedule_s", [])) if isinstance(sweep, dict) else []
    if not schedule and session.reads["g_us"].size:  # imported tables: the ages most devices share
        from devmodel.fit.data import typical_ages

        r = session.reads
        sel = (r["burst"] < 0) & (r["age_s"] > 0)
        if sel.any():
            schedule = [float(f"{a:.3g}") for a in typical_ages(r["age_s"][sel], r["device"][sel])]
    nz = target > 0
    return SessionInfo(
        path=str(session.path), technology=session.technology, status=session.status,
        n_devices=session.n_devices,
        converged_fraction=float(conv[nz].mean()) if nz.any() else float("nan"),
        median_iterations=float(np.median(d["iterations"])) if target.size else float("nan"),
        t0_s=session.t0_s, schedule_s=schedule,
        n_reads=int(session.reads["g_us"].size), n_bursts=int(session.bursts.get("burst",
                                                                                np.empty(0)).size),
        late_reads=int(session.attrs.get("late_reads", 0)), levels=rows,
    )


def format_summary(info: SessionInfo) -> str:
    lines = [
        f"session   {info.path}  ({info.technology}, {info.status})",
        f"devices   {info.n_devices}, converged {100 * info.converged_fraction:.2f} % of non-zero "
        f"targets, median {info.median_iterations:.0f} verify iterations",
        f"schedule  ages {', '.join(f'{a:g}' for a in info.schedule_s)} s; "
        f"{info.n_reads} reads, {info.n_bursts} read-noise bursts, {info.late_reads} late reads",
        f"spread at t0 = {info.t0_s:g} s (robust σ = 1.4826·MAD, converged devices):",
        "  target µS      n   conv %   mean µS   spread µS",
    ]
    for r in info.levels:
        lines.append(f"  {r.target_us:9.2f} {r.n:6d} {100 * r.converged:8.2f} {r.mean_t0_us:9.3f} "
                     f"{r.spread_t0_us:11.3f}")
    lines.append(f"  median spread over levels: {info.median_spread_us:.3f} µS")
    return "\n".join(lines)
