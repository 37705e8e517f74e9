"""A ``BaseNoiseModel`` of IBM aihwkit that carries a whole devmodel card (export issue, part 2).

Importable only where aihwkit is installed (its pure-Python ``aihwkit.inference`` package suffices).
aihwkit's own classes cannot express a fitted Q_s power law, ν in clipped-log form, the programming
mean offset and drift–programming coupling, or ReRAM between snapshots; this class delegates the
three hooks aihwkit calls to the card's torch noise model (:mod:`devmodel.model.noise`), so it and
the native model are the same model by construction, used through aihwkit's converters and
``apply_noise``.

Time: aihwkit's ``t_inference`` is the card's inference time (``DeviceModel.inference_age_s`` turns
it into the device age: from t0 for PCM, from programming for ReRAM, the Wan2022 convention);
``apply_noise(w, 0)`` returns the programmed weights (aihwkit 1.2.0's base class returns nothing
there).
"""

from __future__ import annotations

import torch

try:
    from aihwkit.inference.converter.conductance import SinglePairConductanceConverter
    from aihwkit.inference.noise.base import BaseNoiseModel
except ImportError as e:  # pragma: no cover - exercised where aihwkit is absent
    raise ImportError(
        "devmodel.export.aihwkit_model needs IBM aihwkit (1.0.0–1.2.0; its aihwkit.inference package "
        "is pure Python): pip install aihwkit, or put its source distribution's src/ on sys.path"
    ) from e

from devmodel.errors import DevmodelError
from devmodel.model.card import DeviceModel
from devmodel.model.noise import NativeNoiseModel


class DevmodelNoiseModel(BaseNoiseModel):
    """aihwkit noise model reproducing a devmodel card exactly."""

    def __init__(self, card: DeviceModel, g_converter=None, generator: torch.Generator | None = None,
                 extrapolate: bool = False) -> None:
        g_converter = g_converter or SinglePairConductanceConverter(g_max=card.g_max_us, g_min=card.g_min_us)
        if abs(float(g_converter.g_max) - card.g_max_us) > 1e-9 * card.g_max_us:
            raise DevmodelError(
                f"the card was fitted with g_max {card.g_max_us:g} µS but the aihwkit converter uses "
                f"{float(g_converter.g_max):g} µS; use a converter with g_max={card.g_max_us:g}"
            )
        super().__init__(g_converter)
        self.card = card
        self.native = NativeNoiseModel(card, generator, extrapolate)
        # aihwkit calls programming then drift coefficients with the same target tensor: a coupled
        # card draws both at programming and hands the coefficients to the second call
        self._nu_pending: tuple[torch.Tensor, torch.Tensor] | None = None

    def __str__(self) -> str:
        return f"DevmodelNoiseModel({self.card.technology}, {self.card.provenance.get('source', '')})"

    @torch.no_grad()
    def apply_programming_noise_to_conductance(self, g_target: torch.Tensor) -> torch.Tensor:
        if self.native.coupled:
            nu = self.native.drift_coefficients(g_target)
            self._nu_pending = (g_target, nu)
            return self.native.program(g_target, nu)
        return self.native.program(g_target)

    @torch.no_grad()
    def generate_drift_coefficients(self, g_target: torch.Tensor) -> torch.Tensor:
        pending, self._nu_pending = self._nu_pending, None
        if pending is not None and pending[0] is g_target:
            return pending[1]
        return self.native.drift_coefficients(g_target)

    @torch.no_grad()
    def apply_drift_noise_to_conductance(self, g_prog: torch.Tensor, drift_noise_param: torch.Tensor,
                                         t_inference: float) -> torch.Tensor:
        return self.native.at_time(g_prog, drift_noise_param, self.card.inference_age_s(t_inference))

    @torch.no_grad()
    def apply_noise(self, weights: torch.Tensor, t_inference: float) -> torch.Tensor:
        if t_inference <= 0:
            return self.apply_programming_noise(weights)[0]
        return super().apply_noise(weights, t_inference)
