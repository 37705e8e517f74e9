"""PCM sessions drawn directly from the published statistical model (no programming physics): the
ground truth the PCM fitter must recover (docs/physics.md).

G_prog = max(G_T + N(0, σ_prog(x)), 0); ν = |N(μ_ν(x), σ_ν(x))| at x = G_T/g_max; reads at age t
are G_prog·(t/t0)^−ν·(1 + Q_s(G_prog/g_max)·η(t)) (Q_s at the programmed conductance, as in
aihwkit's PCMLikeNoiseModel) with η the 1/f process of :mod:`devmodel.physics.flicker` started at
the end of programming (so the spread at t0 includes the 1/f noise accumulated until then, as in the
published model), clamped at 0 as the published model is, plus optional white read noise. Written
as a normal session file, so the fitters cannot tell it from a live session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devmodel.physics.flicker import FlickerBank
from devmodel.procedures.characterize import BurstConfig
from devmodel.procedures.synthetic import burst_rows, devices_table, layout
from devmodel.store.schema import to_json
from devmodel.store.writer import SessionWriter
from devmodel.technologies.pcm.published import PcmStatModel


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
    levels, rows, level, target = layout(levels_us, devices_per_level)
    n = rows.size
    x = target / m.g_max_us
    g_prog = np.maximum(target + m.sigma_prog_us(target) * rng.standard_normal(n), 0.0)
    nu = np.abs(m.nu_mean(x) + m.nu_std(x) * rng.standard_normal(n))
    q_s = m.q_s(g_prog / m.g_max_us)
    bank = FlickerBank(n, t_read_s=m.t_read_s)

    def read(sel, ages):
        eta = bank.sample(sel, ages, rng)
        g = g_prog[sel] * (ages / m.t0_s) ** (-nu[sel]) * (1.0 + q_s[sel] * eta)
        # a conductance is not negative (clamped as the published model, aihwkit's PCMLikeNoiseModel)
        return np.maximum(g, 0.0) + white_noise_us * rng.standard_normal(sel.size)

    burst = burst_rows(level, levels.size, b.devices_per_level)
    events = [(float(a), "schedule") for a in schedule_s]
    if burst.size:
        events.append((float(b.age_s), "burst"))
    events.sort()
    truth = {"model": "devmodel.technologies.pcm.synthetic.synthesize_pcm_session",
             "params": {"stat": to_json_ready(m), "white_noise_us": white_noise_us},
             "devices": {"g_prog_us": g_prog, "nu": nu, "q_s": q_s}}
    cfg = {"sweep": {"levels_us": levels.tolist(), "devices_per_level": devices_per_level,
                     "schedule_s": list(schedule_s), "bursts": b.__dict__},
           "synthetic": True}
    with SessionWriter(path, technology="pcm", g_max_us=m.g_max_us, t0_s=m.t0_s,
                       chip={"identity": "published PCM statistical model", "technology": "pcm"},
                       config=cfg, seed=seed, overwrite=overwrite) as w:
        w.write_levels(levels)
        w.write_devices(devices_table(rows, level, target))
        w.write_ground_truth(truth, rows)
        for age, kind in events:
            if kind == "schedule":
                g = read(rows, np.full(n, age))
                w.append("reads", {"device": rows, "t_s": np.full(n, age), "age_s": np.full(n, age),
                                   "g_us": g, "burst": np.full(n, -1), "nominal_age_s": np.full(n, age)})
            else:
                _burst(w, read, burst, b, age)
        w.finish()
    return Path(path)


def synthesize_pcm_chunked(
    path: str | Path,
    n_devices: int,
    model: PcmStatModel | None = None,
    levels_us=(0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0, 22.5, 25.0),
    schedule_s=(20.0, 60.0, 200.0, 600.0, 3600.0, 10800.0, 86400.0),
    bursts: BurstConfig | None = None,
    white_noise_us: float = 0.0,
    seed: int = 0,
    chunk_devices: int = 1 << 20,
    overwrite: bool = False,
    progress=None,
) -> Path:
    """A PCM session of ``n_devices`` devices (levels interleaved) drawn from the published model as
    :func:`synthesize_pcm_session` does, generated and written ``chunk_devices`` at a time, so its
    size is bounded by the disk, not the memory (docs/scale.md). Chunk ``c`` draws from
    ``default_rng([seed, c])``: a session's first chunks are those of any larger session of the same
    seed and chunk size (a 10⁶-device subset of a 10⁸-device session is its first chunk). Reads are
    written chunk by chunk (all ages of one chunk, then the next); the bursts read the first
    ``bursts.devices_per_level`` devices of every level, which must lie in the first chunk. Per-device
    ground truth is not stored (the model's parameters are). ``progress(done, total)`` hears of
    each chunk."""
    from devmodel.errors import DevmodelError
    from devmodel.store.output import atomic_output

    m = model or PcmStatModel()
    b = bursts or BurstConfig()
    levels = np.asarray(levels_us, dtype=float)
    k = levels.size
    if chunk_devices < k * b.devices_per_level:
        raise DevmodelError(f"chunk_devices = {chunk_devices} is smaller than the {k} × "
                            f"{b.devices_per_level} burst devices, which must lie in the first chunk")
    cfg = {"sweep": {"levels_us": levels.tolist(), "devices_per_level": -(-n_devices // k),
                     "schedule_s": list(schedule_s), "bursts": b.__dict__},
           "synthetic": True, "chunk_devices": chunk_devices}
    truth = {"model": "devmodel.technologies.pcm.synthetic.synthesize_pcm_chunked",
             "params": {"stat": to_json_ready(m), "white_noise_us": white_noise_us}}
    n_chunks = -(-n_devices // chunk_devices)
    with atomic_output(path, overwrite) as tmp, \
            SessionWriter(tmp, technology="pcm", g_max_us=m.g_max_us, t0_s=m.t0_s,
                          chip={"identity": "published PCM statistical model", "technology": "pcm"},
                          config=cfg, seed=seed, overwrite=True) as w:
        w.write_levels(levels)
        w.write_ground_truth(truth, np.empty(0, np.int64))
        for c in range(n_chunks):
            rows = np.arange(c * chunk_devices, min((c + 1) * chunk_devices, n_devices))
            _chunk(w, m, b, levels, rows, schedule_s, white_noise_us,
                   np.random.default_rng([seed, c]))
            if progress:
                progress(c + 1, n_chunks)
        w.finish()
    return Path(path)


def _chunk(w: SessionWriter, m: PcmStatModel, b: BurstConfig, levels: np.ndarray, rows: np.ndarray,
           schedule_s, white_noise_us: float, rng: np.random.Generator) -> None:
    """One chunk of :func:`synthesize_pcm_chunked`: its devices, their schedule reads and, in the
    first chunk, the bursts."""
    n = rows.size
    level = rows % levels.size
    target = levels[level]
    x = target / m.g_max_us
    g_prog = np.maximum(target + m.sigma_prog_us(target) * rng.standard_normal(n), 0.0)
    nu = np.abs(m.nu_mean(x) + m.nu_std(x) * rng.standard_normal(n))
    q_s = m.q_s(g_prog / m.g_max_us)
    bank = FlickerBank(n, t_read_s=m.t_read_s)
    local = np.arange(n)

    def read(sel, ages):
        eta = bank.sample(sel, ages, rng)
        g = g_prog[sel] * (ages / m.t0_s) ** (-nu[sel]) * (1.0 + q_s[sel] * eta)
        return np.maximum(g, 0.0) + white_noise_us * rng.standard_normal(sel.size)

    w.append_devices(devices_table(rows, level, target))
    burst = burst_rows(level, levels.size, b.devices_per_level) if rows[0] == 0 else local[:0]
    events = sorted([(float(a), "schedule") for a in schedule_s]
                    + ([(float(b.age_s), "burst")] if burst.size else []))
    for age, kind in events:
        if kind == "burst":
            _burst(w, read, burst, b, age)
            continue
        w.append("reads", {"device": rows, "t_s": np.full(n, age), "age_s": np.full(n, age),
                           "g_us": read(local, np.full(n, age)), "burst": np.full(n, -1),
                           "nominal_age_s": np.full(n, age)})
    w.flush()


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


def to_json_ready(model: PcmStatModel) -> dict:
    """The statistical model as plain data (for ground truth records)."""
    import json

    return json.loads(to_json(model.__dict__ | {
        "nu_mean": model.nu_mean.__dict__, "nu_std": model.nu_std.__dict__,
        "q_s": model.q_s.__dict__}))
