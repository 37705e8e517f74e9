"""Limits are never exceeded (reliability issue, part 4): for randomly generated chip limits and
program-and-verify / sweep configurations (hypothesis), no command that exceeds a declared limit
(amplitude, width, compliance, address range, pulses per device) ever reaches the chip, a
configuration that could is refused before anything is sent, and every loop ends within its bounds."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devmodel.array import Limits, PulseKind
from devmodel.errors import DevmodelError, LimitError
from devmodel.procedures.characterize import BurstConfig, SweepConfig, run_sweep
from devmodel.procedures.program_verify import program_verify
from devmodel.technologies.pcm.physics import SimulatedPCM
from devmodel.technologies.pcm.verify import PcmVerifyConfig
from devmodel.technologies.reram.physics import SimulatedReRAM
from devmodel.technologies.reram.verify import ReramVerifyConfig

program_verify_pcm = program_verify_reram = program_verify  # the chip's technology picks the loop

N_DEVICES = 512
COUNTS = {"examples": 0, "refused": 0, "ran": 0, "batches": 0}


class Wire:
    """What reaches the chip: every pulse batch as sent, checked against the limits by this test's own
    arithmetic (not the chip's), and every device's pulse count."""

    def __init__(self, limits: Limits, n: int, address_range: tuple[int, int] | None = None) -> None:
        self.limits, self.n, self.range = limits, n, address_range
        self.batches = 0
        self.pulses = np.zeros(n, np.int64)
        self.violations: list[str] = []

    def check(self, a, kind, amp, width, comp) -> None:
        lim, a = self.limits, np.asarray(a)
        self.batches += 1
        m = a.size
        amp = np.abs(np.broadcast_to(np.asarray(amp, float), (m,)))
        width = np.broadcast_to(np.asarray(width, float), (m,))
        lo, hi = self.range or (0, self.n - 1)
        if m and (a.min() < lo or a.max() > hi):
            self.violations.append(f"address outside {lo}..{hi}")
        if m and amp.max() > lim.max_amplitude:
            self.violations.append(f"amplitude {amp.max()} > {lim.max_amplitude}")
        if m and (width.max() > lim.max_width_ns or width.min() <= 0):
            self.violations.append(f"width {width.min()}..{width.max()} outside (0, {lim.max_width_ns}]")
        if comp is not None and lim.max_compliance_ua is not None and m:
            if np.max(comp) > lim.max_compliance_ua:
                self.violations.append(f"compliance {np.max(comp)} > {lim.max_compliance_ua}")
        np.add.at(self.pulses, a, 1)
        if lim.max_pulses_per_device is not None and m and self.pulses.max() > lim.max_pulses_per_device:
            self.violations.append(f"{self.pulses.max()} pulses on one device > {lim.max_pulses_per_device}")


def recording(cls):
    class Recording(cls):
        def pulse(self, addresses, kind, amplitude, width_ns, compliance_ua=None):
            self.wire.check(addresses, kind, amplitude, width_ns, compliance_ua)
            return super().pulse(addresses, kind, amplitude, width_ns, compliance_ua)
    return Recording


RecordingPCM, RecordingReRAM = recording(SimulatedPCM), recording(SimulatedReRAM)



def near(draw, limit: float, lo: float) -> float:
    """A value that respects ``limit`` 19 times in 20, else exceeds it by up to 20 %."""
    if draw(st.integers(0, 19)):
        return draw(st.floats(lo, max(lo, limit)))
    return draw(st.floats(max(lo, limit), max(lo, 1.2 * limit)))


@st.composite
def pcm_case(draw):
    limits = Limits(max_amplitude=draw(st.floats(100.0, 600.0)), max_width_ns=draw(st.floats(100.0, 3000.0)),
                    max_pulses_per_device=draw(st.none() | st.integers(1, 120)))
    a, w = limits.max_amplitude, limits.max_width_ns
    amp_min = draw(st.floats(10.0, 0.8 * a))
    n_set = draw(st.integers(0, 6))
    cfg = PcmVerifyConfig(
        tolerance_us=draw(st.floats(0.05, 2.0)), n_verify_reads=draw(st.integers(1, 5)),
        max_iterations=draw(st.integers(1, 40)), gain_ua_per_us=draw(st.floats(0.5, 40.0)),
        start_amplitude_ua=draw(st.floats(0.0, 700.0)), amplitude_min_ua=amp_min,
        amplitude_max_ua=near(draw, a, amp_min), pulse_width_ns=near(draw, w, 1.0),
        init_reset_ua=near(draw, a, 50.0), init_reset_width_ns=near(draw, w, 1.0),
        init_set_ua=tuple(draw(st.lists(st.floats(10.0, min(a, 400.0)), min_size=n_set, max_size=n_set))),
        init_set_width_ns=near(draw, w, 1.0), verify_delay_s=draw(st.floats(0.0, 2.0)),
        max_pulses_per_device=draw(st.integers(n_set, 120)), max_duration_s=draw(st.floats(1.0, 1e5)),
    )
    m = draw(st.integers(1, 64))
    first = draw(st.integers(0, N_DEVICES - 1))
    targets = draw(st.lists(st.sampled_from([0.0, 0.5, 2.0, 5.0, 12.0, 20.0, 25.0]), min_size=m, max_size=m))
    pre = draw(st.integers(0, 3))  # pulses some devices took before (a used chip)
    return limits, cfg, first, np.array(targets), pre, draw(st.integers(0, 2**32 - 1))


@st.composite
def reram_case(draw):
    limits = Limits(max_amplitude=draw(st.floats(1.0, 3.0)), max_width_ns=draw(st.floats(50.0, 3000.0)),
                    max_compliance_ua=draw(st.floats(5.0, 200.0)),
                    max_pulses_per_device=draw(st.none() | st.integers(1, 120)))
    a, w, c = limits.max_amplitude, limits.max_width_ns, limits.max_compliance_ua
    set0, reset0 = draw(st.floats(0.2, 0.9 * a)), draw(st.floats(0.2, 0.9 * a))
    cmin = draw(st.floats(0.5, 0.9 * c))
    cfg = ReramVerifyConfig(
        tolerance_us=draw(st.floats(0.1, 3.0)), init_reset_v=near(draw, a, 0.3),
        n_verify_reads=draw(st.integers(2, 5)), discard_reads=draw(st.integers(0, 1)),
        max_iterations=draw(st.integers(1, 40)), set_start_v=set0, set_max_v=near(draw, a, set0),
        reset_start_v=reset0, reset_max_v=near(draw, a, reset0), step_v=draw(st.floats(0.0, 0.5)),
        pulse_width_ns=near(draw, w, 1.0), compliance_ua_per_us=draw(st.floats(0.1, 5.0)),
        compliance_min_ua=cmin, compliance_max_ua=near(draw, c, cmin),
        max_pulses_per_device=draw(st.integers(1, 120)),
    )
    m = draw(st.integers(1, 64))
    first = draw(st.integers(0, N_DEVICES - 1))
    targets = draw(st.lists(st.sampled_from([1.0, 4.0, 12.0, 24.0, 40.0]), min_size=m, max_size=m))
    return limits, cfg, first, np.array(targets), draw(st.integers(0, 3)), draw(st.integers(0, 2**32 - 1))


def run_case(chip_cls, program, case) -> None:
    limits, cfg, first, targets, pre, seed = case
    COUNTS["examples"] += 1
    chip = chip_cls(n_devices=N_DEVICES, seed=seed % 1000, limits=limits)
    chip.wire = Wire(limits, N_DEVICES)
    addresses = (first + np.arange(targets.size)) % N_DEVICES
    addresses = np.unique(addresses)
    targets = targets[: addresses.size]
    if pre and limits.max_pulses_per_device is not None:  # a used chip: some budget already spent
        used = addresses[::2]
        for _ in range(min(pre, limits.max_pulses_per_device)):
            chip.pulse(used, PulseKind.RESET, min(limits.max_amplitude, 1.0), min(limits.max_width_ns, 50.0))
    sent_before = chip.wire.batches
    try:
        res = program(chip, addresses, targets, cfg)
    except (LimitError, DevmodelError):
        COUNTS["refused"] += 1
        assert chip.wire.batches == sent_before, "a refused configuration sent something"
        return
    COUNTS["ran"] += 1
    COUNTS["batches"] += chip.wire.batches
    assert chip.wire.violations == []
    assert res.iterations.max(initial=0) <= cfg.max_iterations
    assert res.pulses.max(initial=0) <= cfg.max_pulses_per_device
    assert np.all(res.stop_reason >= 0)  # every device says why it stopped


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pcm_case())
def test_pcm_program_verify_never_sends_a_pulse_beyond_the_limits(case):
    run_case(RecordingPCM, program_verify_pcm, case)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reram_case())
def test_reram_write_verify_never_sends_a_pulse_beyond_the_limits(case):
    run_case(RecordingReRAM, program_verify_reram, case)


class NullWriter:
    def __getattr__(self, name):
        return lambda *a, **k: None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limits=st.builds(Limits, max_amplitude=st.floats(100.0, 600.0), max_width_ns=st.floats(20.0, 3000.0),
                        max_pulses_per_device=st.none() | st.integers(1, 150)),
       levels=st.lists(st.floats(0.01, 30.0), min_size=1, max_size=4),
       devices=st.integers(1, 20), first=st.integers(0, 400), seed=st.integers(0, 1000))
def test_whole_sweeps_stay_within_limits_and_addresses(limits, levels, devices, first, seed):
    chip = RecordingPCM(n_devices=N_DEVICES, seed=seed, limits=limits)
    chip.wire = Wire(limits, N_DEVICES)
    cfg = SweepConfig(tuple(levels), devices, (20.0, 200.0), BurstConfig(0), first_address=first)
    COUNTS["examples"] += 1
    try:
        run_sweep(chip, cfg, NullWriter(), PcmVerifyConfig(max_iterations=8))
    except (LimitError, DevmodelError):
        COUNTS["refused"] += 1
        assert chip.wire.batches == 0
        return
    COUNTS["ran"] += 1
    assert chip.wire.violations == []
    touched = np.flatnonzero(chip.wire.pulses)  # none if a 1-pulse lifetime leaves no room to program
    assert touched.size == 0 or (touched.min() >= first and touched.max() < first + len(levels) * devices)


def test_the_visa_driver_keeps_station_limits_narrower_than_the_chip(tmp_path):
    """Through the server: the station narrows amplitude, pulses per device and the address range;
    what reaches the chip (recorded behind the server) respects them, whatever the configuration."""
    from instruments.chip import ScpiChip
    from instruments.server import ChipServer
    from instruments.station import ChipLimits
    from instruments.testing import ThreadedServer
    from instruments.transport import VisaTransport

    chip = RecordingPCM(n_devices=N_DEVICES, seed=3)
    station = ChipLimits(max_amplitude=420.0, max_pulses_per_device=20, address_range=(100, 299))
    chip.wire = Wire(Limits(420.0, chip.info.limits.max_width_ns, max_pulses_per_device=20), N_DEVICES,
                     (100, 299))
    with ThreadedServer(ChipServer(chip, port=0)) as srv:
        remote = ScpiChip(VisaTransport(srv.resource, "@py", 5.0), station_limits=station)
        try:
            rng = np.random.default_rng(0)
            for first in (50, 100, 250, 290):  # some cross the station's address range
                addr = np.arange(first, first + 30)
                try:
                    program_verify_pcm(remote, addr, rng.choice([0.0, 5.0, 20.0], addr.size),
                                       PcmVerifyConfig(init_reset_ua=400.0, max_pulses_per_device=15))
                except LimitError as e:
                    assert "nothing was sent" in str(e)
            with_default = None
            try:
                program_verify_pcm(remote, np.arange(120, 130), np.full(10, 5.0), PcmVerifyConfig())
            except LimitError as e:  # 450 µA RESET > the station's 420 µA: refused up front
                with_default = str(e)
            assert with_default and "init_reset_ua" in with_default and "420" in with_default
        finally:
            remote.close()
    assert chip.wire.batches > 0 and chip.wire.violations == []


def test_counts_of_generated_cases_are_reported():
    """Not a check: prints how many generated cases ran or were refused (for the closing note)."""
    print(f"\nlimits property tests: {COUNTS}")
