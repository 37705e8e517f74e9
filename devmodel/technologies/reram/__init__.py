"""Filamentary ReRAM after the NeuRRAM chip: the published error table (Wan 2022), the simulated chip,
incremental write-verify, the snapshot fit, the card and its exports (docs/physics.md, "ReRAM")."""

from devmodel.technologies import SweepDefaults, Technology

TECHNOLOGY = Technology(
    name="reram",
    title="filamentary ReRAM (NeuRRAM)",
    pulse_unit="V",
    g_max_us=40.0,
    t0_s=1.0,  # the table's first snapshot
    sweep=SweepDefaults(
        # 13 levels over x ∈ [0.025, 1] of g_max = 40 µS (the NeuRRAM range)
        levels_us=(1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 20.0, 24.0, 28.0, 32.0, 36.0, 40.0),
        # includes the published snapshots (1 s, 1 day, 2 days)
        schedule_s=(1.0, 10.0, 100.0, 1000.0, 3600.0, 86400.0, 172800.0),
        # between the 100 s and 1000 s schedule reads: a burst at a schedule age would delay that
        # read for every device (the scheduler reads one batch at a time)
        burst_devices_per_level=100, burst_reads=64, burst_interval_s=1.0, burst_age_s=300.0,
        age_tolerance=0.05,  # t0 = 1 s: a 10 ms cohort would be needlessly thin
    ),
    fit_flags={"reram-degree": "degree"},
)
