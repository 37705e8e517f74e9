"""Filamentary conductive-metal-oxide / HfOx ReRAM (CMO/HfOx): the published model of IBM aihwkit 1.2's
``ReRamCMONoiseModel`` (Falcone et al.), a simulated chip, write-verify to a relative acceptance
range, the fit of programming noise, log-time relaxation and 1/f read noise, the card and its
exports (docs/physics.md, "CMO/HfOx ReRAM")."""

from devmodel.technologies import SweepDefaults, Technology

TECHNOLOGY = Technology(
    name="cmo",
    title="CMO/HfOx ReRAM",
    pulse_unit="V",
    g_max_us=88.199997,  # the published model's window, 9–88.2 µS
    t0_s=1.0,  # the relaxation law's time unit: σ(t) = s0 + s1·ln(t / 1 s)
    sweep=SweepDefaults(
        # 13 levels across the 9–88 µS window
        levels_us=(10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 65.0, 75.0, 85.0),
        # log-spaced ages from t0 to a day: the law is linear in ln t
        schedule_s=(1.0, 10.0, 100.0, 1000.0, 3600.0, 10800.0, 86400.0),
        # between the 100 s and 1000 s reads: 64 reads 1 s apart resolve the 1/f slope
        burst_devices_per_level=100, burst_reads=64, burst_interval_s=1.0, burst_age_s=300.0,
        age_tolerance=0.05,
    ),
)
