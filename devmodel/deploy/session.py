"""A deployment as a session (docs/deployment.md): the network's device map is the session's plan,
programmed with the technology's program-and-verify and read on a drift schedule by the same
:class:`~devmodel.procedures.characterize.SweepRunner` a characterisation uses, into the same
crash-safe, resumable file (``/deployment`` holds the network and the map)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from devmodel.array import DeviceArray, Seeded
from devmodel.deploy.mapping import Mapping, network_bytes, target_levels
from devmodel.errors import DevmodelError, SessionFileError
from devmodel.procedures.characterize import BurstConfig, DevicePlan, Progress, SweepConfig, config_dict
from devmodel.procedures.program_verify import VerifyConfig, verify_parts
from devmodel.procedures.session import (
    DURABILITY,
    SessionRun,
    open_writer,
    resume_session,
    storage_errors,
    sweep_into,
)
from devmodel.store.schema import DEPLOYMENT_GROUP
from devmodel.store.writer import Checkpointing
from devmodel.technologies import technology

GROUP = DEPLOYMENT_GROUP


@dataclass(frozen=True)
class NetworkRecord:
    """What is recorded of the deployed network: how it was named, its architecture (a registered
    name, or the module's class), the seed of the digits split it is evaluated on, and the
    crossbar configuration its weights were mapped with."""

    network: str
    architecture: str
    data_seed: int
    crossbar: dict


def schedule_config(technology_name: str, schedule_s: tuple[float, ...] | None, levels_us: np.ndarray,
                    record_trace: bool = True) -> SweepConfig:
    """The scheduler's configuration: the technology's characterisation schedule (or ``schedule_s``),
    cohort width and no read-noise bursts; the levels are the deployment's target bins."""
    d = SweepConfig.default(technology_name, 1, bursts=BurstConfig(devices_per_level=0),
                            record_trace=record_trace)
    sched = d.schedule_s if schedule_s is None else tuple(float(a) for a in schedule_s)
    sch = np.asarray(sched, dtype=float)
    if sch.size == 0 or np.any(~np.isfinite(sch)) or np.any(sch <= 0) or np.any(np.diff(sch) <= 0):
        raise DevmodelError("--schedule: ages must be positive, finite, strictly increasing seconds")
    return SweepConfig(tuple(float(v) for v in levels_us), 0, sched, d.bursts, 0, d.age_tolerance,
                       record_trace)


def plan_of(mapping: Mapping, first_address: int) -> DevicePlan:
    """Per device: address (layer by layer from ``first_address``), target and target bin."""
    return _plan(mapping.target_us, mapping.g_max_us, first_address)


def _plan(target_us: np.ndarray, g_max_us: float, first_address: int) -> DevicePlan:
    levels, level = target_levels(target_us, g_max_us)
    return DevicePlan(levels, first_address + np.arange(target_us.size, dtype=np.int64), target_us, level)


def deployment_group(mapping: Mapping, record: NetworkRecord, first_address: int, net
                     ) -> tuple[dict, dict[str, np.ndarray]]:
    """Attributes and datasets of ``/deployment`` (docs/session-format.md, "Deployments")."""
    state, module = network_bytes(net)
    attrs = {"network": record.network, "architecture": record.architecture,
             "data_seed": int(record.data_seed), "crossbar_json": json.dumps(record.crossbar, sort_keys=True),
             "g_max_us": float(mapping.g_max_us), "g_min_us": float(mapping.g_min_us),
             "first_address": int(first_address),
             "layers_json": json.dumps([lm.info() for lm in mapping.layers])}
    data = {"state_dict": state, "module": module, "layer": mapping.layer,
            "weight_index": mapping.weight_index, "tile": mapping.tile, "sign": mapping.sign,
            "target_us": mapping.target_us, "input_range": mapping.input_range}
    data.update({f"scale_{i}": lm.scale for i, lm in enumerate(mapping.layers)})
    return attrs, data


def new_deployment(chip: DeviceArray, chip_url: str, net, mapping: Mapping, record: NetworkRecord,
                   out_path: str | Path, *, schedule_s: tuple[float, ...] | None = None,
                   first_address: int = 0, verify: VerifyConfig | None = None, seed: int | None = None,
                   overwrite: bool = False, progress: Progress | None = None, durability: str = "full",
                   checkpoint_interval_s: float = 2.0, record_trace: bool = True,
                   command: str = "") -> SessionRun:
    """Write the deployment file and program, verify and read the network's devices on ``chip``."""
    if durability not in DURABILITY:
        raise DevmodelError(f"--durability must be one of {', '.join(DURABILITY)}, not {durability!r}")
    tech = technology(chip.info.technology)
    verify = verify or verify_parts(tech.name)[0]()
    plan = plan_of(mapping, first_address)
    cfg = schedule_config(tech.name, schedule_s, plan.levels_us, record_trace)
    config = config_dict(cfg, verify)
    config["deploy"] = {"network": record.network, "first_address": first_address,
                        "n_devices": mapping.n_devices}
    kw = dict(technology=tech.name, g_max_us=chip.info.g_max_us, t0_s=tech.t0_s,
              chip=dict(chip.info.to_dict(), url=chip_url), config=config,
              seed=chip.seed if isinstance(chip, Seeded) else seed, command=command, overwrite=overwrite)
    attrs, data = deployment_group(mapping, record, first_address, net)
    with storage_errors(out_path, resumable=durability != "off"):
        with open_writer(out_path, durability, checkpoint_interval_s, **kw) as w:
            w.write_group(GROUP, attrs, data)
            if isinstance(w, Checkpointing):
                w.commit_now()  # the map is in the file before the first pulse: a resume reads it
            return sweep_into(chip, w, cfg, verify, progress, journal=durability != "off", plan=plan)


def read_plan(path: str | Path) -> DevicePlan:
    """The plan of a deployment file (what a resume programs), from ``/deployment`` and the levels."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            if GROUP not in f:
                raise SessionFileError(f"{path} is not a deployment (no /{GROUP} group)")
            g = f[GROUP]
            first = int(g.attrs["first_address"])
            g_max = float(g.attrs["g_max_us"])
            target = _targets(path, f, g["sign"].shape[0])
    except (OSError, KeyError) as e:
        raise SessionFileError(f"{path}: the deployment map cannot be read ({type(e).__name__}: "
                               f"{e})") from None
    return _plan(target, g_max, first)


def _targets(path, f: h5py.File, n: int) -> np.ndarray:
    t = f[GROUP]["target_us"][()] if "target_us" in f[GROUP] else None
    if t is None or t.size != n:
        raise SessionFileError(f"{path}: /{GROUP}/target_us is missing or does not match the map")
    return t


def resume_deployment(path: str | Path, chip: DeviceArray, **kw) -> SessionRun:
    """Continue a deployment from its last commit (``devmodel deploy --resume``)."""
    return resume_session(path, chip, plan=read_plan(path), **kw)
