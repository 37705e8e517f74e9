"""Sessions drawn directly from the published statistical models (no programming physics).

These are the ground truth the fitters must recover (physics.md, the fitting issue's acceptance):

* PCM: G_prog = max(G_T + N(0, σ_prog(x)), 0); ν = |N(μ_ν(x), σ_ν(x))| at x = G_T/g_max; reads at
  age t are G_prog·(t/t0)^−ν·(1 + Q_s(G_prog/g_max)·η(t)) (Q_s at the programmed conductance, as in
  aihwkit's PCMLikeNoiseModel) with η the 1/f process of :mod:`devmodel.physics.flicker`
  started at the end of programming (so the spread at t0 includes the 1/f noise accumulated until
  then, as in the published model), plus optional white read noise;
* ReRAM: at each snapshot time t of the NeuRRAM table, G = G_T + N(0, σ(x, t)) plus white read noise
  of 1 % of g_max (short-term read noise is separate from the table, as in aihwkit).

Everything is written as a normal session file, so the fitters cannot tell it from a live session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devmodel.physics.flicker import FlickerBank
from devmodel.physics.published import (
    RERAM_G_MAX_US,
    RERAM_READ_NOISE_REL,
    RERAM_WAN2022_COEFFS_US,
    PcmStatModel,
    poly_us,
)
from devmodel.procedures.characterize import BurstConfig
from devmodel.procedures.program_verify import StopReason
from devmodel.store.session import SessionWriter, to_json


def _layout(levels_us, devices_per_level: int):
    levels = np.asarray(levels_us, dtype=float)
    rows = np.arange(levels.size * devices_per_level)
    level = rows % levels.size
    return levels, rows, level, levels[level]


def _devices_table(rows, level, target) -> dict[str, np.ndarray]:
    n = rows.size
    return {"address": rows, "level": level, "target_us": target, "converged": np.ones(n),
            "iterations": np.ones(n), "pulses": np.ones(n), "g_verify_us": target,
            "t_last_pulse_s": np.zeros(n), "stop_reason": np.full(n, int(StopReason.CONVERGED))}


def _burst_rows(level, k, per_level):
    if per_level <= 0:
        return np.empty(0, np.int64)
    return np.concatenate([np.flatnonzero(level == j)[:per_level] for j in range(k)])


def synthesize_pcm_session(
    path: str | Path,
    model: PcmStatModel | None = None,
    levels_us=(0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0, 22.5, 25.0),
    devices_per_level: int = 2000,
    schedule_s=(20.0, 60.0, 200.0, 600.0, 3600.0, 10800.0, 86400.0),
    bursts: BurstConfig | None = None,
    white_noise_us: float = 0.0,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a PCM session drawn from the published statistical model; returns the path."""
    m = model or PcmStatModel()
    b = bursts or BurstConfig()
    rng = np.random.default_rng(seed)
    levels, rows, level, target = _layout(levels_us, devices_per_level)
    n = rows.size
    x = target / m.g_max_us
    g_prog = np.maximum(target + m.sigma_prog_us(target) * rng.standard_normal(n), 0.0)
    nu = np.abs(m.nu_mean(x) + m.nu_std(x) * rng.standard_normal(n))
    q_s = m.q_s(g_prog / m.g_max_us)
    bank = FlickerBank(n, t_read_s=m.t_read_s)

    def read(sel, ages):
        eta = bank.sample(sel, ages, rng)
        g = g_prog[sel] * (ages / m.t0_s) ** (-nu[sel]) * (1.0 + q_s[sel] * eta)
        return g + white_noise_us * rng.standard_normal(sel.size)

    burst_rows = _burst_rows(level, levels.size, b.devices_per_level)
    events = [(float(a), "schedule") for a in schedule_s]
    if burst_rows.size:
        events.append((float(b.age_s), "burst"))
    events.sort()
    truth = {"model": "devmodel.physics.statistical.synthesize_pcm_session",
             "params": {"stat": to_json_ready(m), "white_noise_us": white_noise_us},
             "devices": {"g_prog_us": g_prog, "nu": nu, "q_s": q_s}}
    cfg = {"sweep": {"levels_us": levels.tolist(), "devices_per_level": devices_per_level,
                     "schedule_s": list(schedule_s), "bursts": b.__dict__},
           "synthetic": True}
    with SessionWriter(path, technology="pcm", g_max_us=m.g_max_us, t0_s=m.t0_s,
                       chip={"identity": "published PCM statistical model", "technology": "pcm"},
                       config=cfg, seed=seed, overwrite=overwrite) as w:
        w.write_levels(levels)
        w.write_devices(_devices_table(rows, level, target), {0: "converged"})
        w.write_ground_truth(truth, rows)
        for age, kind in events:
            if kind == "schedule":
                g = read(rows, np.full(n, age))
                w.append("reads", {"device": rows, "t_s": np.full(n, age), "age_s": np.full(n, age),
                                   "g_us": g, "burst": np.full(n, -1)})
            else:
                _burst(w, read, burst_rows, b, age)
        w.finish()
    return Path(path)


def _burst(w: SessionWriter, read, rows, b: BurstConfig, age: float) -> None:
    k = rows.size
    t = age + np.arange(b.n_reads) * b.interval_s
    g = np.column_stack([read(rows, np.full(k, tj)) for tj in t])
    ids = np.arange(k)
    w.write_bursts({"burst": ids, "device": rows, "n_reads": np.full(k, b.n_reads),
                    "interval_s": np.full(k, b.interval_s), "t_start_s": np.full(k, age)})
    w.append("reads", {"device": np.repeat(rows, b.n_reads), "t_s": np.tile(t, k),
                       "age_s": np.tile(t, k), "g_us": g.ravel(),
                       "burst": np.repeat(ids, b.n_reads)})


def synthesize_reram_session(
    path: str | Path,
    coeffs_us: dict[float, tuple[float, ...]] | None = None,
    g_max_us: float = RERAM_G_MAX_US,
    levels_us=(1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0, 24.0, 28.0, 32.0, 36.0, 40.0),
    devices_per_level: int = 2000,
    read_noise_us: float = RERAM_READ_NOISE_REL * RERAM_G_MAX_US,
    burst_devices_per_level: int = 50,
    burst_reads: int = 32,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a ReRAM session drawn from the NeuRRAM table (independent error per snapshot)."""
    table = coeffs_us or {t: RERAM_WAN2022_COEFFS_US[t] for t in (1.0, 86400.0)}
    rng = np.random.default_rng(seed)
    levels, rows, level, target = _layout(levels_us, devices_per_level)
    n = rows.size
    x = target / g_max_us
    truth = {"model": "devmodel.physics.statistical.synthesize_reram_session",
             "params": {"coeffs_us": {str(k): list(v) for k, v in table.items()},
                        "read_noise_us": read_noise_us, "g_max_us": g_max_us}, "devices": {}}
    times = sorted(table)
    cfg = {"sweep": {"levels_us": levels.tolist(), "devices_per_level": devices_per_level,
                     "schedule_s": times}, "synthetic": True}
    with SessionWriter(path, technology="reram", g_max_us=g_max_us, t0_s=times[0],
                       chip={"identity": "published ReRAM table", "technology": "reram"},
                       config=cfg, seed=seed, overwrite=overwrite) as w:
        w.write_levels(levels)
        w.write_devices(_devices_table(rows, level, target), {0: "converged"})
        w.write_ground_truth(truth, rows)
        g_true = {}
        for t in times:
            g_true[t] = target + poly_us(table[t], x) * rng.standard_normal(n)
            g = g_true[t] + read_noise_us * rng.standard_normal(n)
            w.append("reads", {"device": rows, "t_s": np.full(n, t), "age_s": np.full(n, t),
                               "g_us": g, "burst": np.full(n, -1)})
        burst_rows = _burst_rows(level, levels.size, burst_devices_per_level)
        if burst_rows.size:  # back-to-back reads: read noise only
            t = times[0]
            k = burst_rows.size
            g = g_true[t][burst_rows, None] + read_noise_us * rng.standard_normal((k, burst_reads))
            w.write_bursts({"burst": np.arange(k), "device": burst_rows,
                            "n_reads": np.full(k, burst_reads), "interval_s": np.zeros(k),
                            "t_start_s": np.full(k, t)})
            w.append("reads", {"device": np.repeat(burst_rows, burst_reads),
                               "t_s": np.full(k * burst_reads, t),
                               "age_s": np.full(k * burst_reads, t), "g_us": g.ravel(),
                               "burst": np.repeat(np.arange(k), burst_reads)})
        w.finish()
    return Path(path)


def to_json_ready(model: PcmStatModel) -> dict:
    """The statistical model as plain data (for ground truth records)."""
    import json

    return json.loads(to_json(model.__dict__ | {
        "nu_mean": model.nu_mean.__dict__, "nu_std": model.nu_std.__dict__,
        "q_s": model.q_s.__dict__}))
