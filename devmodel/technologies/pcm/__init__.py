"""Phase-change memory: the published statistical model, the simulated chip, the seed's iterative
program-and-verify, the drift / 1/f fit, the card and its exports (docs/physics.md, "PCM")."""

from devmodel.technologies import SweepDefaults, Technology

TECHNOLOGY = Technology(
    name="pcm",
    title="phase-change memory",
    pulse_unit="uA",
    g_max_us=25.0,
    t0_s=20.0,  # the published model's reference age (docs/physics.md)
    sweep=SweepDefaults(
        # 13 levels: log-spaced low ones (ν(G) is only identifiable below x ≈ 0.2–0.33) plus linear
        # ones up to g_max = 25 µS
        levels_us=(0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 12.5, 15.0, 17.5, 20.0, 22.5, 25.0),
        # log-spaced ages from t0 to a day (docs/physics.md, "Fitting")
        schedule_s=(20.0, 60.0, 200.0, 600.0, 3600.0, 10800.0, 86400.0),
        burst_devices_per_level=100, burst_reads=256, burst_interval_s=1.0, burst_age_s=1000.0,
        age_tolerance=0.01,
    ),
    fit_flags={"prog-degree": "prog_degree"},
)
