"""Station files: which instruments, where, through which backend, and the chip's safety limits.

YAML, validated against ``instruments/schemas/station.schema.json`` (JSON Schema 2020-12) before
anything is opened; every problem is one sentence naming the file and the field. Example in
docs/instruments.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from devmodel.array import Limits
from devmodel.errors import DevmodelError
from devmodel.technologies import names as technology_names


class StationError(DevmodelError):
    """A station file that is missing, not YAML, or does not follow the schema."""


@dataclass(frozen=True)
class InstrumentSpec:
    """One instrument of the station: driver, resource string, backend and timeout."""

    name: str
    driver: str
    resource: str | None = None
    backend: str = "@py"
    timeout_s: float = 10.0
    read_termination: str = "\n"
    write_termination: str = "\n"
    models: tuple[str, ...] | None = None
    reset: bool = False
    limits: dict[str, tuple] = field(default_factory=dict)
    retries: dict | None = None  # RetryPolicy fields (chip only): attempts, backoff_s, max_backoff_s, seed
    faults: dict | None = None  # injected faults for rehearsals (chip only), see instruments.faults


def outside_range(a: np.ndarray, rng: tuple[int, int] | None) -> int | None:
    """The first address of ``a`` outside a station's [first, last] range, None if all are in."""
    if rng is None or not a.size or (a.min() >= rng[0] and a.max() <= rng[1]):
        return None
    return int(a[(a < rng[0]) | (a > rng[1])][0])


@dataclass(frozen=True)
class ChipLimits:
    """Station-side safety limits; ``None`` leaves the chip's own declared limit in force."""

    max_amplitude: float | None = None
    max_width_ns: float | None = None
    max_compliance_ua: float | None = None
    max_pulses_per_device: int | None = None
    max_reads_per_request: int | None = None
    address_range: tuple[int, int] | None = None

    def combine(self, declared: Limits) -> Limits:
        """The stricter of these and the chip's declared limits, field by field."""

        def lower(a, b):
            return b if a is None else a if b is None else min(a, b)

        return Limits(
            max_amplitude=lower(self.max_amplitude, declared.max_amplitude),
            max_width_ns=lower(self.max_width_ns, declared.max_width_ns),
            max_compliance_ua=lower(self.max_compliance_ua, declared.max_compliance_ua),
            max_pulses_per_device=lower(self.max_pulses_per_device, declared.max_pulses_per_device),
            max_reads_per_request=lower(self.max_reads_per_request, declared.max_reads_per_request),
        )


@dataclass(frozen=True)
class ProbeStationSpec:
    """How the SMU, pulse generator and switch matrix make a (small) device array."""

    technology: str
    g_max_us: float
    devices: tuple[dict, ...]
    pulse_unit: str = "V"
    load_ohm: float = 1000.0
    bipolar: bool = True
    v_read_v: float = 0.2
    nplc: float = 1.0
    read_current_limit_a: float = 1e-3
    smu: str = "smu"
    pulser: str = "pulser"
    switch: str | None = "switch"


@dataclass(frozen=True)
class Station:
    """A loaded, validated station file."""

    path: Path | None
    instruments: dict[str, InstrumentSpec]
    chip_limits: ChipLimits
    probe_station: ProbeStationSpec | None = None
    name: str = ""
    #: program-and-verify settings (field → value) of the chip's technology, checked by the command
    #: that applies them against that technology's VerifyConfig
    verify: dict[str, Any] = field(default_factory=dict)

    def instrument(self, name: str, driver: str) -> InstrumentSpec:
        """The instrument called ``name``; it must use ``driver``."""
        spec = self.instruments.get(name)
        if spec is None:
            raise StationError(f"station file {self.path}: instruments.{name} is missing")
        if spec.driver != driver:
            raise StationError(f"station file {self.path}: instruments.{name}.driver is "
                               f"{spec.driver!r}, expected {driver!r}")
        return spec

    def backend_for(self, spec: InstrumentSpec) -> str:
        """The backend string with a pyvisa-sim file resolved (station folder, then the package's)."""
        b = spec.backend
        if not b.endswith("@sim") or b == "@sim":
            return b
        file = b[: -len("@sim")]
        for base in ([self.path.parent] if self.path else []) + [Path(str(resources.files("instruments")))
                                                                 / "sim"]:
            if (base / file).is_file():
                return f"{base / file}@sim"
        raise StationError(f"station file {self.path}: instruments.{spec.name}.backend names the "
                           f"pyvisa-sim file {file!r}, which does not exist")


DEFAULT_STATION = Station(None, {}, ChipLimits())


@cache
def station_schema() -> dict:
    """The JSON Schema of station files (shipped in the package)."""
    text = (resources.files("instruments") / "schemas" / "station.schema.json").read_text("utf-8")
    return json.loads(text)


def load_station(path: str | Path) -> Station:
    """Read and validate a station file; errors are one sentence naming the file and the field."""
    import jsonschema
    import yaml

    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise StationError(f"station file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise StationError(f"station file {path} cannot be read ({type(e).__name__})") from None
    try:
        data = yaml.load(text, Loader=_alias_free_loader())  # noqa: S506 (a SafeLoader subclass)
    except _AliasError as e:
        raise StationError(f"station file {path} uses a YAML alias (*{e.anchor}) at line {e.line}; "
                           "station files write every value out (aliases can expand without bound)") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise StationError(f"station file {path} is not valid YAML{where}") from None
    bad = _non_finite(data)
    if bad is not None:
        raise StationError(f"station file {path}: {bad or 'the top level'}: not a finite number")
    validator = jsonschema.Draft202012Validator(station_schema())
    err = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if err is not None:
        where = ".".join(str(p) for p in err.absolute_path) or "the top level"
        raise StationError(f"station file {path}: {where}: {err.message}")
    return _build(path, data)


class _AliasError(Exception):
    def __init__(self, anchor: str, line: int):
        super().__init__(anchor)
        self.anchor, self.line = anchor, line


@cache
def _alias_free_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that refuses aliases: a few lines of anchors can expand to gigabytes."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise _AliasError(event.anchor, event.start_mark.line + 1)
            return super().compose_node(parent, index)

    return Loader


def _non_finite(data: Any, where: str = "") -> str | None:
    """The dotted path of the first NaN or ±inf in ``data`` (YAML's .nan/.inf), else None: NaN
    passes every schema ``minimum``, and a limit of NaN would make every ``x > limit`` false."""
    if isinstance(data, float) and not math.isfinite(data):
        return where
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{where}.{k}" if where else str(k))
        if found is not None:
            return found
    return None


def _build(path: Path, data: dict[str, Any]) -> Station:
    instruments = {}
    for name, d in (data.get("instruments") or {}).items():
        instruments[name] = InstrumentSpec(
            name=name, driver=d["driver"], resource=d.get("resource"),
            backend=d.get("backend", "@py"), timeout_s=float(d.get("timeout_s", 10.0)),
            read_termination=d.get("read_termination", "\n"),
            write_termination=d.get("write_termination", "\n"),
            models=tuple(d["models"]) if "models" in d else None, reset=bool(d.get("reset", False)),
            limits={k: tuple(v) for k, v in (d.get("limits") or {}).items()},
            retries=d.get("retries"), faults=d.get("faults"),
        )
    lim = ((data.get("chip") or {}).get("limits")) or {}
    rng = lim.get("address_range")
    if rng is not None and rng[0] > rng[1]:
        raise StationError(f"station file {path}: chip.limits.address_range: first address "
                           f"{rng[0]} is after the last {rng[1]}")
    limits = ChipLimits(
        max_amplitude=lim.get("max_amplitude"), max_width_ns=lim.get("max_width_ns"),
        max_compliance_ua=lim.get("max_compliance_ua"),
        max_pulses_per_device=lim.get("max_pulses_per_device"),
        max_reads_per_request=lim.get("max_reads_per_request"),
        address_range=tuple(rng) if rng is not None else None,
    )
    probe = None
    if "probe_station" in data:
        p = dict(data["probe_station"])
        if p["technology"] not in technology_names():
            raise StationError(f"station file {path}: probe_station.technology: {p['technology']!r} is "
                               f"not a known technology ({', '.join(technology_names())})")
        p["devices"] = tuple(p["devices"])
        p.setdefault("switch", "switch" if "switch" in instruments else None)  # hard-wired: none
        probe = ProbeStationSpec(**p)
        for role in ("smu", "pulser", "switch"):
            ref = getattr(probe, role)
            if ref is not None and ref not in instruments:
                raise StationError(f"station file {path}: probe_station.{role} names instrument "
                                   f"{ref!r}, which is not under instruments")
    verify = {k: tuple(v) if isinstance(v, list) else v for k, v in (data.get("verify") or {}).items()}
    return Station(path, instruments, limits, probe, data.get("name", ""), verify)
