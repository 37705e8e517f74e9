"""One configuration object for the analog crossbar model (analog-inference issue).

``CrossbarConfig()`` has every periphery non-ideality off (ideal MVM; device noise from the card
on); ``CrossbarConfig.ideal()`` turns the device noise off too (analog equals digital inference);
``CrossbarConfig.standard()`` is the seed's "standard" AIMC crossbar (000_… Supplementary Table 1):
8-bit DAC and ADC, output noise 0.04, output bound 10, 512×512 tiles, column-wise digital output
scales, short-term weight noise 0.0175, global drift compensation.

Units are the normalised ones of the seed: inputs divided by the layer's static input range (so in
[−1, 1]), weights by g_max × output scale (so in [−1, 1]); ``out_bound`` 10 means ten fully-on inputs
with ten fully-on weights saturate the output; ``out_noise`` and ``w_noise`` are standard deviations
in those units (w_noise per weight, re-drawn at every matrix-vector product).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class CrossbarConfig:
    tile_rows: int | None = None  # crossbar inputs per tile (None: one tile)
    tile_cols: int | None = None  # crossbar outputs per tile
    dac_bits: int | None = None  # input quantisation over the static input range
    adc_bits: int | None = None  # output quantisation over ±out_bound
    out_bound: float | None = None  # output clipping
    out_noise: float = 0.0  # output-referred Gaussian noise, per output per MVM
    w_noise: float = 0.0  # short-term weight noise, re-drawn at every MVM
    # "column": a digital scale per output and tile (abs-max); "tile": one per tile; "learned": the
    # per-output scales a hardware-aware training learned (seed 000_…), weights beyond them clipped
    scales: str = "column"
    differential: str = "pair"  # "pair": G⁺ − G⁻ summed in one column; "two_columns": digitised apart
    on_off_ratio: float | None = None  # g_min = g_max / ratio on both devices (None: g_min = 0)
    input_percentile: float = 99.99  # static input range from calibration data
    output_percentile: float = 99.9  # ... enlarged until this percentile of |y| fits out_bound
    device_noise: bool = True  # programming noise, drift and 1/f noise from the card
    drift_compensation: bool = False  # global drift compensation per layer (seed 001_…)
    bit_serial: bool = False  # seed 004_…: each input bit read separately (needs dac_bits)

    def __post_init__(self) -> None:
        if self.scales not in ("column", "tile", "learned"):
            raise ValueError(f"scales must be 'column', 'tile' or 'learned', not {self.scales!r}")
        if self.differential not in ("pair", "two_columns"):
            raise ValueError(f"differential must be 'pair' or 'two_columns', not {self.differential!r}")
        if self.bit_serial and not self.dac_bits:
            raise ValueError("bit_serial needs dac_bits (the input code to decompose)")
        for name in ("tile_rows", "tile_cols", "dac_bits", "adc_bits"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be ≥ 1 or None")

    @classmethod
    def ideal(cls) -> CrossbarConfig:
        """No non-ideality at all: analog inference equals digital inference."""
        return cls(device_noise=False)

    @classmethod
    def standard(cls) -> CrossbarConfig:
        """The seed's standard AIMC crossbar model (000_…, Supplementary Table 1)."""
        return cls(tile_rows=512, tile_cols=512, dac_bits=8, adc_bits=8, out_bound=10.0,
                   out_noise=0.04, w_noise=0.0175, scales="column", device_noise=True,
                   drift_compensation=True)

    def with_(self, **changes) -> CrossbarConfig:
        return replace(self, **changes)
