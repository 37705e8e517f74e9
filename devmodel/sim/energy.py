"""Read energy, cells and array reads per inference, as seed 004 accounts them (Eq. 19–20).

A memory cell's read energy is proportional to its conductance and to the input it is read with,
with an energy coefficient ρ (seed 004, Fig. 2a). A product with input code x (the DAC's integer
magnitude) therefore costs E_ori = ρ·x·|w| per cell; read bit-serially, the code x = Σ_p 2^p δ_p is
applied one bit plane at a time, each plane with unit drive, so E_new = ρ·Σ_p δ_p·|w| — never more,
and less whenever a code has more than one bit set (Eq. 20). Summed over every cell, every output
position of a convolution and the samples of a batch, per sample. Units: ρ = 1 for one read of a cell
at full conductance (|w| = the output scale) with a full-scale input code; the seed's µJ need its
circuit simulator, which is not reproduced (docs/analog-inference.md, "Energy").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from devmodel.errors import DevmodelError
from devmodel.sim.layers import AnalogLayer, bit_planes


@dataclass(frozen=True)
class LayerEnergy:
    name: str
    cells: int  # devices (two per weight)
    positions: int  # products per sample: output positions of a convolution, 1 for a linear layer
    reads_per_product: int  # array reads per product (bit-serial: one per input bit)
    energy_standard: float  # ρ = 1 units per sample, inputs applied at once (E_ori)
    energy_bit_serial: float  # the same inputs one bit plane at a time (E_new)

    @property
    def array_reads(self) -> int:
        """Sequential array reads per sample (the seed's delay is proportional to it)."""
        return self.positions * self.reads_per_product


def _bit_count(code: torch.Tensor, bits: int) -> torch.Tensor:
    """Σ_p δ_p: the set bits of integer magnitudes ``code`` (< 2^bits)."""
    return sum(bit_planes(code, bits))


@torch.no_grad()
def layer_energy(layer: AnalogLayer, x: torch.Tensor, name: str = "") -> LayerEnergy:
    """Seed 004's energy of one analog layer for the inputs ``x`` (a batch), per sample."""
    c = layer.config
    if not c.dac_bits:
        raise DevmodelError("energy accounting needs an input DAC (the code an input is read with); "
                            "this crossbar has none (use the standard crossbar)")
    planes = c.dac_bits - 1
    s_in = 2**planes - 1
    std = serial = 0.0
    out = None
    for k in range(len(layer.in_tiles)):
        xk = (layer._tile_input(x, k) / layer.input_range).clamp(-1.0, 1.0)
        code = torch.round(xk.abs() * s_in)
        _, wn = layer._normalised(k)
        w_abs = wn.abs()  # two cells per weight, one of them at (near) zero: |w| is the pair's read
        out = layer._mvm(code, w_abs)
        std += float(out.sum()) / s_in
        serial += float(layer._mvm(_bit_count(code, planes), w_abs).sum()) / s_in
    n = x.shape[0]
    positions = out[0].numel() // layer.weight.shape[0]
    return LayerEnergy(name or type(layer).__name__, layer.n_devices, positions,
                       planes if c.bit_serial else 1, std / n, serial / n)


@torch.no_grad()
def network_energy(net: torch.nn.Module, x: torch.Tensor) -> list[LayerEnergy]:
    """:func:`layer_energy` of every analog layer of ``net`` (an AnalogNet), for inputs ``x``; each
    layer sees what the network feeds it (forward hooks; one pass)."""
    rows: list[LayerEnergy] = []
    names = {m: n for n, m in net.named_modules()}

    def hook(layer, inputs):
        rows.append(layer_energy(layer, inputs[0], names.get(layer, "")))

    handles = [m.register_forward_pre_hook(hook) for m in net.modules() if isinstance(m, AnalogLayer)]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    return rows


def format_energy(rows: list[LayerEnergy], rho: float = 1.0) -> str:
    """The table `devmodel evaluate --energy` prints: per layer and in total, cells, products and
    array reads per sample, and ρ·energy inputs-at-once vs bit-serial."""
    lines = ["  layer                        cells  products  reads/product  array reads   "
             "E standard   E bit-serial   (ρ units per sample)"]
    for r in rows:
        lines.append(f"  {r.name[:26]:26} {r.cells:8d} {r.positions:9d} {r.reads_per_product:14d} "
                     f"{r.array_reads:12d} {rho * r.energy_standard:12.4g} {rho * r.energy_bit_serial:14.4g}")
    tot_s = sum(r.energy_standard for r in rows)
    tot_b = sum(r.energy_bit_serial for r in rows)
    lines.append(f"  {'total':26} {sum(r.cells for r in rows):8d} {sum(r.positions for r in rows):9d} "
                 f"{'':14} {sum(r.array_reads for r in rows):12d} {rho * tot_s:12.4g} {rho * tot_b:14.4g}")
    lines.append(f"  bit-serial / standard energy: {tot_b / tot_s:.3f} (seed 004, Eq. 19–20: E_new = "
                 "ρΣδ_p < E_ori = ρx)" if tot_s else "  no input drove any cell")
    return "\n".join(lines)
