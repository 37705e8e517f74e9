"""Weights → conductance targets and chip addresses (docs/deployment.md, "Mapping").

The analog layers of :func:`devmodel.sim.convert` decide the mapping, so a deployment programs
exactly what ``evaluate --card`` simulates: every input tile of every layer has a digital output
scale per column (or per tile, or the learned ``out_scale`` of a hardware-aware network) and
normalised weights w/scale in [−1, 1]; weight w is the differential pair

    G⁺ = g_min + (g_max − g_min)·max(w, 0),   G⁻ = g_min + (g_max − g_min)·max(−w, 0)

with g_max the chip's. Devices are allocated layer by layer, tile by tile, weight by weight in the
layer's row-major order, G⁺ then G⁻ on neighbouring addresses; each device's layer, flat weight
index, tile and sign are recorded so the map is exact and reversible.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from devmodel.errors import DevmodelError
from devmodel.sim.analog import AnalogNet, convert
from devmodel.sim.config import CrossbarConfig
from devmodel.sim.layers import AnalogLayer

#: Levels the per-device targets are grouped into for the session summary (0 and equal bins of
#: (0, g_max]); every device keeps its own target in /devices/target_us.
TARGET_BINS = 10


@dataclass
class LayerMap:
    """One analog layer's place on the chip."""

    name: str  # module path in the network
    shape: tuple[int, ...]  # weight shape
    first_row: int  # first row of /devices (its address is first_address + first_row)
    n_rows: int  # devices: 2 × weights
    scale: np.ndarray  # (input tiles, outputs): digital output scale of each tile's columns

    def info(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "first_row": self.first_row,
                "n_rows": self.n_rows, "n_tiles": int(self.scale.shape[0])}


@dataclass
class Mapping:
    """Every device of a deployment: per row its layer, flat weight index, tile, sign and target."""

    layers: list[LayerMap]
    layer: np.ndarray  # i4
    weight_index: np.ndarray  # i8, into the layer's weight tensor flattened row-major
    tile: np.ndarray  # i4, input tile of the layer
    sign: np.ndarray  # i1, +1 G⁺, −1 G⁻
    target_us: np.ndarray  # f8
    g_max_us: float
    g_min_us: float
    input_range: np.ndarray = field(default_factory=lambda: np.empty(0))  # per layer (learned only)

    @property
    def n_devices(self) -> int:
        return int(self.target_us.size)


def mapping_config(net: nn.Module, base: CrossbarConfig | None = None) -> CrossbarConfig:
    """The standard crossbar (000, Supplementary Table 1), with the learned output scales and input
    ranges when every mapped layer of ``net`` carries them (a ``train-hwa`` network), so such a
    network deploys without extra options."""
    cfg = base or CrossbarConfig.standard()
    mapped = [m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if mapped and all(getattr(m, "out_scale", None) is not None for m in mapped):
        cfg = cfg.with_(scales="learned")
    if mapped and all(getattr(m, "in_range", None) is not None for m in mapped):
        cfg = cfg.with_(input_range="learned")
    return cfg


def analog_layers(anet: AnalogNet) -> list[tuple[str, AnalogLayer]]:
    """(module path, layer) of every analog layer, in the network's module order."""
    return [(n, m) for n, m in anet.net.named_modules() if isinstance(m, AnalogLayer)]


def map_network(net: nn.Module, config: CrossbarConfig, g_max_us: float,
                g_min_us: float = 0.0) -> tuple[AnalogNet, Mapping]:
    """The analog network and its device map (vectorised per tile)."""
    if config.differential != "pair":
        raise DevmodelError("deploy maps weights on differential pairs (G⁺ − G⁻ in one column); "
                            f"differential={config.differential!r} is not supported")
    if not 0 <= g_min_us < g_max_us:
        raise DevmodelError(f"g_min {g_min_us:g} µS must lie in [0, g_max = {g_max_us:g} µS)")
    anet = convert(net, None, config)
    span = g_max_us - g_min_us
    layers, cols, row = [], [], 0
    for li, (name, m) in enumerate(analog_layers(anet)):
        flat = torch.arange(m.weight.numel()).reshape(m.weight.shape)
        scales = []
        first = row
        for k, cut in enumerate(m.in_tiles):
            s, wn = m._normalised(k)
            scales.append(s.detach().double().numpy())
            w = wn.detach().double().reshape(-1).numpy()
            idx = flat[:, cut].reshape(-1).numpy()
            n = w.size
            target = np.stack([g_min_us + span * np.maximum(w, 0), g_min_us + span * np.maximum(-w, 0)], 1)
            cols.append((np.full(2 * n, li, np.int32), np.repeat(idx, 2).astype(np.int64),
                         np.full(2 * n, k, np.int32), np.tile(np.array([1, -1], np.int8), n),
                         target.reshape(-1)))
            row += 2 * n
        layers.append(LayerMap(name, tuple(m.weight.shape), first, row - first, np.stack(scales)))
    if not layers:
        raise DevmodelError("the network has no Linear or Conv2d layer to deploy")
    layer, widx, tile, sign, target = (np.concatenate(c) for c in zip(*cols, strict=True))
    ranges = np.array([float(m.input_range) for _, m in analog_layers(anet)])
    return anet, Mapping(layers, layer, widx, tile, sign, np.minimum(target, g_max_us), g_max_us,
                         g_min_us, ranges if config.input_range == "learned" else np.empty(0))


def check_fits(mapping: Mapping, network: str, n_chip: int, first_address: int) -> None:
    """Refuse in one sentence a network that does not fit on the chip."""
    need = first_address + mapping.n_devices
    if need > n_chip:
        per = ", ".join(f"{lm.name} {lm.n_rows:,}" for lm in mapping.layers)
        raise DevmodelError(f"--network {network} does not fit on the chip: its {len(mapping.layers)} "
                            f"analog layers need {mapping.n_devices:,} devices ({per})"
                            + (f" from address {first_address:,}" if first_address else "")
                            + f" but the chip has {n_chip:,}")


def target_levels(target_us: np.ndarray, g_max_us: float, bins: int = TARGET_BINS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(levels, level per device): target 0 its own level, the others in equal bins of (0, g_max],
    each level the mean target of its devices (empty bins left out)."""
    code = np.where(target_us > 0, np.clip(np.ceil(target_us / g_max_us * bins), 1, bins), 0).astype(int)
    used, level = np.unique(code, return_inverse=True)
    sums = np.bincount(level, weights=target_us, minlength=used.size)
    return sums / np.bincount(level, minlength=used.size), level.astype(np.int32)


def network_bytes(net: nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """(state dict, whole module) as torch.save bytes (uint8 arrays for the file)."""
    out = []
    for obj in (net.state_dict(), net):
        buf = io.BytesIO()
        torch.save(obj, buf)
        out.append(np.frombuffer(buf.getvalue(), dtype=np.uint8).copy())
    return out[0], out[1]


def network_from_bytes(architecture: str, state: np.ndarray, module: np.ndarray) -> nn.Module:
    """The deployed network: a registered architecture rebuilt and its state dict loaded, or the
    saved module itself (a network from a file, e.g. train-hwa's)."""
    from devmodel.sim.networks import NETWORKS, build

    if architecture in NETWORKS:
        net = build(architecture)
        net.load_state_dict(torch.load(io.BytesIO(state.tobytes()), weights_only=True))
    else:
        net = torch.load(io.BytesIO(module.tobytes()), weights_only=False)
    return net.eval()
