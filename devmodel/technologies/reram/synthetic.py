"""ReRAM sessions drawn directly from the published NeuRRAM table (no programming physics): the
ground truth the ReRAM fitter must recover (docs/physics.md, "ReRAM").

At each snapshot time t of the table, G = G_T + N(0, σ(x, t)) (independent between snapshots) plus
white read noise of 1 % of g_max (short-term read noise is separate from the table, as in aihwkit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from devmodel.forms import poly_us
from devmodel.procedures.synthetic import burst_rows, devices_table, layout
from devmodel.store.writer import SessionWriter
from devmodel.technologies.reram.published import (
    RERAM_G_MAX_US,
    RERAM_READ_NOISE_REL,
    RERAM_WAN2022_COEFFS_US,
)


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
    levels, rows, level, target = layout(levels_us, devices_per_level)
    n = rows.size
    x = target / g_max_us
    truth = {"model": "devmodel.technologies.reram.synthetic.synthesize_reram_session",
             "params": {"coeffs_us": {str(k): list(v) for k, v in table.items()},
                        "read_noise_us": read_noise_us, "g_max_us": g_max_us}, "devices": {}}
    times = sorted(table)
    cfg = {"sweep": {"levels_us": levels.tolist(), "devices_per_level": devices_per_level,
                     "schedule_s": times}, "synthetic": True}
    with SessionWriter(path, technology="reram", g_max_us=g_max_us, t0_s=times[0],
                       chip={"identity": "published ReRAM table", "technology": "reram"},
                       config=cfg, seed=seed, overwrite=overwrite) as w:
        w.write_levels(levels)
        w.write_devices(devices_table(rows, level, target))
        w.write_ground_truth(truth, rows)
        g_true = {}
        for t in times:
            g_true[t] = target + poly_us(table[t], x) * rng.standard_normal(n)
            g = g_true[t] + read_noise_us * rng.standard_normal(n)
            w.append("reads", {"device": rows, "t_s": np.full(n, t), "age_s": np.full(n, t),
                               "g_us": g, "burst": np.full(n, -1), "nominal_age_s": np.full(n, t)})
        burst = burst_rows(level, levels.size, burst_devices_per_level)
        if burst.size:  # back-to-back reads: read noise only
            t = times[0]
            k = burst.size
            g = g_true[t][burst, None] + read_noise_us * rng.standard_normal((k, burst_reads))
            w.write_bursts({"burst": np.arange(k), "device": burst,
                            "n_reads": np.full(k, burst_reads), "interval_s": np.zeros(k),
                            "t_start_s": np.full(k, t)})
            w.append("reads", {"device": np.repeat(burst, burst_reads),
                               "t_s": np.full(k * burst_reads, t),
                               "age_s": np.full(k * burst_reads, t), "g_us": g.ravel(),
                               "burst": np.repeat(np.arange(k), burst_reads)})
        w.finish()
    return Path(path)
