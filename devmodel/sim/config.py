"""One configuration object for the analog crossbar model (analog-inference issue).

``CrossbarConfig()`` has every periphery non-ideality off (ideal MVM; device noise from the card
on); ``CrossbarConfig.ideal()`` turns the device noise off too (analog equals digital inference);
``CrossbarConfig.standard()`` is the seed's "standard" AIMC crossbar (000 Supplementary Table 1):
8-bit DAC and ADC, output noise 0.04, output bound 10, 512×512 tiles, column-wise digital output
scales, short-term weight noise 0.0175, global drift compensation for a technology that drifts
on average (none for ReRAM, seed 000 B.2).

Units are the normalised ones of the seed: inputs divided by the layer's static input range (so in
[−1, 1]), weights by g_max × output scale (so in [−1, 1]); ``out_bound`` 10 means ten fully-on inputs
with ten fully-on weights saturate the output; ``out_noise`` and ``w_noise`` are standard deviations
in those units (w_noise per weight, re-drawn at every matrix-vector product).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from devmodel.errors import ConfigError
from devmodel.validation import Constrained, Flag, Interval, OneOf, OrNone

_BITS = OrNone(Interval(1, 32, integer=True))
_SIZE = OrNone(Interval(1, None, integer=True))


@dataclass(frozen=True)
class CrossbarConfig(Constrained):
    tile_rows: int | None = None  # crossbar inputs per tile (None: one tile)
    tile_cols: int | None = None  # crossbar outputs per tile
    dac_bits: int | None = None  # input quantisation over the static input range
    adc_bits: int | None = None  # output quantisation over ±out_bound
    out_bound: float | None = None  # output clipping
    out_noise: float = 0.0  # output-referred Gaussian noise, per output per MVM
    w_noise: float = 0.0  # short-term weight noise, re-drawn at every MVM (read_noise="constant")
    # "constant": w_noise per weight (seed 000's tuned constant); "card": each device's own short-term
    # noise from the card (its 1/f law faster than 1/read_window_s and its white noise), at its
    # conductance at the read (docs/analog-inference.md, "Short-term read noise")
    read_noise: str = "constant"
    read_window_s: float = 1.0  # τ: 1/f fluctuations faster than 1/τ are re-drawn at every MVM
    # "column": a digital scale per output and tile (abs-max); "tile": one per tile; "learned": the
    # per-output scales a hardware-aware training learned (seed 000), weights beyond them clipped
    scales: str = "column"
    differential: str = "pair"  # "pair": G⁺ − G⁻ summed in one column; "two_columns": digitised apart
    on_off_ratio: float | None = None  # g_min = g_max / ratio on both devices (None: g_min = 0)
    # "calibrated": each layer's static input range from calibration data (below); "learned": the
    # ranges a hardware-aware training learned (seed 000; the digital module's `in_range`)
    input_range: str = "calibrated"
    input_percentile: float = 99.99  # static input range from calibration data
    output_percentile: float = 99.9  # ... enlarged until this percentile of |y| fits out_bound
    device_noise: bool = True  # programming noise, drift and 1/f noise from the card
    # global drift compensation per layer (seed 001); None: where the card's technology drifts on
    # average (PCM, CMO; not ReRAM, as seed 000 B.2)
    drift_compensation: bool | None = False
    bit_serial: bool = False  # seed 004: each input bit read separately (needs dac_bits)
    # seed 000, B.3.1 (Eq. 1): the output scales of a tile as N integers times one FP scale per tile
    # (q_i = α_N·⌈γ_i/α_N⌉, α_N = max γ / N; the weights rescaled by γ_i/q_i ≤ 1). None: FP scales
    scale_levels: int | None = None
    # seed 000 B.1 (off in its standard model, turned on there to test the learned ranges): noise
    # management scales each input vector by its own abs-max instead of the static range; bound
    # management re-runs a product with the input halved, up to this many times, while an output clips
    noise_management: bool = False
    bound_management: int = 0

    WHERE: ClassVar[str] = "crossbar configuration"
    CONSTRAINTS: ClassVar[dict] = {
        "tile_rows": _SIZE, "tile_cols": _SIZE, "dac_bits": _BITS, "adc_bits": _BITS,
        "out_bound": OrNone(Interval(0.0, None, "neither")), "out_noise": Interval(0.0, None),
        "w_noise": Interval(0.0, None), "read_noise": OneOf(("constant", "card")),
        "read_window_s": Interval(0.0, 1e10, "neither"), "scales": OneOf(("column", "tile", "learned")),
        "differential": OneOf(("pair", "two_columns")),
        "input_range": OneOf(("calibrated", "learned")),
        "on_off_ratio": OrNone(Interval(1.0, None, "neither")),
        "input_percentile": Interval(0.0, 100.0, "right"), "output_percentile": Interval(0.0, 100.0, "right"),
        "device_noise": Flag(), "drift_compensation": OrNone(Flag()), "bit_serial": Flag(),
        "scale_levels": OrNone(Interval(1, 1 << 16, integer=True)),
        "noise_management": Flag(), "bound_management": Interval(0, 30, integer=True),
    }

    def __post_init__(self) -> None:
        self.check()  # a small value object: checked when made, so no invalid one exists

    def check_more(self) -> None:
        if self.bit_serial and not self.dac_bits:
            raise ConfigError(f"{self.WHERE}: bit_serial needs dac_bits (the input code to decompose)")
        if (self.noise_management or self.bound_management) and (self.bit_serial
                                                                 or self.differential != "pair"):
            raise ConfigError(f"{self.WHERE}: noise and bound management are modelled for inference on "
                              "differential pairs read at once (not bit-serial, not two columns)")
        if self.bound_management and self.out_bound is None:
            raise ConfigError(f"{self.WHERE}: bound management needs an output bound (out_bound)")

    @classmethod
    def ideal(cls) -> CrossbarConfig:
        """No non-ideality at all: analog inference equals digital inference."""
        return cls(device_noise=False)

    @classmethod
    def standard(cls) -> CrossbarConfig:
        """The seed's standard AIMC crossbar model (000, Supplementary Table 1)."""
        return cls(tile_rows=512, tile_cols=512, dac_bits=8, adc_bits=8, out_bound=10.0,
                   out_noise=0.04, w_noise=0.0175, scales="column", device_noise=True,
                   drift_compensation=None)

    def for_untrained(self) -> CrossbarConfig:
        """The same crossbar for a network that learned no scales or input ranges (a floating-point
        network mapped directly): column scales and calibrated input ranges in their place."""
        return replace(self, scales="column" if self.scales == "learned" else self.scales,
                       input_range="calibrated")

    def with_(self, **changes) -> CrossbarConfig:
        return replace(self, **changes)
