"""A deployment read back (docs/deployment.md, "Measured vs predicted"): the accuracy of the
network on the conductances the chip returned at each read time, beside the card's prediction for
the same network, mapping, periphery and times, and the per-layer weight error that explains a gap.

* **Measured**: at every nominal read age, each layer's tiles take the read conductances
  (G⁺ − G⁻)/(g_max − g_min) of their devices, one inference pass over the test set per age; the
  read noise is the one the chip returned with each read (no noise is added on the weights), the
  periphery (DAC, ADC, output noise, output bound) is ``evaluate --card``'s standard crossbar. Input
  ranges are calibrated on the chip at the first read (or the learned ones kept). Global drift
  compensation (seed 001) scales each layer's outputs by Σ G at the first read / Σ G at t, the
  summed column currents a chip measures for an all-ones calibration input.
* **Predicted**: the card's :mod:`devmodel.sim` path with the same mapping (g_min of the
  deployment), the same reference read for compensation and calibration, ``trials`` programming
  trials; devices whose verify did not converge (which the card, fitted on converged devices, does
  not describe) at the last verify reading the chip reported; the 95 % prediction interval for one
  new chip is mean ± t₀.₉₇₅,ₙ₋₁·SD·√(1 + 1/n).
* **Per-layer weight error**: RMS of G − G_target over a layer's verified devices (non-zero target,
  converged: what a card is fitted on), measured and predicted (the card's programming noise and
  drift at the same ages and targets, RMS over trials); the devices left out are counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from devmodel.deploy.mapping import analog_layers, network_from_bytes
from devmodel.deploy.session import GROUP
from devmodel.errors import DevmodelError, SessionFileError
from devmodel.sim.analog import AnalogNet, accuracy, convert
from devmodel.sim.config import CrossbarConfig
from devmodel.store import read_session


@dataclass
class Deployment:
    """A deployment file's contents, as evaluation needs them."""

    path: Path
    technology: str
    network: str
    architecture: str
    data_seed: int
    crossbar: dict
    g_max_us: float
    g_min_us: float
    layers: list[dict]
    layer: np.ndarray
    weight_index: np.ndarray
    sign: np.ndarray
    target_us: np.ndarray
    scales: list[np.ndarray]
    ages_s: np.ndarray  # nominal read ages (s after each device's last pulse)
    g_us: np.ndarray  # (devices, ages): the schedule reads
    converged: np.ndarray
    g_verify_us: np.ndarray  # final verify reading of each device
    chip_url: str
    _state: np.ndarray
    _module: np.ndarray

    def net(self) -> torch.nn.Module:
        return network_from_bytes(self.architecture, self._state, self._module)


def is_deployment(path: str | Path) -> bool:
    import h5py

    try:
        with h5py.File(path, "r", locking=False) as f:
            return GROUP in f
    except OSError:
        return False


def read_deployment(path: str | Path) -> Deployment:
    """Read and check a deployment file; one sentence naming it if it is not a complete one."""
    import h5py

    s = read_session(path, with_trace=False)
    path = Path(path)
    with h5py.File(path, "r", locking=False) as f:
        if GROUP not in f:
            raise SessionFileError(f"{path} is a session, not a deployment (no /{GROUP}); write one with "
                                   "devmodel deploy")
        g = f[GROUP]
        a = dict(g.attrs)
        d = {k: g[k][()] for k in g}
    n = d["target_us"].size
    if not s.devices or s.devices["address"].size != n:
        raise SessionFileError(f"{path}: the deployment stopped before its programming finished; continue "
                               f"it with devmodel deploy --resume {path}")
    ages, g_us = read_matrix(s, n)
    layers = json.loads(a["layers_json"])
    return Deployment(path, s.technology, str(a["network"]), str(a["architecture"]), int(a["data_seed"]),
                      json.loads(a["crossbar_json"]), float(a["g_max_us"]), float(a["g_min_us"]), layers,
                      d["layer"], d["weight_index"], d["sign"], d["target_us"],
                      [d[f"scale_{i}"] for i in range(len(layers))], ages, g_us,
                      s.devices["converged"].astype(bool), s.devices["g_verify_us"],
                      str(s.chip.get("url", "")), d["state_dict"],
                      d["module"])


def read_matrix(s, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(nominal ages, devices × ages reads) of the ages at which every device was read."""
    r = s.reads
    sel = (r["burst"] < 0) & np.isfinite(r["nominal_age_s"])
    ages = np.unique(r["nominal_age_s"][sel])
    col = np.searchsorted(ages, r["nominal_age_s"][sel])
    g = np.full((n, ages.size), np.nan)
    g[r["device"][sel], col] = r["g_us"][sel]
    whole = ~np.isnan(g).any(axis=0)
    if not whole.any():
        raise SessionFileError(f"{s.path}: no read age has a read of every deployed device yet")
    return ages[whole], g[:, whole]


def measured_config(crossbar: dict, base: CrossbarConfig | None = None) -> CrossbarConfig:
    """The periphery of ``evaluate --card`` (standard crossbar) with the deployment's mapping; no
    weight noise drawn (the reads carry the chip's)."""
    base = base or CrossbarConfig.standard()
    keep = ("tile_rows", "tile_cols", "scales", "scale_levels", "input_range", "differential")
    return base.with_(**{k: crossbar[k] for k in keep if k in crossbar}, w_noise=0.0,
                      read_noise="constant", drift_compensation=False)


def load_conductances(anet: AnalogNet, dep: Deployment, g_us: np.ndarray, ref_us: np.ndarray | None
                      ) -> None:
    """Put the conductances ``g_us`` (one per device row) into every tile; with ``ref_us`` (the
    first read) each layer's drift compensation α = Σ G_ref / Σ G."""
    span = dep.g_max_us - dep.g_min_us
    for i, (_, m) in enumerate(analog_layers(anet)):
        info = dep.layers[i]
        rows = slice(info["first_row"], info["first_row"] + info["n_rows"])
        g, sign, idx = g_us[rows], dep.sign[rows], dep.weight_index[rows]
        w = np.zeros(m.weight.numel())
        np.add.at(w, idx, np.where(sign > 0, g, -g))  # G⁺ − G⁻ per weight (each index twice)
        w = torch.from_numpy(w / span).to(m.weight.dtype).reshape(m.weight.shape)
        m._w = [(w[:, cut].contiguous(),) for cut in m.in_tiles]
        m._scale = [torch.from_numpy(dep.scales[i][k]).to(m.weight.dtype) for k in range(len(m.in_tiles))]
        m._var = None
        m.alpha = 1.0 if ref_us is None else float(ref_us[rows].sum() / max(g.sum(), 1e-30))


def measured_accuracy(dep: Deployment, net, data, compensate: bool, seed: int = 0) -> np.ndarray:
    """Accuracy at each read age from the measured conductances (one pass per age)."""
    anet = convert(net, None, measured_config(dep.crossbar))
    gen = torch.Generator().manual_seed(int(seed))
    for _, m in analog_layers(anet):
        m.generator = gen
    load_conductances(anet, dep, dep.g_us[:, 0], None)
    anet.calibrate(data.x_train)  # on the chip, at the first read (learned ranges are kept)
    out = np.empty(dep.ages_s.size)
    for j in range(dep.ages_s.size):
        load_conductances(anet, dep, dep.g_us[:, j], dep.g_us[:, 0] if compensate else None)
        out[j] = accuracy(anet, data.x_test, data.y_test)
    return out


def inference_times(card, ages_s: np.ndarray) -> np.ndarray:
    """The card's inference time of each device age (PCM counts from t0: t = age − t0)."""
    return np.maximum(np.asarray(ages_s, float) - card.inference_age_s(0.0), 0.0)


def predicted_accuracy(dep: Deployment, net, data, card, compensate: bool, trials: int,
                       seed: int = 0) -> np.ndarray:
    """Accuracy (trials × ages) the card predicts for this deployment (devmodel.sim)."""
    # like the measured pass: each device's noise frozen at each read (the chip returned one read per
    # device and age), none re-drawn per product (docs/deployment.md)
    cfg = measured_config(dep.crossbar).with_(drift_compensation=compensate)
    anet = convert(net, card, cfg, extrapolate=True)
    times = inference_times(card, dep.ages_s)
    acc = np.empty((trials, times.size))
    for i in range(trials):
        anet.program(seed + i, g_min_us=dep.g_min_us)
        anet.native = _FailedAtVerify(anet.native, _failed_overrides(anet, dep))
        anet.set_time(float(times[0]))
        for m in anet.layers:  # the reference is the first read, as on the chip
            m._ref = m._current if compensate else None
        anet.calibrate(data.x_train)
        for j, t in enumerate(times):
            anet.set_time(float(t))
            acc[i, j] = accuracy(anet, data.x_test, data.y_test)
    return acc


def failed_rows(dep: Deployment) -> np.ndarray:
    """Devices whose verify loop did not converge (stuck devices, budgets spent): a card, fitted on
    converged devices, does not describe them; the prediction takes them at their last verify
    reading, which the chip reported when programming ended."""
    return np.flatnonzero(~dep.converged & np.isfinite(dep.g_verify_us))


def _failed_overrides(anet: AnalogNet, dep: Deployment) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per programmed tile tensor (by identity): (mask, conductance) of its failed devices."""
    rows = failed_rows(dep)
    out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for i, (_, m) in enumerate(analog_layers(anet)):
        info = dep.layers[i]
        sel = rows[(rows >= info["first_row"]) & (rows < info["first_row"] + info["n_rows"])]
        for sign, j in ((1, 0), (-1, 2)):
            g = np.full(m.weight.numel(), np.nan)
            part = sel[dep.sign[sel] == sign]
            g[dep.weight_index[part]] = dep.g_verify_us[part]
            full = torch.from_numpy(g).reshape(m.weight.shape)
            for k, cut in enumerate(m.in_tiles):
                tile = full[:, cut]
                target = m._prog[k][j]
                out[id(target)] = (~torch.isnan(tile), tile.to(target.dtype).nan_to_num(0.0))
    return out


class _FailedAtVerify:
    """The card's noise model, except that failed devices read their last verify reading."""

    def __init__(self, inner, overrides: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.inner, self.overrides = inner, overrides

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def at_time(self, g_prog_us: torch.Tensor, coefficients: torch.Tensor, t_s: float) -> torch.Tensor:
        out = self.inner.at_time(g_prog_us, coefficients, t_s)
        hit = self.overrides.get(id(g_prog_us))
        return out if hit is None else torch.where(hit[0], hit[1], out)


def prediction_interval(acc: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Interval that holds one new chip's accuracy with probability ``level`` (normal trials):
    mean ± t·SD·√(1 + 1/n) per column."""
    from scipy import stats

    n = acc.shape[0]
    if n < 2:
        raise DevmodelError("--trials must be at least 2 for a prediction interval")
    half = stats.t.ppf(0.5 + level / 2, n - 1) * acc.std(0, ddof=1) * np.sqrt(1 + 1 / n)
    return acc.mean(0) - half, acc.mean(0) + half


def verified_rows(dep: Deployment, i: int) -> np.ndarray:
    """Rows of layer ``i`` a card describes: a non-zero target and a converged verify loop (the
    devices a card is fitted on; stuck devices and the RESET-only G⁻ of each pair are left out)."""
    info = dep.layers[i]
    rows = np.arange(info["first_row"], info["first_row"] + info["n_rows"])
    return rows[(dep.target_us[rows] > 0) & dep.converged[rows]]


def layer_rms(dep: Deployment) -> np.ndarray:
    """Measured RMS of G − G_target (µS) over each layer's verified devices, layers × ages."""
    out = np.full((len(dep.layers), dep.ages_s.size), np.nan)
    for i in range(len(dep.layers)):
        rows = verified_rows(dep, i)
        if rows.size:
            out[i] = np.sqrt(np.mean((dep.g_us[rows] - dep.target_us[rows, None]) ** 2, axis=0))
    return out


@torch.no_grad()
def predicted_layer_rms(dep: Deployment, card, trials: int, seed: int = 0) -> np.ndarray:
    """The card's RMS of G − G_target (µS), layers × ages: its programming noise and drift at the
    same device ages, root mean square over ``trials`` programmings."""
    gen = torch.Generator().manual_seed(int(seed))
    native = card.noise_model(gen, True)
    ages = [card.inference_age_s(float(t)) for t in inference_times(card, dep.ages_s)]
    out = np.zeros((len(dep.layers), len(ages)))
    for i in range(len(dep.layers)):
        target = torch.from_numpy(dep.target_us[verified_rows(dep, i)])
        for _ in range(trials):
            nu = native.drift_coefficients(target)
            g = native.program(target, nu)
            for j, age in enumerate(ages):
                out[i, j] += float(((native.at_time(g, nu, age) - target) ** 2).mean())
    return np.sqrt(out / trials)
